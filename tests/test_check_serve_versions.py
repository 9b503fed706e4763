"""api-version per connection: each phone edge connects with its own api-version, and
`vlrun check SERVE_FILE` reports, at the route's line, what a route's profile says that the
edge's version cannot express. casual-chat (pinned to 2025-05-01-preview, with an
end-of-utterance threshold) on the Voice Live SIP edge (always 2026-07-31-preview) passed the
check, and every SIP call to it failed with "Unknown parameter"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runner.config.compile import compile_session
from runner.config.load import load_profile
from runner.config.serve_file import (
    SIP_API_VERSION,
    Connection,
    connections,
    edge_api_version,
    load_serve_file,
    version_problems,
)
from runner.errors import ProfileError

ROOT = Path(__file__).resolve().parents[1]
CASUAL = ROOT / "profiles" / "casual-chat.yaml"
CLOCK = ROOT / "profiles" / "world-clock.yaml"
SIP = "voicelive_sip:\n  preview: true\n  webhook_secret: ${env:SIP_SECRET}\n"
TWILIO = "twilio:\n  auth_token: ${env:TWILIO_TOKEN}\n"
ENV = {"SIP_SECRET": "whsec_eA==", "TWILIO_TOKEN": "tw-token-for-tests"}


def write(tmp: Path, text: str) -> Path:
    path = tmp / "serve.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def deploy_like(tmp: Path, *edges: str) -> Path:
    """deploy/serve.yaml's routes (casual-chat the default), with the given edges on."""
    return write(
        tmp,
        "serve: 1\n"
        "routes:\n"
        f"  - number: '+15550001111'\n    profile: {ROOT / 'profiles' / 'weather.yaml'}\n"
        f"  - path: clock\n    profile: {CLOCK}\n"
        f"  - default: true\n    profile: {CASUAL}\n" + "".join(edges),
    )


def test_the_sip_api_version_is_the_one_the_sip_edge_speaks() -> None:
    from runner.serve import sip

    assert sip.API_VERSION == SIP_API_VERSION
    assert edge_api_version("voicelive_sip") == SIP_API_VERSION
    assert edge_api_version("twilio") is None and edge_api_version("acs") is None


def test_connections_name_each_route_and_edge_with_its_api_version(tmp_path: Path) -> None:
    serve = load_serve_file(deploy_like(tmp_path, TWILIO, SIP), env=ENV)
    assert connections(serve) == (
        Connection(0, "twilio", None),
        Connection(1, "twilio", None),
        Connection(2, "twilio", None),
        # the SIP webhook routes by path name or default, never by a called number
        Connection(1, "voicelive_sip", SIP_API_VERSION),
        Connection(2, "voicelive_sip", SIP_API_VERSION),
    )
    twilio_only = load_serve_file(deploy_like(tmp_path, TWILIO), env=ENV)
    assert {c.edge for c in connections(twilio_only)} == {"twilio"}


def test_casual_chat_compiled_for_the_sip_connection_sends_no_legacy_field() -> None:
    """What the edge must send: the legacy compile carries the field the SIP service refuses."""
    profile = load_profile(CASUAL)
    legacy = compile_session(profile)["session"]["turn_detection"]["end_of_utterance_detection"]
    assert "threshold" in legacy
    sip = compile_session(profile, api_version=SIP_API_VERSION)["session"]
    assert "threshold" not in sip["turn_detection"]["end_of_utterance_detection"]


def test_the_emulator_agrees_with_the_check() -> None:
    """The emulator's 2026-07-31-preview refuses the legacy compile (the calls that failed)
    and takes the compile for SIP's version: what the check asks for is what works."""
    from runner.emulator.session_update import apply_session_update

    profile = load_profile(CASUAL)
    legacy = compile_session(profile)["session"]
    _, errors = apply_session_update({}, legacy, SIP_API_VERSION)
    eou = "session.turn_detection.end_of_utterance_detection"
    assert {(e.code, e.param) for e in errors} == {
        ("unknown_parameter", f"{eou}.threshold"),
        ("unknown_parameter", f"{eou}.timeout"),  # seconds there; the SIP compile sends ms
    }
    sip = compile_session(profile, api_version=SIP_API_VERSION)["session"]
    assert apply_session_update({}, sip, SIP_API_VERSION)[1] == []


def test_check_reports_a_sip_route_to_casual_chat_at_the_route_line(
    tmp_path: Path, run_cli: Any
) -> None:
    path = deploy_like(tmp_path, TWILIO, SIP)
    result = run_cli(["check", str(path)], env=ENV)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    errors = [line for line in out.splitlines() if ": error: " in line]
    assert len(errors) == 1, out  # the SIP default route only; Twilio uses the profile's own
    (error,) = errors
    assert error.startswith(f"{path}:7:"), error  # `- default: true` of routes[2]
    assert "voicelive_sip" in error and SIP_API_VERSION in error
    assert "turn_detection.end_of_utterance_detection.threshold" in error
    assert "casual-chat.yaml:21" in error  # where the profile says it
    assert f"set connection.api_version: {SIP_API_VERSION} in the profile" in out
    assert "or drop turn_detection.end_of_utterance_detection.threshold" in out
    assert "Traceback" not in out


def test_a_worker_gets_the_same_verdict_without_check_options(tmp_path: Path) -> None:
    """What `vlrun serve` can ask at start-up: the loaded file alone is enough."""
    serve = load_serve_file(deploy_like(tmp_path, TWILIO, SIP), env=ENV)
    (problem,) = version_problems(serve)
    assert (problem.file, problem.line, problem.severity) == (str(serve.source), 7, "error")
    assert problem.json_path == "$.routes[2]"
    assert "turn_detection.end_of_utterance_detection.threshold" in problem.message
    without_sip = load_serve_file(deploy_like(tmp_path, TWILIO), env=ENV)
    assert version_problems(without_sip) == []


def test_the_same_file_without_sip_passes(tmp_path: Path, run_cli: Any) -> None:
    """Twilio connects with the profile's own api-version: nothing to report."""
    result = run_cli(["check", str(deploy_like(tmp_path, TWILIO))], env=ENV)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_sip_route_whose_profile_is_expressible_passes(tmp_path: Path, run_cli: Any) -> None:
    path = write(
        tmp_path,
        f"serve: 1\nroutes:\n  - path: clock\n    profile: {CLOCK}\n"
        f"  - number: '+15550001111'\n    profile: {CASUAL}\n" + SIP,
    )  # casual-chat behind a number only: no SIP call reaches it
    result = run_cli(["check", str(path)], env=ENV)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_pinned_older_version_alone_is_no_problem(tmp_path: Path, run_cli: Any) -> None:
    """Only what the SIP version cannot express is reported, not the pin itself: this profile
    pins 2025-05-01-preview and says nothing that 2026-07-31-preview cannot carry (its
    parallel_tool_calls is left out on its own version, with a warning, and sent on SIP's)."""
    (tmp_path / "p.yaml").write_text(
        "name: p\ninstructions: hi\nconnection:\n  api_version: 2025-05-01-preview\n"
        "parallel_tool_calls: false\n",
        encoding="utf-8",
    )
    path = write(tmp_path, "serve: 1\nroutes:\n  - {default: true, profile: p.yaml}\n" + SIP)
    result = run_cli(["check", str(path)], env=ENV)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "parallel_tool_calls" in out  # the profile's own warning, at the profile's line


def test_log_phone_numbers_is_a_boolean_setting_off_by_default(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("name: p\ninstructions: hi\n", encoding="utf-8")
    routes = "routes:\n  - {default: true, profile: p.yaml}\n"
    off = write(tmp_path, "serve: 1\n" + routes)
    assert load_serve_file(off, env={}).log_phone_numbers is False
    on = write(tmp_path, "serve: 1\nlog_phone_numbers: true\n" + routes)
    assert load_serve_file(on, env={}).log_phone_numbers is True
    bad = write(tmp_path, "serve: 1\nlog_phone_numbers: 'yes'\n" + routes)
    with pytest.raises(ProfileError) as err:
        load_serve_file(bad, env={})
    assert [(p.line, p.json_path) for p in err.value.all_problems] == [(2, "$.log_phone_numbers")]
