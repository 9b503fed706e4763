"""A GPT-Live profile in the console page, in Debian's headless Chromium: the fake microphone
speaks (a looped tone) while the embedded emulator's GPT-Live desk backchannels; the page shows
the backchannels as such, its playback is never flushed, and the controls say that this profile
takes neither typed nor image turns."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from tests.browser import chromium
from tests.browser.harness import serving
from tests.test_serve_gpt_live import CLIENT, quiet, voice

pytestmark = pytest.mark.skipif(
    not chromium.available(), reason="needs chromium (scripts/bootstrap.sh test installs it)"
)

TOKEN = "gpt-live-console-token-0123456789"


def _tone_wav(tmp: Path) -> Path:
    """4.5 s of voice then 1.5 s of silence, looped by the fake microphone."""
    out = tmp / "tone.wav"
    with wave.open(str(out), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(24000)
        wav.writeframes(voice(4500) + quiet(1500))
    return out


async def test_the_page_shows_gpt_live_backchannels_and_never_flushes(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "glclient.yaml").write_text(CLIENT)
    async with (
        serving(tmp_path, token=TOKEN) as served,
        chromium.chromium(tmp_path / "chrome", _tone_wav(tmp_path)) as b,
    ):
        await b.open(served.url, 1280, 800)
        await b.wait("document.querySelector('#profile option[value=glclient]')")
        # a steady tone is what noise suppression removes: the microphone as it is
        await b.eval(
            "document.getElementById('noise').checked = false;"
            "document.getElementById('echo').checked = false;"
            "document.getElementById('profile').value = 'glclient';"
            "document.getElementById('start').click()"
        )
        await b.wait("document.body.dataset.ready === 'true'", 30)
        assert await b.eval("document.body.dataset.duplex") == "true"
        # client delegation: no typed turns, and GPT-Live takes no image turns
        assert await b.eval("document.getElementById('text').disabled")
        assert await b.eval("document.getElementById('send').disabled")
        assert await b.eval("document.getElementById('image').disabled")
        assert "no typed turns" in await b.eval("document.getElementById('text').placeholder")
        shown = await b.wait(
            "(() => { const li = document.querySelector('#transcript li[data-backchannel=true]');"
            " return li && li.textContent; })()",
            40,
        )
        assert "(backchannel)" in shown and "mm-hmm" in shown
        # a reply after the caller's silence, shown as a reply, not a backchannel
        await b.wait(
            "[...document.querySelectorAll('#transcript li[data-role=assistant]')]"
            ".some((li) => !li.dataset.backchannel && !li.classList.contains('streaming'))",
            40,
        )
        stats = await b.eval("window.vlrun.stats()")
        assert stats["flushes"] == 0, stats  # a backchannel never flushed the playback
        assert stats["playedSamples"] > 0  # the page did play what GPT-Live said
        picture = await b.eval("window.vlrun.picture()")
        assert any(r["backchannel"] for r in picture["replies"]), picture
        assert not any(r["cutMs"] is not None for r in picture["replies"]), picture
        b.kill()
        assert await served.host.wait_idle(5.0)
