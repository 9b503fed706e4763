"""Endpoint, credential and agent resolution (runner/connect.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runner.config.load import load_profile
from runner.errors import AuthError, ConfigError, ConnectError
from runner.live.connect import (
    AGENT_SCOPE,
    Target,
    connect_failure,
    endpoint_for,
    load_dotenv_file,
    open_connection,
    resolve_target,
)
from runner.redact import forget_secrets, redact

PROFILE = """\
name: p
instructions: hi
voice: alloy
"""


def profile(tmp: Path, extra: str = "", base: str = PROFILE) -> Any:
    path = tmp / "p.yaml"
    path.write_text(base + extra, encoding="utf-8")
    return load_profile(path)


AGENT_BASE = "name: p\nvoice: alloy\n"  # an agent brings its own instructions


def test_endpoint_precedence_flag_then_profile_then_env(tmp_path: Path) -> None:
    env = {"AZURE_VOICELIVE_ENDPOINT": "https://env.example/"}
    with_endpoint = profile(tmp_path, "connection:\n  endpoint: https://profile.example/\n")
    flag = resolve_target(with_endpoint, endpoint="https://flag.example/", env=env)
    assert (flag.endpoint, flag.endpoint_source) == ("https://flag.example/", "--endpoint")
    prof = resolve_target(with_endpoint, env=env)
    assert prof.endpoint == "https://profile.example/"
    assert prof.endpoint_source.endswith("p.yaml: connection.endpoint")
    from_env = resolve_target(profile(tmp_path), env=env)
    assert (from_env.endpoint, from_env.endpoint_source) == (
        "https://env.example/",
        "AZURE_VOICELIVE_ENDPOINT",
    )


@pytest.mark.parametrize(
    ("names", "winner"),
    [
        (["AZURE_VOICELIVE", "AZURE_VOICE_LIVE", "AZURE_COGNITIVE_SERVICES"], "AZURE_VOICELIVE"),
        (["AZURE_VOICE_LIVE", "AZURE_COGNITIVE_SERVICES"], "AZURE_VOICE_LIVE"),
        (["AZURE_COGNITIVE_SERVICES"], "AZURE_COGNITIVE_SERVICES"),
    ],
)
def test_env_families_in_documented_order(tmp_path: Path, names: list[str], winner: str) -> None:
    env = {}
    for n in names:
        env[f"{n}_ENDPOINT"] = f"https://{n.lower()}.example/"
        env[f"{n}_API_KEY"] = f"key-of-{n.lower()}-0123456789"
    target = resolve_target(profile(tmp_path), env=env)
    assert target.endpoint_source == f"{winner}_ENDPOINT"
    assert target.key_source == f"{winner}_API_KEY"
    assert target.api_key == f"key-of-{winner.lower()}-0123456789"


def test_families_mix_endpoint_and_key_independently(tmp_path: Path) -> None:
    env = {
        "AZURE_VOICE_LIVE_ENDPOINT": "https://a.example/",
        "AZURE_COGNITIVE_SERVICES_API_KEY": "mixed-family-key-0123",
    }
    target = resolve_target(profile(tmp_path), env=env)
    assert target.endpoint_source == "AZURE_VOICE_LIVE_ENDPOINT"
    assert target.key_source == "AZURE_COGNITIVE_SERVICES_API_KEY"


def test_no_endpoint_anywhere_means_embedded_emulator(tmp_path: Path) -> None:
    target = resolve_target(profile(tmp_path), env={})
    assert target.embedded and target.endpoint is None
    assert target.describe() == "offline: local Voice Live emulator, scripted replies"
    forced = resolve_target(
        profile(tmp_path), emulator=True, env={"AZURE_VOICELIVE_ENDPOINT": "https://x.example/"}
    )
    assert forced.embedded and forced.endpoint_source == "--emulator"


def test_bad_endpoint_names_its_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_target(profile(tmp_path), env={"AZURE_COGNITIVE_SERVICES_ENDPOINT": "my-resource"})
    assert (
        info.value.message
        == "AZURE_COGNITIVE_SERVICES_ENDPOINT: 'my-resource' is not an endpoint URL"
    )


def test_key_without_endpoint_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="AZURE_VOICELIVE_API_KEY is set but no endpoint"):
        resolve_target(profile(tmp_path), env={"AZURE_VOICELIVE_API_KEY": "lonely-key-0123456"})


def test_keys_are_registered_secrets(tmp_path: Path) -> None:
    forget_secrets()
    secret = "Zq8-very-secret-key-value"
    resolve_target(
        profile(tmp_path),
        env={"AZURE_VOICELIVE_ENDPOINT": "https://a.example/", "AZURE_VOICELIVE_API_KEY": secret},
    )
    assert redact(f"the key is {secret}.") == "the key is ***."
    assert secret not in repr(
        resolve_target(
            profile(tmp_path),
            env={
                "AZURE_VOICELIVE_ENDPOINT": "https://a.example/",
                "AZURE_VOICELIVE_API_KEY": secret,
            },
        )
    )


def test_dotenv_loads_without_overriding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text(
        "AZURE_VOICELIVE_ENDPOINT=https://dotenv.example/\nAZURE_VOICELIVE_MODEL=from-file\n"
    )
    monkeypatch.setenv("AZURE_VOICELIVE_MODEL", "from-shell")
    monkeypatch.setenv("VLRUN_DOTENV", str(env_file))
    assert load_dotenv_file() == env_file
    import os

    assert os.environ["AZURE_VOICELIVE_ENDPOINT"] == "https://dotenv.example/"
    assert os.environ["AZURE_VOICELIVE_MODEL"] == "from-shell"  # the shell wins
    monkeypatch.setenv("VLRUN_DOTENV", "none")
    assert load_dotenv_file() is None
    monkeypatch.setenv("VLRUN_DOTENV", str(tmp_path / "missing.env"))
    with pytest.raises(ConfigError, match="missing.env: no such file"):
        load_dotenv_file()


def test_dotenv_found_in_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("AZURE_VOICE_LIVE_ENDPOINT=https://cwd.example/\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VLRUN_DOTENV")
    assert load_dotenv_file() == tmp_path / ".env"
    assert resolve_target(None).endpoint == "https://cwd.example/"


async def test_embedded_emulator_uses_a_private_key(tmp_path: Path) -> None:
    target = resolve_target(profile(tmp_path), env={})
    async with endpoint_for(target) as (endpoint, live):
        assert endpoint.startswith("http://127.0.0.1:")
        assert live.api_key and live.key_source == "embedded emulator"
        from azure.core.credentials import AzureKeyCredential

        async with open_connection(live, endpoint, AzureKeyCredential(live.api_key)) as conn:
            event = await conn.recv()
            assert event.type == "session.created"
        with pytest.raises(AuthError):
            async with open_connection(live, endpoint, AzureKeyCredential("not-the-key-123")):
                pass


async def test_current_agent_binding_goes_as_connect_kwargs(tmp_path: Path, emulator: Any) -> None:
    p = profile(
        tmp_path, "connection:\n  agent:\n    name: helper\n    project: proj1\n", AGENT_BASE
    )
    target = resolve_target(p, endpoint=emulator.endpoint, env={})
    assert dict(target.agent_kwargs) == {"agent_name": "helper", "project_name": "proj1"}
    from azure.core.credentials import AzureKeyCredential

    async with open_connection(target, emulator.endpoint, AzureKeyCredential("k-123456")) as conn:
        await conn.recv()
    query = emulator.sessions[-1].query
    assert query["agent-name"] == "helper" and query["agent-project-name"] == "proj1"


class TokenCredential:
    """A token credential with the azure-core shape (what DefaultAzureCredential returns)."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        self.scopes.append(scopes)
        return AccessToken(f"token-for-{'-'.join(scopes)}-0123456789", 2_000_000_000)

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> TokenCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass


async def test_legacy_agent_gets_an_agent_access_token(tmp_path: Path, emulator: Any) -> None:
    p = profile(
        tmp_path, "connection:\n  agent:\n    id: asst_123\n    project: proj1\n", AGENT_BASE
    )
    target = resolve_target(p, endpoint=emulator.endpoint, env={})
    assert target.agent_query.get("agent-id") == "asst_123"
    credential = TokenCredential()
    async with open_connection(target, emulator.endpoint, credential) as conn:
        await conn.recv()
    query = emulator.sessions[-1].query
    assert query["agent-id"] == "asst_123"
    assert query["agent-access-token"] == f"token-for-{AGENT_SCOPE}-0123456789"
    assert (AGENT_SCOPE,) in credential.scopes
    assert redact(query["agent-access-token"]) == "***"  # registered as a secret


def test_connect_failure_messages() -> None:
    class Status(Exception):
        def __init__(self, status: int) -> None:
            super().__init__(f"HTTP {status}")
            self.status = status

    target = Target("https://x.example/", "--endpoint", "key-0123456", "AZURE_VOICELIVE_API_KEY")

    def failure(status: int) -> Exception:
        try:
            raise RuntimeError("wrapped") from Status(status)
        except RuntimeError as exc:
            return connect_failure(exc, "https://x.example/", target)

    assert isinstance(failure(401), AuthError)
    assert (
        failure(403).message
        == "https://x.example/ refused the API key from AZURE_VOICELIVE_API_KEY (HTTP 403)"
    )
    assert failure(404).message == "https://x.example/: Voice Live endpoint not found (HTTP 404)"
    assert isinstance(failure(500), ConnectError)
