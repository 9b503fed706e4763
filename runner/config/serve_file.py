"""serve.yaml: which profile answers which call, and the phone edges' settings.

Pure like the rest of config: YAML with positions -> the shipped schema (``serve.json``) ->
a few rules a schema says badly (one default route, no number or path twice, profiles that
exist) -> a frozen :class:`ServeFile`. Secrets are ``${env:NAME}`` references only (the schema
refuses a literal); they are resolved here and registered with :mod:`runner.redact`, so no log
line, error or page can show them. ``vlrun check serve.yaml`` runs :func:`check_file`.

Each phone edge connects to Voice Live with an api-version of its own choosing (Twilio and ACS:
the profile's; Voice Live SIP: always :data:`SIP_API_VERSION`). :func:`connections` says which,
per route and edge, so the worker compiles each route's profile for the version it is sent on,
and `vlrun check` reports a route whose profile that version cannot express.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from runner.config import source
from runner.config.locator import Locator
from runner.config.validate import problems_against
from runner.errors import Problem, ProfileError
from runner.redact import register_secret

ACS_ISSUER = "https://acscallautomation.communication.azure.com"
ACS_JWKS_URL = "https://acscallautomation.communication.azure.com/calling/keys"
_ENV_REF = re.compile(r"^\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}$")
# A serve file says so on its first key, which keeps `vlrun check` from reading profiles as one.
HEAD = re.compile(r"^serve\s*:", re.MULTILINE)
#: The api-version of Voice Live SIP's calls API and of the sockets it attaches to a call: its
#: sessions speak this version whatever the route's profile pins (runner/serve/sip.py).
SIP_API_VERSION = "2026-07-31-preview"
#: The phone edges, by the serve-file section that turns each on.
EDGES = ("twilio", "acs", "voicelive_sip")


@dataclass(frozen=True)
class Route:
    profile: Path
    number: str | None = None
    path: str | None = None
    default: bool = False
    goodbye: str | None = None
    call_control: tuple[str, ...] = ()  # hang_up, transfer, send_dtmf


@dataclass(frozen=True)
class TwilioSettings:
    auth_token: str = ""
    account_sid: str = ""


@dataclass(frozen=True)
class AcsSettings:
    connection_string: str = ""
    resource_id: str = ""
    audio_format: str = "pcm16k"
    event_grid_secret: str = ""
    jwks_url: str = ACS_JWKS_URL
    issuer: str = ACS_ISSUER

    @property
    def rate(self) -> int:
        return 24000 if self.audio_format == "pcm24k" else 16000


@dataclass(frozen=True)
class SipSettings:
    """Voice Live SIP (preview): the signing secret of the webhook Voice Live posts to."""

    webhook_secret: str = ""


@dataclass(frozen=True)
class ServeFile:
    source: Path
    routes: tuple[Route, ...]
    public_url: str | None = None
    max_calls: int | None = None
    drain_timeout_s: float | None = None
    twilio: TwilioSettings | None = None
    acs: AcsSettings | None = None
    sip: SipSettings | None = None
    # Callers' phone numbers in logs: whole when true, else masked to their last four digits.
    log_phone_numbers: bool = False
    max_call_s: float | None = None  # past it: goodbye and hang-up (None: no limit)
    media_timeout_s: float | None = None  # no caller media this long: dropped (None: 5 s)

    def edges(self) -> tuple[str, ...]:
        """The phone edges this file turns on, by section name (see :data:`EDGES`)."""
        on = {"twilio": self.twilio, "acs": self.acs, "voicelive_sip": self.sip}
        return tuple(edge for edge in EDGES if on[edge] is not None)


@dataclass(frozen=True)
class Connection:
    """One route as one phone edge answers it, and the api-version its sessions connect with."""

    route: int  # index in ServeFile.routes, which is the file's `routes:` list
    edge: str  # a serve-file section of EDGES
    api_version: str | None  # None: the profile's own (connection.api_version, else the default)


def edge_api_version(edge: str) -> str | None:
    """The api-version ``edge``'s Voice Live sessions use; None: the route's profile's own.

    Twilio and ACS open a session the way `vlrun PROFILE` does, at the profile's api-version;
    Voice Live SIP attaches to a call its own API placed, at the version that API speaks."""
    return SIP_API_VERSION if edge == "voicelive_sip" else None


def connections(serve: ServeFile) -> tuple[Connection, ...]:
    """Every (route, edge) pair a call can arrive on, with the api-version it connects with.

    Twilio and ACS pick a route by webhook path, called number or default; Voice Live SIP's
    webhook names a path only (its event carries no called number vlrun routes by), so a
    route with nothing but a number is never a SIP call's."""
    out = []
    for edge in serve.edges():
        for i, route in enumerate(serve.routes):
            if edge == "voicelive_sip" and not (route.path or route.default):
                continue
            out.append(Connection(i, edge, edge_api_version(edge)))
    return tuple(out)


def extra_tool_dirs(serve: ServeFile) -> tuple[Path, ...]:
    """Tool folders the routes' profiles get besides their own project's: the serve file's
    folder is a project root for the profiles it routes (``tools/`` there, if any)."""
    return (serve.source.parent.resolve() / "tools",)


@cache
def schema() -> dict[str, Any]:
    text = resources.files("runner.config.schema").joinpath("serve.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def is_serve_file(path: Path, head: str) -> bool:
    """The detector `vlrun check` uses: a YAML file whose text starts with ``serve:``."""
    return path.suffix in (".yaml", ".yml") and bool(HEAD.search(head))


def analyse(
    path: Path, *, env: Mapping[str, str] | None = None, strict_env: bool = True
) -> tuple[ServeFile | None, list[Problem]]:
    """The serve file and every problem found; missing env vars are warnings unless strict."""
    serve, problems, _ = _analysed(path, env=env, strict_env=strict_env)
    return serve, problems


def _analysed(
    path: Path, *, env: Mapping[str, str] | None, strict_env: bool
) -> tuple[ServeFile | None, list[Problem], Locator]:
    env = os.environ if env is None else env
    src = source.load_file(path)  # raises ProfileError for unreadable files and bad YAML
    loc = Locator(src.positions, str(path))
    written = _written_secrets(src.data, loc)
    problems = written + problems_against(schema(), src.data, loc)
    if problems:
        return None, problems, loc
    data: dict[str, Any] = src.data
    routes = _routes(path, data["routes"], loc, problems)
    twilio = acs = None
    if "twilio" in data:
        t = data["twilio"]
        twilio = TwilioSettings(
            auth_token=_secret(t, "auth_token", ("twilio",), env, loc, problems, strict_env),
            account_sid=_secret(t, "account_sid", ("twilio",), env, loc, problems, strict_env),
        )
    if "acs" in data:
        a = data["acs"]
        acs = AcsSettings(
            connection_string=_secret(
                a, "connection_string", ("acs",), env, loc, problems, strict_env
            ),
            resource_id=str(a["resource_id"]),
            audio_format=str(a.get("audio_format", "pcm16k")),
            event_grid_secret=_secret(
                a, "event_grid_secret", ("acs",), env, loc, problems, strict_env
            ),
            jwks_url=str(a.get("jwks_url", ACS_JWKS_URL)),
            issuer=str(a.get("issuer", ACS_ISSUER)),
        )
    sip = None
    if "voicelive_sip" in data:
        v = data["voicelive_sip"]
        sip = SipSettings(
            webhook_secret=_secret(
                v, "webhook_secret", ("voicelive_sip",), env, loc, problems, strict_env
            )
        )
        problems.append(
            loc.problem(
                ("voicelive_sip",),
                "voicelive_sip follows Voice Live SIP's preview api-version 2026-07-31-preview, "
                "which may change; its webhook signature scheme is inferred from Azure OpenAI's",
                hint="see docs/telephony.md, 'Voice Live SIP (preview)'",
                severity="warning",
            )
        )
    drain = data.get("drain_timeout_s")
    serve = ServeFile(
        source=path,
        routes=tuple(routes),
        public_url=str(data["public_url"]).rstrip("/") if "public_url" in data else None,
        max_calls=int(data["max_calls"]) if "max_calls" in data else None,
        drain_timeout_s=float(drain) if drain is not None else None,
        twilio=twilio,
        acs=acs,
        sip=sip,
        log_phone_numbers=bool(data.get("log_phone_numbers", False)),
        max_call_s=_seconds(data.get("max_call_s")),
        media_timeout_s=_seconds(data.get("media_timeout_s")),
    )
    return serve, problems, loc


def load_serve_file(path: Path, *, env: Mapping[str, str] | None = None) -> ServeFile:
    """The serve file, or a ProfileError listing every problem at file:line:col."""
    if not path.is_file():
        raise ProfileError([source.problem(str(path), None, None, "no such serve file")])
    serve, problems = analyse(path, env=env, strict_env=True)
    if serve is None or any(p.severity == "error" for p in problems):
        raise ProfileError(problems)
    return serve


def check_file(path: Path, options: Any) -> list[Problem]:
    """`vlrun check` on a serve file (a validator of the kinds registry), and on the profiles
    its routes name: a call must not be the first to find a broken profile, nor the first to
    send one on an edge whose api-version cannot express it."""
    from runner.config.check import check_profile

    env = getattr(options, "env", None)
    serve, problems, loc = _analysed(path, env=env, strict_env=False)
    if serve is None:
        return problems
    make_bindings = getattr(options, "bindings_for", None)
    if make_bindings is not None:  # the routes' tools as the worker finds them
        extra = (*options.tools_dirs, *extra_tool_dirs(serve))
        options = replace(options, bindings=make_bindings(extra))
    for profile in dict.fromkeys(r.profile for r in serve.routes if r.profile.is_file()):
        try:
            problems += check_profile(profile, options)
        except ProfileError as exc:
            problems += list(exc.all_problems)
    problems += version_problems(serve, options, loc=loc)
    return problems


def version_problems(
    serve: ServeFile, options: Any = None, *, loc: Locator | None = None
) -> list[Problem]:
    """At each route's line: what its profile says that an edge's api-version cannot express.

    The profile is compiled for its own api-version and for the edge's; a problem only the
    edge's version has is one no `vlrun check PROFILE` shows, and one every call on that edge
    would meet (a field the service refuses, or one left out so the call behaves otherwise),
    so it is an error here whatever its severity in the profile's own check. ``options`` (a
    CheckOptions) brings --var, --set and env; a worker starting up passes none."""
    from runner.config.compile import compile_with_problems, effective_api_version
    from runner.config.load import analyse as analyse_profile

    if loc is None:
        loc = Locator(source.load_file(serve.source).positions, str(serve.source))
    out: list[Problem] = []
    compiled: dict[tuple[Path, str | None], tuple[Any, list[Problem]]] = {}

    def compile_for(path: Path, version: str | None) -> tuple[Any, list[Problem]]:
        if (path, version) not in compiled:
            try:
                profile, found = analyse_profile(
                    path,
                    vars=getattr(options, "vars", {}),
                    sets=getattr(options, "sets", ()),
                    env=getattr(options, "env", None),
                )
                if profile is not None and not any(p.severity == "error" for p in found):
                    found = compile_with_problems(profile, api_version=version)[1]
                else:
                    profile = None  # its own check reports why; nothing to compare
            except ProfileError:
                profile, found = None, []  # likewise
            compiled[(path, version)] = (profile, found)
        return compiled[(path, version)]

    pairs: dict[tuple[int, str], list[str]] = {}
    for c in connections(serve):
        if c.api_version is not None:
            pairs.setdefault((c.route, c.api_version), []).append(c.edge)
    for (index, version), edges in pairs.items():
        route = serve.routes[index]
        if not route.profile.is_file():
            continue  # reported as a missing profile already
        profile, own = compile_for(route.profile, None)
        if profile is None:
            continue
        pinned = effective_api_version(profile)
        if pinned == version:
            continue
        seen = {(p.file, p.line, p.col, p.json_path) for p in own}
        for p in compile_for(route.profile, version)[1]:
            if (p.file, p.line, p.col, p.json_path) in seen:
                continue
            out.append(_version_problem(loc, index, " and ".join(edges), version, pinned, p))
    return out


def _version_problem(
    loc: Locator, index: int, edges: str, version: str, pinned: str, found: Problem
) -> Problem:
    field = found.json_path.removeprefix("$").removeprefix(".") or "a field"
    where = f"{_shown(found.file)}:{found.line}" if found.line else _shown(found.file)
    hint = (
        f"set connection.api_version: {version} in the profile (its own is {pinned}), "
        f"or drop {field}"
    )
    if found.hint:
        hint += f"; {found.hint}"
    return loc.problem(
        ("routes", index),
        f"{edges} calls connect with api-version {version}, which cannot express "
        f"{field} ({where}): {found.message}",
        hint=hint,
    )


def _shown(file: str) -> str:
    try:
        return str(Path(file).relative_to(Path.cwd()))
    except ValueError:
        return file


SECRET_KEYS = {
    "twilio": ("auth_token", "account_sid"),
    "acs": ("connection_string", "event_grid_secret"),
    "voicelive_sip": ("webhook_secret",),
}


def _written_secrets(data: Any, loc: Locator) -> list[Problem]:
    """A secret written out in the file: said without its value, which is then masked."""
    out: list[Problem] = []
    if not isinstance(data, dict):
        return out
    for section, keys in SECRET_KEYS.items():
        block = data.get(section)
        if not isinstance(block, dict):
            continue
        for key in keys:
            value = block.get(key)
            if value is None or (isinstance(value, str) and _ENV_REF.match(value)):
                continue
            register_secret(str(value))  # never echoed by a later message either
            block[key] = "${env:WRITTEN_OUT_SECRET}"
            out.append(
                loc.problem(
                    (section, key),
                    f"{section}.{key} is a secret: write it as an ${{env:NAME}} reference, "
                    "never in the file",
                    hint=f"e.g. {key}: ${{env:{section.upper()}_{key.upper()}}}",
                )
            )
    return out


def _routes(
    path: Path, items: list[dict[str, Any]], loc: Locator, problems: list[Problem]
) -> list[Route]:
    out: list[Route] = []
    seen: dict[tuple[str, str], int] = {}
    defaults = 0
    for i, item in enumerate(items):
        where = ("routes", i)
        if not any(k in item for k in ("number", "path")) and not item.get("default"):
            problems.append(
                loc.problem(
                    where,
                    "a route answers nothing: give it a number, a path or default: true",
                )
            )
        for key in ("number", "path"):
            if key in item:
                first = seen.setdefault((key, str(item[key])), i)
                if first != i:
                    problems.append(
                        loc.problem(
                            (*where, key),
                            f"{key} {item[key]} is already routed by routes[{first}]",
                        )
                    )
        if item.get("default"):
            defaults += 1
            if defaults > 1:
                problems.append(loc.problem((*where, "default"), "more than one default route"))
        profile = (path.parent / str(item["profile"])).resolve()
        if not profile.is_file():
            problems.append(
                loc.problem(
                    (*where, "profile"),
                    f"no profile file {item['profile']} (relative to {path.name})",
                )
            )
        out.append(
            Route(
                profile=profile,
                number=item.get("number"),
                path=item.get("path"),
                default=bool(item.get("default", False)),
                goodbye=item.get("goodbye"),
                call_control=tuple(item.get("call_control", ())),
            )
        )
    return out


def _secret(
    section: Mapping[str, Any],
    key: str,
    prefix: tuple[str, ...],
    env: Mapping[str, str],
    loc: Locator,
    problems: list[Problem],
    strict: bool,
) -> str:
    ref = section.get(key)
    if ref is None:
        return ""
    match = _ENV_REF.match(str(ref))
    assert match is not None  # the schema allows only a reference
    name = match.group(1)
    value = env.get(name)
    if not value:
        problems.append(
            loc.problem(
                (*prefix, key),
                f"environment variable {name} is not set",
                hint=f"export {name}=... before `vlrun serve`",
                severity="error" if strict else "warning",
            )
        )
        return ""
    register_secret(value)
    return value


def _seconds(value: Any) -> float | None:
    return float(value) if value is not None else None
