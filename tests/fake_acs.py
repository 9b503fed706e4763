"""A stand-in for Azure Communication Services on loopback: the Call Automation REST API the
official SDK calls (over TLS, with its HMAC request signing checked), and the signing keys
(JWKS) ACS publishes for its callback and media-socket tokens.

The SDK insists on https, so the fake serves a self-signed certificate that the test trusts
through the SDK's own ``connection_verify`` option; nothing in the product is bent for tests.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import hmac
import ipaddress
import json
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ISSUER = "https://acscallautomation.communication.azure.com"
RESOURCE_ID = "11111111-2222-3333-4444-555555555555"
ACCESS_KEY = base64.b64encode(b"fake-acs-access-key-for-vlrun-tests-0123").decode()


def self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "acs-cert.pem", tmp / "acs-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class FakeAcs:
    endpoint: str = ""
    jwks_url: str = ""
    ca: Path | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    bad_auth: int = 0
    signing_key: Any = None
    kid: str = "acs-key-1"

    @property
    def connection_string(self) -> str:
        return f"endpoint={self.endpoint}/;accesskey={ACCESS_KEY}"

    def answers(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"].endswith(":answer")]

    def token(self, *, audience: str = RESOURCE_ID, key: Any = None, ttl: float = 300) -> str:
        import jwt

        now = int(time.time())
        claims = {"iss": ISSUER, "aud": audience, "iat": now, "nbf": now, "exp": now + int(ttl)}
        return jwt.encode(
            claims, key or self.signing_key, algorithm="RS256", headers={"kid": self.kid}
        )


def _check_hmac(request: Any, body: bytes) -> bool:
    """ACS's HMAC-SHA256 request signing, as the SDK's policy computes it."""
    auth = request.headers.get("Authorization", "")
    date = request.headers.get("x-ms-date", "")
    content = request.headers.get("x-ms-content-sha256", "")
    if base64.b64encode(hashlib.sha256(body).digest()).decode() != content:
        return False
    signed = f"{request.method}\n{request.path_qs}\n{date};{request.host};{content}"
    mac = hmac.new(base64.b64decode(ACCESS_KEY), signed.encode(), hashlib.sha256)
    expected = base64.b64encode(mac.digest()).decode()
    return (
        auth == f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={expected}"
    )


@contextlib.asynccontextmanager
async def fake_acs(tmp: Path) -> AsyncIterator[FakeAcs]:
    import jwt
    from aiohttp import web
    from cryptography.hazmat.primitives.asymmetric import rsa

    fake = FakeAcs()
    fake.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert, key = self_signed(tmp)
    fake.ca = cert
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def rest(request: web.Request) -> web.Response:
        body = await request.read()
        if not _check_hmac(request, body):
            fake.bad_auth += 1
            return web.json_response({"error": {"code": "Unauthorized"}}, status=401)
        entry = {
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "body": json.loads(body) if body else None,
        }
        fake.requests.append(entry)
        if request.path.endswith(":answer"):
            return web.json_response(
                {
                    "callConnectionId": "cc-" + uuid.uuid4().hex[:12],
                    "serverCallId": "sc-" + uuid.uuid4().hex[:12],
                    "callConnectionState": "connecting",
                    "callbackUri": entry["body"]["callbackUri"],
                }
            )
        if request.path.endswith((":transferToParticipant", ":sendDtmfTones")):
            context = (entry["body"] or {}).get("operationContext")
            return web.json_response({"operationContext": context}, status=202)
        return web.Response(status=204)  # terminate, reject, ...

    async def jwks(_request: web.Request) -> web.Response:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(fake.signing_key.public_key()))
        public.update(kid=fake.kid, use="sig", alg="RS256")
        return web.json_response({"keys": [public]})

    api = web.Application()
    api.router.add_route("*", "/calling/{tail:.*}", rest)
    keys = web.Application()
    keys.router.add_get("/calling/keys", jwks)
    runners = []
    for app, ssl_context in ((api, context), (keys, None)):
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        runners.append((runner, site._server.sockets[0].getsockname()[1]))  # type: ignore[union-attr]
    fake.endpoint = f"https://127.0.0.1:{runners[0][1]}"
    fake.jwks_url = f"http://127.0.0.1:{runners[1][1]}/calling/keys"
    try:
        yield fake
    finally:
        for runner, _ in runners:
            await runner.cleanup()
