"""The console page in Debian's headless Chromium: the conversation picture, the live meter and
waveforms, mocked tools said on the page, a layout that holds at laptop widths, escaping, the
favicon. Screenshots at 1440x900 and 1024x768 go to VLRUN_TEST_ARTIFACTS (docs/serve.png is
the first)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.browser import chromium
from tests.browser.harness import (
    SCRIPT,
    WEATHER_MOCKS,
    serving,
    write_offline_tool,
    write_profiles,
)
from tests.test_serve_browser import artifacts, speech_wav

pytestmark = pytest.mark.skipif(
    not chromium.available() or shutil.which("espeak-ng") is None,
    reason="needs chromium and espeak-ng (scripts/bootstrap.sh test installs them)",
)

TOKEN = "console-test-token-0123456789"

#: True when nothing in the page is wider than the window, and the given cells' words are
#: whole: each cell's text lies on one line ("get_we/ather" is two).
_LAYOUT_JS = """
(() => {
  const oneLine = (el) => { const r = document.createRange(); r.selectNodeContents(el);
    return new Set([...r.getClientRects()].map((x) => Math.round(x.top))).size === 1; };
  const cells = [...document.querySelectorAll('#tools th, #tool-rows td:first-child')];
  return {
    overflow: document.documentElement.scrollWidth - window.innerWidth,
    broken: cells.filter((c) => !oneLine(c)).map((c) => c.textContent),
    cells: cells.length,
    picture: document.getElementById('picture-scroll').clientWidth,
    transcript: document.getElementById('transcript').clientWidth,
  };
})()
"""

#: Painted pixels on a canvas (the waveforms are drawn, not just counted).
_PAINTED_JS = """
((id) => { const c = document.getElementById(id);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; })
"""


async def test_the_console_draws_the_conversation(tmp_path: Path) -> None:
    profiles = write_profiles(tmp_path)
    write_offline_tool(profiles)  # as offline: the plugin fails, the shipped mocks answer
    # the reply speaks the mock's own fields
    (tmp_path / "script.yaml").write_text(SCRIPT.replace("{output.city}", "{output.location}"))
    wav = speech_wav(tmp_path)
    shots = artifacts(tmp_path)
    async with (
        serving(tmp_path, token=TOKEN, speed=0.0, mock_tools=WEATHER_MOCKS) as served,
        chromium.chromium(tmp_path / "chrome", wav) as b,
    ):
        await b.open(served.url, 1440, 900)
        await b.wait("document.querySelector('#profile option[value=weather]')")
        assert await b.eval("fetch('/favicon.ico').then((r) => r.status)") == 200
        badge = await b.eval(
            "(() => { const m = document.getElementById('mocks');"
            " return m.hidden ? '' : m.textContent; })()"
        )
        assert "mocks" in badge and "weather.mocks.yaml" in badge
        await b.eval(
            "document.getElementById('profile').value = 'weather';"
            "document.getElementById('start').click()"
        )
        # The spoken turn's tool call is answered by the mock, and the page says so.
        await b.wait("document.querySelector('#tool-rows tr[data-mocked=true]')", 40)
        row = await b.eval("document.querySelector('#tool-rows tr').innerText")
        assert "get_weather" in row and "partly cloudy" in row and "mocked" in row
        assert await b.eval("document.querySelector('#tool-rows tr').dataset.ok") == "true"
        # The live meter moves with the fake microphone's speech.
        await b.wait("document.getElementById('meter').value > -50", 20)
        # The looped speech cuts the reply off: the picture shows it played, then cut.
        await b.wait("window.vlrun.stats() && window.vlrun.stats().flushes >= 1", 60)
        summary = await b.wait(
            "(() => { const s = window.vlrun.picture();"
            " return s.replies.some((r) => r.cutMs !== null) && s.latencies.length"
            " && s.speech && s.tools.some((t) => t.duration !== null) && s; })()",
            10,
        )
        cut = next(r for r in summary["replies"] if r["cutMs"] is not None)
        assert 0 < cut["playedMs"] < cut["receivedMs"] - 1000, cut  # seconds never heard
        tool = summary["tools"][0]
        assert tool["name"] == "get_weather" and tool["mocked"] and tool["ok"]
        assert tool["duration"] >= 250  # the mock's delay_ms, drawn as the bar's length
        assert all(0 < lat["ms"] < 10000 for lat in summary["latencies"])
        for kind in ("speech", "received", "played", "cut", "tool", "latency"):
            # drawn at the next animation frame
            await b.wait(f"document.querySelector('#picture [data-kind={kind}]')", 5)
        # Both waveforms are drawn; the reply's shows where it was cut.
        waves = await b.wait(
            "window.vlrun.waves().you > 0 && window.vlrun.waves().cut !== null"
            " && window.vlrun.waves()",
            10,
        )
        assert waves["you"] > 0 and waves["assistant"] > 0 and waves["cut"] is not None
        for canvas in ("wave-you", "wave-assistant"):
            assert await b.eval(f"({_PAINTED_JS})('{canvas}')") > 0, canvas
        # Server text is shown as text: a typed turn with markup stays words.
        await b.eval("document.getElementById('ptt').click()")
        await b.eval(
            "document.getElementById('text').value ="
            " 'I typed <img src=x onerror=\"window.pwned=1\">';"
            "document.getElementById('send').click()"
        )
        await b.wait(
            "[...document.querySelectorAll('#transcript [data-role=assistant]')]"
            ".some(li => li.textContent.includes('You typed that'))",
            40,
        )
        said = await b.eval(
            "[...document.querySelectorAll('#transcript [data-role=you]')]"
            ".map((li) => li.textContent).join('|')"
        )
        assert "<img src=x" in said
        assert await b.eval("document.querySelectorAll('main img').length") == 0
        assert await b.eval("window.pwned === undefined")
        # The raw event table is one click away.
        assert await b.eval("document.getElementById('raw-panel').hidden")
        await b.eval("document.getElementById('raw-toggle').click()")
        assert await b.eval("document.getElementById('raw-panel').offsetHeight") > 0
        assert await b.eval("document.querySelectorAll('#timeline tr').length") > 10
        assert await b.eval("!!document.querySelector('#timeline [data-event=truncate]')")
        await b.eval("document.getElementById('raw-toggle').click()")
        # Readable at a laptop's widths: nothing wider than the window, no word broken.
        for width, height in ((1440, 900), (1024, 768)):
            await b.resize(width, height)
            await b.wait(f"window.innerWidth === {width}", 10)
            layout = await b.eval(_LAYOUT_JS)
            assert layout["overflow"] <= 0, (width, layout)
            assert layout["cells"] >= 5 and not layout["broken"], (width, layout)
            assert layout["picture"] >= 600 and layout["transcript"] >= 300, (width, layout)
            await b.screenshot(shots / f"serve-console-{width}.png")
        b.kill()
        assert await served.host.wait_idle(5.0)
