"""A GPT-Live profile in the browser console of `vlrun serve` (issue 29 item 2): the real server,
its embedded emulator's GPT-Live desk on the same port, and the page's WebSocket protocol.

The host builds a GptLiveSession for a GPT-Live ``session.start`` (runner/live/sessions.py), the
page's audio runs at GPT-Live's ``audio.format`` rate, typed turns go to the Responses backend
(and are refused with a message under client delegation), image turns are refused, a
backchannel is shown as one and never flushes the page's playback, and a yield is marked."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from tests.browser.harness import Page, page, serving, write_tool

RESPONSES = """\
name: glresp
connection: {{model: gpt-live-1}}
instructions: You are the weather desk.
voice: marin
audio: {{input_sampling_rate: {rate}, output_format: pcm16_{rate}hz}}
gpt_live:
  delegation: {{deployment: backend-x, instructions: Call get_weather for the weather.}}
tools:
  - name: get_weather
    timeout_s: 5
"""

CLIENT = """\
name: glclient
connection: {model: gpt-live-1}
instructions: You listen and answer.
voice: marin
"""

#: The emulator's script for the yield: a long first reply the caller talks over.
YIELD_SCRIPT = """\
description: A reply long enough to talk over.
turns:
  - turn: 1
    say: {words}
  - turn: 2
    transcript: stop please
    say: Sorry, go on.
"""

RATE = 24000
SHIPPED = Path(__file__).resolve().parents[1] / "profiles" / "gpt-live.yaml"


def _write(root: Path, name: str, text: str, script: str | None = None) -> None:
    profiles = root / "profiles"
    (profiles / "tools").mkdir(parents=True, exist_ok=True)
    (profiles / f"{name}.yaml").write_text(text)
    write_tool(profiles, 18)
    if script is not None:
        (root / "script.yaml").write_text(script)


def voice(ms: int, rate: int = RATE) -> bytes:
    t = np.arange(rate * ms // 1000) / rate
    return bytes(np.round(np.sin(2 * np.pi * 220 * t) * 6000).astype("<i2").tobytes())


def quiet(ms: int, rate: int = RATE) -> bytes:
    return bytes(rate * ms // 1000 * 2)


async def _speak(p: Page, pcm: bytes, rate: int = RATE) -> None:
    """The page's microphone frames (200 ms each, the most a frame may be)."""
    step = rate // 5 * 2
    for i in range(0, len(pcm), step):
        await p.ws.send_bytes(pcm[i : i + step])


async def _start(p: Page, name: str) -> dict[str, Any]:
    await p.send({"type": "start", "profile": name})
    session = (await p.wait(lambda: p.of("session") or p.of("problems") or p.of("error")))[0]
    assert session["type"] == "session", p.events
    await p.wait(lambda: p.of("ready"))  # session.started came back
    return session


async def test_a_gpt_live_profile_runs_in_the_console_with_typed_turns_to_its_backend(
    tmp_path: Path,
) -> None:
    _write(tmp_path, "glresp", RESPONSES.format(rate=16000))
    async with serving(tmp_path) as served, page(served) as p:
        session = await _start(p, "glresp")
        # GPT-Live's audio.format (PCM16 at 16 kHz), not the Voice Live default of 24 kHz
        assert (session["input_rate"], session["output_rate"]) == (16000, 16000)
        assert session["duplex"] is True and session["typed_turns"] is True
        assert session["images"] is False and session["push_to_talk"] is False
        conv = served.host.conversations[session["conversation"]]
        assert type(conv.live).__name__ == "GptLiveSession"
        await p.send({"type": "text", "text": "what is the weather in Paris?"})
        result = (await p.wait(lambda: p.of("tool_result")))[0]
        assert result["name"] == "get_weather" and result["ok"] is True
        assert '"temperature": 18' in result["text"]
        await p.wait(lambda: any("get_weather returned" in a["text"] for a in p.of("assistant")))
        assert [u["text"] for u in p.of("user")] == ["what is the weather in Paris?"]
        assert any(e.get("event") == "delegation" for e in p.of("timeline"))
        assert p.audio_bytes > 0
        await p.send({"type": "stop", "graceful": True})
        ended = (await p.wait(lambda: p.of("ended")))[0]
        assert ended["code"] == 0
        assert not p.of("error"), p.of("error")
        # the service got GPT-Live's own events, never a Voice Live session.update
        assert conv.trace_path is not None
        trace = conv.trace_path.read_text(encoding="utf-8")
        assert '"session.start"' in trace and '"session.update"' not in trace


async def test_client_delegation_refuses_typed_and_image_turns_with_a_message(
    tmp_path: Path,
) -> None:
    _write(tmp_path, "glclient", CLIENT)
    async with serving(tmp_path) as served, page(served) as p:
        session = await _start(p, "glclient")
        assert session["typed_turns"] is False and session["images"] is False
        assert (session["input_rate"], session["output_rate"]) == (RATE, RATE)
        await p.send({"type": "text", "text": "hello there"})
        error = (await p.wait(lambda: p.of("error")))[0]
        assert "typed turns only with a delegation deployment" in error["text"]
        assert not p.of("user")  # nothing was sent as a turn
        form = aiohttp.FormData()
        png = b"\x89PNG\r\n\x1a\n" + bytes(64)
        form.add_field("image", png, filename="x.png", content_type="image/png")
        url = f"{served.base}/api/conversations/{session['conversation']}/image"
        async with (
            aiohttp.ClientSession() as http,
            http.post(url, data=form, headers={"Origin": served.base}) as r,
        ):
            body = await r.json()
        assert r.status == 400, body
        assert "GPT-Live takes no image turns" in body["error"]
        assert "gpt-realtime" in (body["hint"] or "")


async def test_a_backchannel_is_shown_as_one_and_never_flushes_the_page(tmp_path: Path) -> None:
    """4.5 s of the caller's voice: the emulator backchannels at 2 s and 4 s, then answers
    after its silence. The page gets two backchannel messages, no flush, and one reply."""
    _write(tmp_path, "glclient", CLIENT)
    async with serving(tmp_path) as served, page(served) as p:
        await _start(p, "glclient")
        await _speak(p, voice(4500) + quiet(800))
        await p.wait(lambda: len(p.of("backchannel")) >= 2 and p.of("assistant"))
        backchannels = p.of("backchannel")
        assert [b["text"] for b in backchannels] == ["[emulator] mm-hmm"] * 2
        replies = p.of("assistant")
        assert all("mm-hmm" not in r["text"] for r in replies), replies
        assert not any(r["interrupted"] for r in replies)
        # never a barge-in: the page's playback was not flushed, nothing marked as one
        assert not p.of("flush")
        assert not [e for e in p.of("timeline") if e["event"] in ("barge_in", "yield")]
        # not a reply either: the backchannels' items are not the reply's
        assert {b["item"] for b in backchannels}.isdisjoint({r["item"] for r in replies})
        # and not shown twice (as a notice beside the backchannel message)
        assert not [n for n in p.of("notice") if n["text"].startswith("backchannel:")]
        await p.send({"type": "stop"})
        await p.wait(lambda: p.of("ended"))


async def test_a_reply_the_model_stops_for_the_caller_is_marked_as_yielded(
    tmp_path: Path,
) -> None:
    _write(tmp_path, "glclient", CLIENT, YIELD_SCRIPT.format(words=" ".join(["word"] * 40)))
    async with serving(tmp_path) as served, page(served) as p:
        await _start(p, "glclient")
        await _speak(p, voice(1000) + quiet(700))
        await p.wait(lambda: p.of("assistant_delta"))  # the long reply is under way
        await _speak(p, quiet(200) + voice(800) + quiet(1000))
        yielded = (await p.wait(lambda: [e for e in p.of("timeline") if e["event"] == "yield"]))[0]
        stopped = [a for a in p.of("assistant") if a["item"] == yielded["item_id"]]
        assert stopped and stopped[0]["interrupted"] is True
        assert stopped[0]["text"].startswith("[emulator] word word")
        said = "[emulator] Sorry, go on."
        await p.wait(lambda: any(a["text"] == said for a in p.of("assistant")))
        assert not p.of("backchannel")
        await p.send({"type": "stop"})
        await p.wait(lambda: p.of("ended"))


async def test_the_shipped_gpt_live_profile_greets_and_delegates_in_the_console(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """profiles/gpt-live.yaml as the console serves it: its greeting is said (a commentary),
    and a typed time question goes to its backend, which calls the current_time plugin."""
    monkeypatch.delenv("AZURE_VOICELIVE_ENDPOINT", raising=False)
    monkeypatch.delenv("GPT_LIVE_BACKEND", raising=False)
    async with serving(tmp_path, paths=[SHIPPED]) as served, page(served) as p:
        session = await _start(p, "gpt-live")
        assert session["duplex"] is True and session["typed_turns"] is True
        greeting = "[emulator] Hello! Ask me the time anywhere in the world."
        await p.wait(lambda: any(a["text"] == greeting for a in p.of("assistant")))
        await p.send({"type": "text", "text": "what time is it in Europe/Paris?"})
        result = (await p.wait(lambda: p.of("tool_result")))[0]
        assert result["name"] == "current_time" and result["ok"] is True, result
        await p.wait(lambda: any("current_time returned" in a["text"] for a in p.of("assistant")))
        assert not p.of("flush") and not p.of("error"), p.events
        await p.send({"type": "stop", "graceful": True})
        assert (await p.wait(lambda: p.of("ended")))[0]["code"] == 0


async def test_a_g711_gpt_live_profile_plays_pcm16_decoded_from_its_one_format(
    tmp_path: Path,
) -> None:
    """audio.format audio/pcmu (8 kHz) both ways: the page runs at 8 kHz, and every μ-law byte
    GPT-Live sent reaches the page as two bytes of PCM16."""
    text = RESPONSES.format(rate=16000).replace(
        "{input_sampling_rate: 16000, output_format: pcm16_16000hz}",
        "{input_format: g711_ulaw, output_format: g711_ulaw}",
    )
    _write(tmp_path, "glresp", text)
    async with serving(tmp_path) as served, page(served) as p:
        session = await _start(p, "glresp")
        assert (session["input_rate"], session["output_rate"]) == (8000, 8000)
        await p.send({"type": "text", "text": "what is the weather in Paris?"})
        await p.wait(lambda: any("get_weather returned" in a["text"] for a in p.of("assistant")))
        await p.send({"type": "stop", "graceful": True})
        await p.wait(lambda: p.of("ended"))
        assert served.host.emulator is not None
        record = served.host.emulator.sessions[-1]
        assert record.received[0]["session"]["audio"]["format"] == {
            "type": "audio/pcmu",
            "rate": 8000,
        }
        wire = sum(
            len(base64.b64decode(e["delta"]))
            for e in record.sent
            if e["type"] == "session.output_audio.delta"
        )
        assert wire > 0 and p.audio_bytes == 2 * wire
