"""Azure Communication Services' side of a call, the parts of ACS a server talks to included.

A real ACS answers a call when the server calls its REST API, then opens the media socket. So
this plays three parts while it rings (docs/telephony.md "Ringing your server locally"):
- Event Grid: ``IncomingCall`` posted to the server's ``/acs/incoming`` (with ``?secret=``);
- Call Automation: an HTTPS endpoint on loopback (the SDK insists on https) that takes the
  server's ``answer_call`` / ``reject_call`` / ``hang_up``, checking the SDK's HMAC request
  signing against the access key, and serves the JWKS of the key that signs its tokens;
- the media stream: the ``transportUrl`` opened with a JWT and ``x-ms-call-connection-id``,
  ``AudioMetadata``, PCM16 ``AudioData`` frames, ``DtmfData``; ``StopAudio`` drops what the
  ear holds. The server's frames are read by the server's own codec (codec_acs.py).

Its keys, certificate and access key live in a folder (``--acs-dir``) made once by
``--setup``, so a server started with that folder's ``env.sh`` trusts it on every ring.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.aio import Deadline, cancel_and_wait
from runner.carrier.line import Line
from runner.carrier.ring import CallRefused, RingOptions, converse, unreachable
from runner.errors import EXIT_OK, UsageError, VlrunError
from runner.serve import codec_acs as codec

ISSUER = "https://acscallautomation.communication.azure.com"
RESOURCE_ID = "00000000-0000-0000-0000-0000000ac5ed"  # the audience of the simulated ACS
KID = "vlrun-ring-acs"
MAX_BODY = 256 * 1024
TOKEN_TTL_S = 3600


@dataclass
class Folder:
    """``--acs-dir``: what ``--setup`` makes and every ring reads."""

    path: Path

    @property
    def config(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.path / "acs.json").read_text("utf-8"))
        except FileNotFoundError:
            raise UsageError(
                f"{self.path}: no simulated ACS set up here",
                hint=f"vlrun ring acs --setup --acs-dir {self.path} (then restart the server "
                "with its env.sh)",
            ) from None
        return data

    def read(self, name: str) -> bytes:
        return (self.path / name).read_bytes()


def _private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def setup(folder: Path, port: int, out: Callable[[str], None] = print) -> None:
    """Make the simulated ACS's folder: TLS certificate, token key, access key, env.sh.

    ``port`` 0 (in-process use): the port is chosen as the simulated ACS starts (read
    :attr:`FakeAcs.port`, and :func:`settings` for the server's environment then)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    if (folder / "acs.json").exists():  # a server may trust this folder already: keep it
        config = Folder(folder).config
        if int(config["port"]) != port:
            raise UsageError(
                f"{folder} is set up for port {config['port']}, not {port}",
                hint="keep that port, or give another --acs-dir",
            )
        _settings(folder, f"https://127.0.0.1:{port}", out, "already set up")
        return
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    plain = serialization.NoEncryption()
    tls_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vlrun ring acs (local)")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(tls_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(tls_key, hashes.SHA256())
    )
    (folder / "ca.pem").write_bytes(cert.public_bytes(pem))
    fmt = serialization.PrivateFormat.TraditionalOpenSSL
    _private(folder / "tls-key.pem", tls_key.private_bytes(pem, fmt, plain))
    signing = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _private(folder / "token-key.pem", signing.private_bytes(pem, fmt, plain))
    access_key = base64.b64encode(secrets.token_bytes(32)).decode()
    _private(folder / "access-key", access_key.encode())
    endpoint = f"https://127.0.0.1:{port}"
    grid_secret = secrets.token_urlsafe(24)
    _private(folder / "acs.json", json.dumps({"port": port, "resource_id": RESOURCE_ID}).encode())
    env = (
        f"export ACS_CONNECTION_STRING='endpoint={endpoint}/;accesskey={access_key}'\n"
        f"export ACS_EVENT_GRID_SECRET='{grid_secret}'\n"
        f"export SSL_CERT_FILE='{(folder / 'ca.pem').resolve()}'\n"
    )
    _private(folder / "env.sh", env.encode())
    _settings(folder, endpoint, out, "set up")


def settings(folder: Path, port: int) -> dict[str, str]:
    """The server's environment (what env.sh exports) for the simulated ACS at ``port``."""
    env = dict(
        line.removeprefix("export ").replace("'", "").split("=", 1)
        for line in (folder / "env.sh").read_text(encoding="utf-8").splitlines()
        if line.startswith("export ") and "=" in line
    )
    access_key = Folder(folder).read("access-key").decode()
    env["ACS_CONNECTION_STRING"] = f"endpoint=https://127.0.0.1:{port}/;accesskey={access_key}"
    return env


def _settings(folder: Path, endpoint: str, out: Callable[[str], None], done: str) -> None:
    out(f"simulated ACS {done} in {folder}: Call Automation at {endpoint}/")
    out("  serve file: acs.connection_string: ${env:ACS_CONNECTION_STRING}")
    out(f"              acs.resource_id: {RESOURCE_ID}")
    out(f"              acs.jwks_url: {endpoint}/calling/keys")
    out("              acs.event_grid_secret: ${env:ACS_EVENT_GRID_SECRET}")
    out(f"  start the server after: . {folder}/env.sh")


@dataclass
class FakeAcs:
    """The Call Automation endpoint and JWKS the server calls while a call rings."""

    folder: Folder
    port: int = 0  # where it listens (read back once it does)
    signing_key: Any = None
    access_key: bytes = b""
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # by incoming context
    rejects: dict[str, str] = field(default_factory=dict)
    terminated: set[str] = field(default_factory=set)
    bad_auth: int = 0
    moved: asyncio.Event = field(default_factory=asyncio.Event)

    def token(self) -> str:
        import jwt

        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": RESOURCE_ID,
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_TTL_S,
        }
        return str(jwt.encode(claims, self.signing_key, algorithm="RS256", headers={"kid": KID}))

    def hmac_ok(self, request: Any, body: bytes) -> bool:
        """ACS's HMAC-SHA256 request signing, as the SDK's policy computes it."""
        date = request.headers.get("x-ms-date", "")
        content = request.headers.get("x-ms-content-sha256", "")
        if base64.b64encode(hashlib.sha256(body).digest()).decode() != content:
            return False
        signed = f"{request.method}\n{request.path_qs}\n{date};{request.host};{content}"
        mac = hmac.new(self.access_key, signed.encode(), hashlib.sha256)
        expected = base64.b64encode(mac.digest()).decode()
        signed_headers = "SignedHeaders=x-ms-date;host;x-ms-content-sha256"
        wanted = f"HMAC-SHA256 {signed_headers}&Signature={expected}"
        return hmac.compare_digest(request.headers.get("Authorization", ""), wanted)

    async def rest(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.content.read(MAX_BODY)
        if not self.hmac_ok(request, body):
            self.bad_auth += 1
            self.moved.set()
            return web.json_response({"error": {"code": "Unauthorized"}}, status=401)
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            return web.json_response({"error": {"code": "BadRequest"}}, status=400)
        path = request.path
        if path.endswith(":answer"):
            connection = "cc-" + uuid.uuid4().hex[:16]
            data["callConnectionId"] = connection
            self.answers[str(data.get("incomingCallContext", ""))] = data
            self.moved.set()
            return web.json_response(
                {
                    "callConnectionId": connection,
                    "serverCallId": "sc-" + uuid.uuid4().hex[:16],
                    "callConnectionState": "connecting",
                    "callbackUri": data.get("callbackUri", ""),
                }
            )
        if path.endswith(":reject"):
            reason = str(data.get("callRejectReason", "none"))
            self.rejects[str(data.get("incomingCallContext", ""))] = reason
            self.moved.set()
            return web.Response(status=204)
        if path.endswith(":terminate") or request.method == "DELETE":
            self.terminated.add(path.split("/")[-1].split(":")[0])
            self.moved.set()
            return web.Response(status=204)
        if path.endswith((":transferToParticipant", ":sendDtmfTones")):
            return web.json_response({"operationContext": data.get("operationContext")}, status=202)
        return web.Response(status=204)

    async def jwks(self, _request: Any) -> Any:
        import jwt
        from aiohttp import web

        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.signing_key.public_key()))
        public.update(kid=KID, use="sig", alg="RS256")
        return web.json_response({"keys": [public]})


@contextlib.asynccontextmanager
async def running(folder: Folder) -> AsyncIterator[FakeAcs]:
    """The simulated ACS on the folder's port, for as long as the call lasts."""
    from aiohttp import web
    from cryptography.hazmat.primitives import serialization

    config = folder.config
    fake = FakeAcs(folder)
    fake.signing_key = serialization.load_pem_private_key(folder.read("token-key.pem"), None)
    fake.access_key = base64.b64decode(folder.read("access-key"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder.path / "ca.pem", folder.path / "tls-key.pem")
    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_get("/calling/keys", fake.jwks)
    app.router.add_route("*", "/calling/{tail:.*}", fake.rest)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    # port 0: the system chooses one as it binds, read back below (no probe that another
    # process could take the port after)
    site = web.TCPSite(runner, "127.0.0.1", int(config["port"]), ssl_context=context)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise VlrunError(
            f"the simulated ACS cannot listen on 127.0.0.1:{config['port']}: {exc.strerror}",
            hint="another `vlrun ring acs` is running, or run --setup with another --acs-port",
        ) from None
    fake.port = next(int(a[1]) for a in runner.addresses if isinstance(a, tuple))
    try:
        yield fake
    finally:
        await runner.cleanup()


def incoming_call(context: str, caller: str, called: str) -> list[dict[str, Any]]:
    """An Event Grid ``IncomingCall`` as ACS delivers it."""

    def party(number: str) -> dict[str, Any]:
        return {"kind": "phoneNumber", "rawId": f"4:{number}", "phoneNumber": {"value": number}}

    return [
        {
            "id": str(uuid.uuid4()),
            "topic": "/subscriptions/local/resourceGroups/local/providers/"
            "Microsoft.Communication/communicationServices/vlrun-ring",
            "subject": f"/caller/4:{caller}/recipient/4:{called}",
            "eventType": "Microsoft.Communication.IncomingCall",
            "eventTime": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "dataVersion": "1.0",
            "data": {
                "to": party(called),
                "from": party(caller),
                "serverCallId": "server-call-" + uuid.uuid4().hex,
                "callerDisplayName": "",
                "incomingCallContext": context,
                "correlationId": str(uuid.uuid4()),
            },
        }
    ]


class AcsCall:
    """One answered call's media stream."""

    def __init__(self, ws: Any, rate: int, participant: str) -> None:
        self.ws = ws
        self.rate = rate
        self.participant = participant
        self.line: Line | None = Line(rate, self._audio)
        self._closed = False

    async def start(self) -> None:
        meta = {
            "kind": "AudioMetadata",
            "audioMetadata": {
                "subscriptionId": str(uuid.uuid4()),
                "encoding": "PCM",
                "sampleRate": self.rate,
                "channels": 1,
                "length": self.rate * 2 // 50,
            },
        }
        await self.ws.send_str(json.dumps(meta))

    async def _audio(self, pcm: bytes) -> None:
        frame = {
            "kind": "AudioData",
            "audioData": {
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                "participantRawID": self.participant,
                "data": base64.b64encode(pcm).decode(),
                "silent": not any(pcm),
            },
        }
        await self.ws.send_str(json.dumps(frame))

    async def dtmf(self, digits: str) -> None:
        for digit in digits:
            await self.ws.send_str(json.dumps({"kind": "DtmfData", "dtmfData": {"data": digit}}))

    async def say_text(self, text: str) -> str:
        raise VlrunError("an ACS call carries audio: say text with --say (espeak-ng)")

    async def hang_up(self) -> None:
        """The caller hangs up: ACS ends the stream with a normal close."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            await self.ws.close(code=1000)

    async def receive(self) -> None:
        from aiohttp import WSMsgType

        line = self.line
        assert line is not None
        try:
            async for msg in self.ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                event = codec.parse_media(msg.data)
                if isinstance(event, codec.AudioData):
                    line.hear(event.pcm)
                elif isinstance(event, codec.Malformed) and '"StopAudio"' in msg.data[:40]:
                    await line.clear()  # the codec reads what ACS sends; StopAudio is ours
        finally:
            line.hung_up()


async def call(url: str, folder_path: Path, options: RingOptions) -> int:
    """Ring ``url`` (the server's ``/acs/incoming``) as ACS, and hold the call."""
    async with ring(url, folder_path, options) as acs:
        await converse(acs, options)
    return EXIT_OK


@contextlib.asynccontextmanager
async def ring(
    url: str,
    folder_path: Path,
    options: RingOptions,
    secret: str | None = None,
    *,
    fake: FakeAcs | None = None,
) -> AsyncIterator[AcsCall]:
    """Ring ``url`` as ACS (Event Grid, then Call Automation as the server answers) and open
    the media stream; hangs up (and reports the call disconnected) on the way out. The Event
    Grid secret is ``secret``, else ``$ACS_EVENT_GRID_SECRET`` (the folder's env.sh). With
    ``fake``, the simulated ACS already running is the one called (else one starts here)."""
    import aiohttp

    folder = Folder(folder_path)
    if secret is None:
        secret = os.environ.get("ACS_EVENT_GRID_SECRET", "")
    if secret and "secret=" not in url:
        url += ("&" if "?" in url else "?") + "secret=" + secret
    context = "vlrun-ring-" + secrets.token_urlsafe(24)
    async with contextlib.AsyncExitStack() as stack:
        if fake is None:
            fake = await stack.enter_async_context(running(folder))
        timeout = aiohttp.ClientTimeout(total=max(options.connect_timeout_s, 30.0))
        async with aiohttp.ClientSession(timeout=timeout) as http:
            try:
                body = incoming_call(context, options.caller, options.called)
                async with http.post(url, json=body) as r:
                    status, text = r.status, (await r.content.read(4096)).decode(errors="replace")
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                raise unreachable(url.split("?")[0], exc) from None
            if status == 403:
                raise CallRefused(
                    "the call was refused: 403 (the Event Grid secret did not match)",
                    hint="the ring takes ?secret= from $ACS_EVENT_GRID_SECRET: source the "
                    "same env.sh as the server",
                )
            if status == 404:
                raise CallRefused(
                    "the call was refused: 404 (no ACS webhook there)",
                    hint="the URL is http://HOST:PORT/acs/incoming[/ROUTE], and the serve "
                    "file needs an acs: section",
                )
            if status != 200:
                raise CallRefused(f"the call was refused: HTTP {status} {text[:120]!r}")
            if context in fake.rejects:
                raise CallRefused(f"the call was refused: {fake.rejects[context]}")
            answer = fake.answers.get(context)
            if answer is None:
                hint = (
                    "the server's requests were not signed with this folder's access key: "
                    "start it after sourcing this folder's env.sh"
                    if fake.bad_auth
                    else "see the server's log (is its SSL_CERT_FILE this folder's ca.pem?)"
                )
                raise CallRefused("the server did not answer the call", hint=hint)
            media = answer.get("mediaStreamingOptions") or {}
            rate = 24000 if "24" in str(media.get("audioFormat", "")) else 16000
            transport = str(media.get("transportUrl", ""))
            headers = {
                "Authorization": f"Bearer {fake.token()}",
                "x-ms-call-connection-id": str(answer["callConnectionId"]),
            }
            try:
                ws = await http.ws_connect(transport, headers=headers, max_msg_size=2**20)
            except aiohttp.WSServerHandshakeError as exc:
                raise CallRefused(f"the media socket was refused: HTTP {exc.status}") from None
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                raise unreachable(transport.split("?")[0], exc) from None
            acs = AcsCall(ws, rate, f"4:{options.caller}")
            reader = asyncio.create_task(acs.receive(), name="vlrun-ring-acs")
            try:
                await acs.start()
                options.out(f"answered: ACS call {answer['callConnectionId']} ({rate} Hz)")
                yield acs
            finally:
                await acs.hang_up()
                await cancel_and_wait(reader, timeout=2)
                await _disconnected(http, fake, answer, Deadline(5))


async def _disconnected(http: Any, fake: FakeAcs, answer: dict[str, Any], dl: Deadline) -> None:
    """``CallDisconnected`` to the call's callback URL, as ACS reports the end of a call."""
    callback = str(answer.get("callbackUri", ""))
    if not callback:
        return
    event = {
        "id": str(uuid.uuid4()),
        "source": f"calling/callConnections/{answer['callConnectionId']}",
        "type": "Microsoft.Communication.CallDisconnected",
        "specversion": "1.0",
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "data": {
            "callConnectionId": answer["callConnectionId"],
            "operationContext": answer.get("operationContext"),
        },
    }
    with contextlib.suppress(Exception):  # the server may be gone already
        await dl.run(
            http.post(callback, json=[event], headers={"Authorization": f"Bearer {fake.token()}"})
        )
