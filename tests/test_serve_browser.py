"""`vlrun serve` end to end in a real browser: Debian's headless Chromium, a fake microphone
fed with espeak-ng speech, the page's own worklets, the embedded emulator behind vlrun."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import wave
from pathlib import Path

import pytest

from tests.browser import chromium
from tests.browser.harness import serving, write_profiles

pytestmark = pytest.mark.skipif(
    not chromium.available() or shutil.which("espeak-ng") is None,
    reason="needs chromium and espeak-ng (scripts/bootstrap.sh test installs them)",
)

TOKEN = "browser-test-token-0123456789"
SILENCE_S = 3.5  # after the speech, before Chromium loops the file and the person speaks again


def speech_wav(tmp: Path) -> Path:
    """'What is the weather in Paris?' by espeak-ng, then silence (the fake mic loops it)."""
    raw = tmp / "speech-raw.wav"
    subprocess.run(
        ["espeak-ng", "-w", str(raw), "What is the weather in Paris?"],
        check=True,
        capture_output=True,
    )
    from runner.live.audio import AudioFormat, read_wav

    pcm = read_wav(raw, AudioFormat(24000)) + bytes(int(24000 * SILENCE_S) * 2)
    out = tmp / "speech.wav"
    with wave.open(str(out), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(24000)
        wav.writeframes(pcm)
    return out


def artifacts(tmp_path: Path) -> Path:
    """Where screenshots go: VLRUN_TEST_ARTIFACTS if set (CI uploads it), else the tmp dir."""
    root = Path(os.environ.get("VLRUN_TEST_ARTIFACTS") or tmp_path / "artifacts")
    root.mkdir(parents=True, exist_ok=True)
    return root


def trace_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_a_conversation_in_chromium(tmp_path: Path) -> None:
    write_profiles(tmp_path)
    wav = speech_wav(tmp_path)
    shots = artifacts(tmp_path)
    # speed 0: the emulator sends each reply at once, so what arrived is far ahead of what
    # was heard, and only the page's position can give the right truncate.
    async with serving(tmp_path, token=TOKEN, speed=0.0) as served:
        async with chromium.chromium(tmp_path / "chrome", wav) as b:
            # A wrong token: the page itself is refused.
            await b.open(served.base + "/?token=not-the-token-at-all")
            assert "401" in await b.eval("document.body.innerText")
            await b.goto(served.url)
            await b.wait("document.querySelector('#profile option[value=weather]')")
            assert "emulator" in await b.eval("document.getElementById('target').textContent")
            await b.eval(
                "document.getElementById('profile').value = 'weather';"
                "document.getElementById('start').click()"
            )
            # The spoken turn: transcript, tool call, reply audio played in the page.
            await b.wait(
                "[...document.querySelectorAll('#transcript [data-role=you]')]"
                ".some(li => li.textContent.includes('weather in Paris'))",
                40,
            )
            await b.wait("document.querySelector('#tool-rows tr[data-ok=true]')", 30)
            tool_row = await b.eval("document.querySelector('#tool-rows tr').innerText")
            assert "get_weather" in tool_row and "Paris" in tool_row and "21" in tool_row
            await b.wait("window.vlrun.stats() && window.vlrun.stats().playedSamples > 24000", 30)
            assert await b.eval("window.vlrun.stats().peak") > 0.05  # heard, not silence
            # The looped speech comes back while the reply plays: barge-in flushes playback.
            await b.wait("window.vlrun.stats().flushes >= 1", 40)
            await b.wait("document.querySelector('#timeline [data-event=truncate]')", 10)
            await b.wait("document.querySelector('#timeline [data-event=barge_in]')", 10)
            await b.screenshot(shots / "serve-mid-conversation.png")
            # Push-to-talk gates the mic; a typed turn is answered.
            await b.eval("document.getElementById('ptt').click()")
            await b.eval(
                "document.getElementById('text').value = 'I typed this';"
                "document.getElementById('send').click()"
            )
            await b.wait(
                "[...document.querySelectorAll('#transcript [data-role=assistant]')]"
                ".some(li => li.textContent.includes('You typed that'))",
                40,
            )
            latency = await b.eval(
                "document.querySelector('#timeline [data-event=first_audio]').innerText"
            )
            assert "ms" in latency
            await b.screenshot(shots / "serve.png")
            await b.resize(390, 844, mobile=True)
            await b.screenshot(shots / "serve-phone.png")
            flushed_at = await b.eval("window.vlrun.stats().flushedAt[0]")
            conv = next(iter(served.host.conversations.values()))
            assert conv.running and served.host.active == 1
            # The browser vanishes mid-conversation: its session is freed within 5 s.
            b.kill()
            assert await served.host.wait_idle(5.0), "the session outlived its browser by 5 s"
        assert conv.trace_path is not None
        events = trace_events(conv.trace_path)
        truncates = [
            e["event"] for e in events if e["event"].get("type") == "conversation.item.truncate"
        ]
        assert truncates, "no truncate was sent on barge-in"
        truncate = truncates[0]
        received_ms = sum(
            int(re.search(r"<(\d+) chars", e["event"]["delta"]).group(1)) * 3 / 4 / 48
            for e in events
            if e["dir"] == "in"
            and e["event"].get("type") == "response.audio.delta"
            and e["event"].get("item_id") == truncate["item_id"]
        )
        # cut off mid-reply: seconds less was heard than had arrived
        assert 0 < truncate["audio_end_ms"] < received_ms - 2000, (truncate, received_ms)
        # vlrun truncated where the page says it stopped playing (reports come every 40 ms)
        assert abs(truncate["audio_end_ms"] - flushed_at) < 250, (truncate, flushed_at)
        notes = [
            e["event"]
            for e in events
            if e["dir"] == "note" and e["event"].get("type") == "page_flushed"
        ]
        assert notes and notes[0]["item_id"] == truncate["item_id"]
