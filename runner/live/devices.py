"""`vlrun check --devices`: can this machine's sound devices carry a profile's audio?

The runner resamples (soxr) and encodes G.711 itself, so any rate a device opens will do; what
cannot meet is a missing device, a device that opens no rate at all, or no PyAudio. Each is a
warning on the profile: the profile still runs, in text mode or without sound.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.errors import AudioUnavailable, Problem

RATES = (8000, 16000, 24000, 44100, 48000)


def device_problems(path: str, session: Mapping[str, Any]) -> list[Problem]:
    """Warnings where the default devices cannot meet the compiled session's formats."""
    from runner.live.audio import (
        find_device,
        import_pyaudio,
        release_pyaudio,
        supported_rates,
        wire_formats,
    )

    def warn(message: str, hint: str) -> Problem:
        return Problem(path, None, None, "warning", message, hint=hint)

    try:
        import_pyaudio()
    except AudioUnavailable as exc:
        return [warn(f"{exc.message}: this profile runs in text mode here", exc.hint or "")]
    in_fmt, out_fmt, in_law, out_law = wire_formats(dict(session))
    out: list[Problem] = []
    try:
        for kind, fmt, law in (("input", in_fmt, in_law), ("output", out_fmt, out_law)):
            try:
                device = find_device(None, kind)
            except AudioUnavailable as exc:
                then = "runs in text mode" if kind == "input" else "shows its replies as text only"
                out.append(warn(f"{exc.message}: this profile {then} here", exc.hint or ""))
                continue
            rates = supported_rates(device, kind, RATES)
            wire = f"{law} at {fmt.rate} Hz" if law else f"PCM16 at {fmt.rate} Hz"
            if not rates:
                out.append(
                    warn(
                        f"{kind} device '{device.name}' opens none of {list(RATES)} Hz, so the "
                        f"profile's {wire} cannot be played or captured on it",
                        "pick another device (--input-device/--output-device; `vlrun devices`)",
                    )
                )
    finally:
        release_pyaudio()
    return out
