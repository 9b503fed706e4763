"""A profile on api_version v1 through the browser console: v1 keeps the audio formats under
``session.audio``, and the console and the host's G.711 coding read them there (the dated keys
are absent), so the page gets the rates the session really has and decoded PCM16."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.browser.harness import SCRIPT, page, serving

PROFILE = """\
name: v1desk
instructions: You answer typed questions.
voice: en-US-AvaNeural
turn_detection: server_vad
connection: {{api_version: v1}}
audio: {audio}
"""

_DELTAS = ("response.audio.delta", "response.output_audio.delta")


def _wire_bytes(trace: Path) -> tuple[int, int]:
    """Reply audio the service sent, as the trace counts it: (at least, at most) bytes (the
    trace keeps base64 lengths: up to 2 padding bytes a delta are not audio)."""
    chars = deltas = 0
    for line in trace.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        event = record.get("event", {})
        if record.get("dir") == "in" and event.get("type") in _DELTAS:
            chars += int(str(event["delta"]).strip("<").split()[0])  # "<6400 chars audio>"
            deltas += 1
    return chars * 3 // 4 - 2 * deltas, chars * 3 // 4


@pytest.mark.parametrize(
    ("audio", "rate", "per_wire_byte"),
    [
        ("{input_format: g711_ulaw, output_format: g711_ulaw}", 8000, 2),  # μ-law in, PCM16 out
        ("{input_sampling_rate: 16000, output_format: pcm16_16000hz}", 16000, 1),
    ],
)
async def test_a_v1_profile_plays_its_own_formats_in_the_console(
    tmp_path: Path, audio: str, rate: int, per_wire_byte: int
) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "v1desk.yaml").write_text(PROFILE.format(audio=audio))
    (tmp_path / "script.yaml").write_text(SCRIPT)
    async with serving(tmp_path) as served, page(served) as p:
        await p.send({"type": "start", "profile": "v1desk"})
        session = (await p.wait(lambda: p.of("session") or p.of("problems")))[0]
        assert session["type"] == "session", session
        # the rates of the v1 session's audio.input/output.format, not the 24 kHz default
        assert (session["input_rate"], session["output_rate"]) == (rate, rate)
        await p.wait(lambda: p.of("ready"))
        await p.send({"type": "text", "text": "I typed this"})
        await p.wait(lambda: any(e.get("event") == "response_done" for e in p.of("timeline")))
        assert any("You typed that" in e["text"] for e in p.of("assistant"))
        await p.send({"type": "stop"})
        await p.wait(lambda: p.of("ended"))  # its trace is complete (written off the loop)
        conv = served.host.conversations[session["conversation"]]
        assert conv.trace_path is not None
        least, most = _wire_bytes(conv.trace_path)
        assert least > 0
        # every reply byte reached the page as PCM16 (μ-law decoded: two bytes per byte)
        assert least * per_wire_byte <= p.audio_bytes <= most * per_wire_byte
        # the session the service got is v1's: the formats under audio, no dated keys
        sent = [
            json.loads(line)["event"]
            for line in conv.trace_path.read_text(encoding="utf-8").splitlines()
            if '"session.update"' in line
        ]
        assert sent and all("output_audio_format" not in e["session"] for e in sent)
        assert all("audio" in e["session"] for e in sent)
