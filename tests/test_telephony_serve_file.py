"""serve.yaml: schema, the rules a schema says badly, env-ref secrets, and `vlrun check` on it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from runner.config.serve_file import load_serve_file
from runner.errors import ProfileError
from runner.redact import redact
from runner.serve.routing import Router, normalise_number

ROOT = Path(__file__).resolve().parents[1]
PROFILE = "name: p\ndescription: d\ninstructions: hi\n"


def serve(tmp: Path, text: str) -> Path:
    (tmp / "p.yaml").write_text(PROFILE, encoding="utf-8")
    path = tmp / "serve.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_valid_file_resolves_its_secrets_and_registers_them(tmp_path: Path) -> None:
    path = serve(
        tmp_path,
        "serve: 1\nmax_calls: 7\ndrain_timeout_s: 12\npublic_url: https://v.example.com/\n"
        "routes:\n  - {number: '+15550001111', profile: p.yaml, goodbye: Bye.}\n"
        "  - {path: sales, profile: p.yaml}\n  - {default: true, profile: p.yaml}\n"
        "twilio:\n  auth_token: ${env:TOK}\n"
        "acs:\n  connection_string: ${env:ACS}\n  resource_id: rid\n  audio_format: pcm24k\n",
    )
    loaded = load_serve_file(path, env={"TOK": "tw-token-abcdef123", "ACS": "endpoint=x;k=1"})
    assert loaded.max_calls == 7 and loaded.drain_timeout_s == 12
    assert loaded.public_url == "https://v.example.com"
    assert loaded.twilio is not None and loaded.twilio.auth_token == "tw-token-abcdef123"
    assert loaded.acs is not None and loaded.acs.rate == 24000
    assert loaded.routes[0].profile == (tmp_path / "p.yaml").resolve()
    assert "tw-token-abcdef123" not in redact("token tw-token-abcdef123 here")
    router = Router(loaded.routes)
    assert router.route(called="4:+1 555 000 1111") is loaded.routes[0]
    assert router.route(path="sales") is loaded.routes[1]
    assert router.route(called="+19998887777") is loaded.routes[2]
    assert router.route(path="nope") is None  # a wrong URL is not the default route
    assert normalise_number("4:+1 (555) 000-1111") == "+15550001111"


def test_every_mistake_is_reported_at_its_line(tmp_path: Path) -> None:
    path = serve(
        tmp_path,
        "serve: 1\nroutes:\n"
        "  - number: '+15550001111'\n    profile: p.yaml\n"
        "  - number: '+15550001111'\n    profile: missing.yaml\n"
        "  - default: true\n    profile: p.yaml\n"
        "  - default: true\n    profile: p.yaml\n"
        "  - profile: p.yaml\n",
    )
    with pytest.raises(ProfileError) as err:
        load_serve_file(path, env={})
    found = {(p.line, p.message) for p in err.value.all_problems}
    assert (5, "number +15550001111 is already routed by routes[0]") in found
    assert (6, "no profile file missing.yaml (relative to serve.yaml)") in found
    assert (9, "more than one default route") in found
    assert any(line == 11 and "answers nothing" in m for line, m in found)


def test_a_written_out_secret_is_refused_without_being_shown(tmp_path: Path) -> None:
    path = serve(
        tmp_path,
        "serve: 1\nroutes:\n  - {default: true, profile: p.yaml}\n"
        "twilio:\n  auth_token: plain-secret-in-file-42\n",
    )
    with pytest.raises(ProfileError) as err:
        load_serve_file(path, env={})
    (problem,) = err.value.all_problems
    assert problem.line == 5 and "write it as an ${env:NAME} reference" in problem.message
    assert "plain-secret-in-file-42" not in problem.render()


def test_a_missing_env_var_fails_the_server_but_only_warns_in_check(
    tmp_path: Path, run_cli: Any
) -> None:
    path = serve(
        tmp_path,
        "serve: 1\nroutes:\n  - {default: true, profile: p.yaml}\n"
        "twilio:\n  auth_token: ${env:VLRUN_TEST_UNSET_TOKEN}\n",
    )
    with pytest.raises(ProfileError, match="VLRUN_TEST_UNSET_TOKEN is not set"):
        load_serve_file(path, env={})
    result = run_cli(["check", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "serve.yaml:5:15: warning: environment variable VLRUN_TEST_UNSET_TOKEN" in (
        result.stdout + result.stderr
    )


def test_check_validates_the_routes_profiles_too(tmp_path: Path, run_cli: Any) -> None:
    path = serve(tmp_path, "serve: 1\nroutes:\n  - {default: true, profile: bad.yaml}\n")
    (tmp_path / "bad.yaml").write_text(PROFILE + "voice: {temperature: 9}\n", encoding="utf-8")
    result = run_cli(["check", str(path)])
    assert result.returncode == 1
    assert "bad.yaml:4" in result.stdout + result.stderr


def test_the_shipped_example_checks_clean(run_cli: Any) -> None:
    result = run_cli(["check", str(ROOT / "deploy" / "serve.yaml")])
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert "0 error(s)" in out and "is not set" in out  # the secrets are env refs, unset here


def test_json_logs_carry_the_call_id_and_no_secret(capsys: pytest.CaptureFixture[str]) -> None:
    import io
    import json

    from runner.redact import register_secret
    from runner.serve.calls_log import CallConsole, call_id_var, json_handler

    stream = io.StringIO()
    handler = json_handler(stream)
    logger = logging.getLogger("vlrun.serve.test-json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    call_log = logging.getLogger("vlrun.serve.call")
    call_log.addHandler(handler)
    call_log.setLevel(logging.INFO)
    try:
        register_secret("sk-live-very-secret-value")
        token = call_id_var.set("call-123")
        logger.info("answered with key %s", "sk-live-very-secret-value")
        call_id_var.reset(token)
        CallConsole("call-456").write("assistant: hello\npartial")
    finally:
        logger.removeHandler(handler)
        call_log.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["call_id"] == "call-123" and lines[0]["level"] == "info"
    assert "sk-live-very-secret-value" not in lines[0]["msg"]
    assert lines[1] == {**lines[1], "call_id": "call-456", "msg": "assistant: hello"}
    assert len(lines) == 2  # the unfinished line waits for its end


def test_vlrun_serve_refuses_a_bad_serve_file_in_one_line(tmp_path: Path, run_cli: Any) -> None:
    path = serve(tmp_path, "serve: 1\nroutes:\n  - {default: true, profile: missing.yaml}\n")
    result = run_cli(["serve", str(tmp_path / "p.yaml"), "--serve-file", str(path)])
    assert result.returncode != 0
    assert "no profile file missing.yaml" in result.stderr
    assert "Traceback" not in result.stderr


def test_voicelive_sip_is_a_flagged_preview_with_an_env_ref_secret(
    tmp_path: Path, run_cli: Any
) -> None:
    path = serve(
        tmp_path,
        "serve: 1\nroutes:\n  - {default: true, profile: p.yaml}\n"
        "voicelive_sip:\n  preview: true\n  webhook_secret: ${env:SIP_SECRET}\n",
    )
    loaded = load_serve_file(path, env={"SIP_SECRET": "whsec_c2lwLXNlY3JldC1mb3ItdGVzdHM="})
    assert loaded.sip is not None
    assert loaded.sip.webhook_secret == "whsec_c2lwLXNlY3JldC1mb3ItdGVzdHM="
    assert "c2lwLXNlY3JldC1mb3ItdGVzdHM" not in redact("got whsec_c2lwLXNlY3JldC1mb3ItdGVzdHM=")
    result = run_cli(["check", str(path)], env={"SIP_SECRET": "whsec_eA=="})
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "serve.yaml:5" in out and "preview" in out and "warning" in out
    # without the flag, or with the secret written out: errors at their lines
    unflagged = serve(
        tmp_path,
        "serve: 1\nroutes:\n  - {default: true, profile: p.yaml}\n"
        "voicelive_sip:\n  preview: false\n  webhook_secret: whsec_d3JpdHRlbi1vdXQ=\n",
    )
    with pytest.raises(ProfileError) as err:
        load_serve_file(unflagged, env={})
    where = {(p.line, p.json_path) for p in err.value.all_problems}
    assert (5, "$.voicelive_sip.preview") in where, where
    assert any(line == 6 for line, _ in where), where
    text = "\n".join(p.message + str(p.hint) for p in err.value.all_problems)
    assert "d3JpdHRlbi1vdXQ" not in text
