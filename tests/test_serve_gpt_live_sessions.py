"""runner/live/sessions.py, the one place an edge's session class is chosen: a compiled GPT-Live
profile gets a GptLiveSession, a Voice Live one a LiveSession; a phone edge's formats are pinned
in the payload's own shape (GPT-Live's one ``audio.format``, which the emulator's strict
``session.start`` takes), and what GPT-Live cannot take is refused with a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from runner.errors import UsageError
from runner.live.gpt_live import GptLiveSession, live_url
from runner.live.session import LiveSession
from runner.live.sessions import audio_session, open_session, session_class_for, with_formats
from runner.live.settings import SessionSettings
from tests.browser.harness import serving, write_profiles
from tests.test_serve_gpt_live import CLIENT


def _profiles(root: Path) -> None:
    profiles = write_profiles(root)  # weather: a Voice Live profile
    (profiles / "glclient.yaml").write_text(CLIENT)


async def test_each_payload_gets_its_session_and_a_phone_format_gpt_live_takes(
    tmp_path: Path,
) -> None:
    _profiles(tmp_path)
    async with serving(tmp_path) as served:
        gl = served.host.prepare("glclient").payload
        vl = served.host.prepare("weather").payload
        assert session_class_for(gl) is GptLiveSession
        assert session_class_for(vl) is LiveSession
        # the phone's mu-law, pinned: one audio.format for GPT-Live, the keys for Voice Live
        phone = with_formats(gl, "g711_ulaw", None, "g711_ulaw")
        assert phone["session"]["audio"]["format"] == {"type": "audio/pcmu", "rate": 8000}
        assert phone["session"]["audio"]["output"] == gl["session"]["audio"]["output"]
        assert "format" not in gl["session"].get("audio", {})  # the compiled one is untouched
        assert audio_session(phone)["input_audio_format"] == "g711_ulaw"
        assert with_formats(vl, "g711_ulaw", None, "g711_ulaw")["session"][
            "input_audio_format"
        ] == ("g711_ulaw")
        # the emulator's strict session.start takes it (an unknown field would be an error)
        assert served.host.emulator is not None
        url = live_url(served.host.emulator.endpoint)  # on the embedded emulator's port
        headers = {"api-key": served.host.emulator.api_key}
        async with aiohttp.ClientSession() as http, http.ws_connect(url, headers=headers) as ws:
            await ws.send_str(json.dumps(phone))
            reply = json.loads((await ws.receive(timeout=10)).data)
            assert reply["type"] == "session.started", reply
            await ws.send_str(json.dumps({"type": "session.close"}))


@pytest.mark.parametrize(
    ("formats", "said"),
    [
        (("g711_ulaw", None, "pcm16"), "one audio format both ways"),
        (("pcm16", 8000, "pcm16_8000hz"), "16000 or 24000 Hz, not 8000"),
    ],
)
def test_formats_gpt_live_cannot_take_are_refused(
    formats: tuple[str, int | None, str], said: str
) -> None:
    start = {"type": "session.start", "session": {"model": "gpt-live-1"}}
    with pytest.raises(UsageError, match=said):
        with_formats(start, *formats)


def test_an_attached_socket_or_a_flow_is_refused_for_gpt_live() -> None:
    start = {"type": "session.start", "session": {"model": "gpt-live-1"}}
    settings = SessionSettings(endpoint="http://127.0.0.1:1", session_update=start, lines=False)
    parts = {"target": None, "credential": None, "transcript": None, "player": None}
    with pytest.raises(UsageError, match="attached media socket"):
        open_session(settings, opener=object(), **parts)
    with pytest.raises(UsageError, match="has no flow"):
        open_session(settings, flow=object(), **parts)
