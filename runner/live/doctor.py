"""`vlrun doctor`: the sound stack, the endpoint, the credentials and a profile, one line each."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from pathlib import Path
from typing import Any

import click

from runner.errors import EXIT_INVALID, EXIT_OK, AudioUnavailable, VlrunError
from runner.redact import redact


def execute_doctor(
    profile_path: Path | None,
    *,
    endpoint: str | None = None,
    connect: bool = True,
    connect_timeout_s: float | None = None,
) -> int:
    from runner.live.connect import load_dotenv_file

    findings: list[tuple[str, str]] = []  # (status, text): ok | warn | fix

    def add(status: str, text: str) -> None:
        findings.append((status, text))
        click.echo(redact(f"{status:<4} {text}"))

    try:
        dotenv = load_dotenv_file()
        add(
            "ok",
            f".env loaded from {dotenv}" if dotenv else "no .env file (environment variables only)",
        )
    except VlrunError as exc:
        add("fix", exc.message + (f" -- {exc.hint}" if exc.hint else ""))
    _doctor_audio(add)
    profile = None
    if profile_path is not None:
        profile = _doctor_profile(profile_path, add)
    _doctor_endpoint(profile, endpoint, connect, add, connect_timeout_s)
    fixes = sum(1 for s, _ in findings if s == "fix")
    click.echo(f"{'all good' if not fixes else f'{fixes} thing(s) to fix'}")
    return EXIT_OK if not fixes else EXIT_INVALID


def _doctor_audio(add: Any) -> None:
    from runner.live.audio import find_device, import_pyaudio, release_pyaudio, supported_rates

    try:
        pyaudio = import_pyaudio()
        add(
            "ok",
            f"PyAudio {getattr(pyaudio, '__version__', '?')} "
            f"with {pyaudio.get_portaudio_version_text()}",
        )
    except AudioUnavailable as exc:
        add("warn", f"{exc.message} -- {exc.hint} (text and WAV modes still work)")
        return
    try:
        for kind in ("input", "output"):
            try:
                dev = find_device(None, kind)
            except AudioUnavailable as exc:
                add("warn", f"{exc.message} -- {exc.hint}")
                continue
            rates = supported_rates(dev, kind)
            note = "" if 24000 in rates else " (24 kHz not native: vlrun resamples)"
            add(
                "ok" if rates else "fix",
                f"{kind} device {dev.index} '{dev.name}': "
                f"mono PCM16 at {rates or 'no tested rate'}{note}",
            )
    finally:
        release_pyaudio()


def _doctor_profile(path: Path, add: Any) -> Any:
    from runner.config.compile import compile_session
    from runner.config.load import load_profile

    try:
        profile = load_profile(path)
        compile_session(profile)
    except VlrunError as exc:
        for line in exc.render().splitlines():
            add("fix", line)
        return None
    add("ok", f"profile {path} loads and compiles")
    return profile


def _doctor_endpoint(
    profile: Any, endpoint: str | None, connect: bool, add: Any, timeout_s: float | None
) -> None:
    from runner.live.connect import resolve_target

    try:
        target = resolve_target(profile, endpoint=endpoint)
        if timeout_s is not None:
            target = dataclasses.replace(target, connect_timeout_s=timeout_s)
    except VlrunError as exc:
        add("fix", exc.message + (f" -- {exc.hint}" if exc.hint else ""))
        return
    if target.embedded:
        add(
            "ok",
            "no endpoint configured: `vlrun run` uses the local emulator "
            "(set AZURE_VOICELIVE_ENDPOINT and AZURE_VOICELIVE_API_KEY for Azure)",
        )
        return
    add("ok", f"endpoint {target.endpoint} (from {target.endpoint_source})")
    if target.api_key:
        add("ok", f"API key set in {target.key_source} ({len(target.api_key)} characters)")
    else:
        add("ok", "no API key: Microsoft Entra ID sign-in (DefaultAzureCredential) will be used")
    if connect:
        try:
            session_id = asyncio.run(_probe(target))
            add("ok", f"connected and got a session ({session_id})")
        except VlrunError as exc:
            add("fix", exc.message + (f" -- {exc.hint}" if exc.hint else ""))


async def _probe(target: Any) -> str:
    from runner.live.connect import make_credential, open_connection

    credential = make_credential(target)
    try:
        async with open_connection(target, target.endpoint, credential) as conn:
            event = await asyncio.wait_for(conn.recv(), timeout=target.connect_timeout_s)
            return str(
                getattr(getattr(event, "session", None), "id", "") or getattr(event, "type", "?")
            )
    except asyncio.TimeoutError:
        from runner.errors import ConnectError

        raise ConnectError(
            f"{target.endpoint} accepted the connection but sent nothing for "
            f"{target.connect_timeout_s:g} s"
        ) from None
    finally:
        if hasattr(credential, "close"):
            with contextlib.suppress(Exception):
                await credential.close()
