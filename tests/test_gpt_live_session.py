"""GPT-Live through the runner (issue 29 item 2; docs/gpt-live.md): the live session against the
emulator's GPT-Live desk on real loopback sockets. Backchannels are shown as such and are not
barge-ins (nothing is cut, nothing is cancelled), the model's yield is marked, a Responses
delegation's function call runs the profile's own tool plugin, a typed turn goes to the backend,
the greeting is a commentary, and the session closes with session.close.

The desk is served on its own aiohttp app, as tests/test_emulator_gpt_live.py does (the same
routes the emulator mounts beside Voice Live)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web
from azure.core.credentials import AzureKeyCredential

from runner.emulator.fidelity import Fidelity
from runner.emulator.gpt_live import LiveDesk
from runner.emulator.model import load_script
from runner.emulator.record import SessionRecord
from runner.live.audio import AudioFormat, ClockPlayer
from runner.live.connect import Target
from runner.live.gpt_live import GptLiveSession
from runner.live.transcript import Transcript

RATE = 24000
KEY = "gpt-live-runner-key-0123456789"
WEATHER_TOOL = '''\
from runner.plugins import tool


@tool
def get_weather(city: str) -> dict:
    """Current weather for a city."""
    return {"city": city, "temperature": 18, "unit": "C"}
'''


@contextlib.asynccontextmanager
async def desk(
    script: dict[str, Any] | None = None, agent: Any = None
) -> AsyncIterator[tuple[LiveDesk, str]]:
    sessions: list[SessionRecord] = []
    live = LiveDesk(
        sessions,
        lambda: None,
        Fidelity(),
        script=load_script(script) if script is not None else None,
        speed=0,
        api_key=KEY,
        session_limit_s=3600,
        use_espeak=False,
    )
    app = web.Application()
    live.add_routes(app)
    if agent is not None:  # a Foundry project's Responses API beside it (same host)
        app.router.add_post("/api/projects/{project}/openai/v1/responses", agent.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield live, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await live.close()
        await runner.cleanup()


def voice(ms: int) -> bytes:
    t = np.arange(RATE * ms // 1000) / RATE
    return bytes(np.round(np.sin(2 * np.pi * 220 * t) * 6000).astype("<i2").tobytes())


def quiet(ms: int) -> bytes:
    return bytes(RATE * ms // 1000 * 2)


class Caller:
    """The caller's microphone, fed by the test in 100 ms chunks; ends when told."""

    live = True
    fmt = AudioFormat(RATE)

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    def say(self, pcm: bytes) -> None:
        step = RATE // 10 * 2
        for i in range(0, len(pcm), step):
            self.queue.put_nowait(pcm[i : i + step])

    def end(self) -> None:
        self.queue.put_nowait(None)

    async def frames(self) -> AsyncIterator[bytes]:
        while (chunk := await self.queue.get()) is not None:
            yield chunk

    def close(self) -> None:
        self.queue.put_nowait(None)


class Watched(Transcript):
    """A transcript that says when a reply's first words arrive."""

    def __init__(self) -> None:
        super().__init__(out=io.StringIO(), err=io.StringIO())
        self.speaking = asyncio.Event()

    def assistant_delta(self, item_id: str, delta: str) -> None:
        super().assistant_delta(item_id, delta)
        self.speaking.set()

    @property
    def err_text(self) -> str:
        return self.err.getvalue()  # type: ignore[attr-defined,no-any-return]


def _session(
    endpoint: str,
    session: dict[str, Any],
    *,
    source: Caller | None = None,
    registry: Any = None,
    greeting: str | None = None,
) -> tuple[GptLiveSession, ClockPlayer]:
    player = ClockPlayer(AudioFormat(RATE), realtime=False)
    live = GptLiveSession(
        {"type": "session.start", "session": {"model": "gpt-live-1", **session}},
        target=Target(endpoint, "test", KEY, "test", "gpt-live-1"),
        endpoint=endpoint,
        credential=AzureKeyCredential(KEY),
        transcript=Watched(),
        player=player,
        source=source,
        registry=registry,
        greeting=(
            {"type": "session.commentary.append", "delegation_id": None, "content": greeting}
            if greeting
            else None
        ),
        lines=False,
        end_when_input_ends=True,
        finish_timeout_s=20,
        handle_signals=False,
    )
    return live, player


async def test_backchannels_are_shown_and_never_cut_anything() -> None:
    """4.5 s of the caller's voice: the emulator backchannels at 2 s and 4 s, then answers after
    600 ms of silence. The backchannels are said as such, are not replies, and cut nothing."""
    async with desk() as (live_desk, endpoint):
        caller = Caller()
        session, player = _session(endpoint, {}, source=caller)
        caller.say(voice(4500) + quiet(800))
        caller.end()
        assert await asyncio.wait_for(session.run(), 30) == 0
        record = live_desk.sessions[-1]
    transcript = session.transcript
    assert isinstance(transcript, Watched)
    shown = [ln for ln in transcript.err_text.splitlines() if ln.startswith("-- backchannel:")]
    assert shown == ["-- backchannel: [emulator] mm-hmm"] * 2
    assert session.duplex.backchannels == 2 and session.duplex.yields == 0
    roles = [(t.role, t.text) for t in transcript.turns]
    assert roles[0] == ("user", "[emulator] 4.5 seconds of audio")
    assert [r for r, _ in roles[1:]] == ["assistant"]
    assert "mm-hmm" not in roles[1][1] and not transcript.turns[1].interrupted
    assert player.silenced_at is None  # the player was never interrupted
    sent = {e["type"] for e in record.received}
    assert sent <= {"session.start", "session.input_audio.append", "session.close"}
    assert [e["type"] for e in record.sent].count("session.closed") == 1


async def test_a_reply_the_model_stops_for_the_caller_is_marked_as_yielded() -> None:
    script = {
        "turns": [
            {"turn": 1, "say": " ".join(["word"] * 40)},
            {"turn": 2, "transcript": "stop please", "say": "Sorry, go on."},
        ]
    }
    async with desk(script) as (_, endpoint):
        caller = Caller()
        session, _ = _session(endpoint, {}, source=caller)
        transcript = session.transcript
        assert isinstance(transcript, Watched)
        caller.say(voice(1000) + quiet(700))
        task = asyncio.create_task(session.run())
        await asyncio.wait_for(transcript.speaking.wait(), 10)  # the long reply is under way
        caller.say(quiet(300) + voice(800) + quiet(1000))
        caller.end()
        assert await asyncio.wait_for(task, 30) == 0
    replies = [t for t in transcript.turns if t.role == "assistant"]
    assert replies[0].interrupted and replies[0].text.startswith("[emulator] word word")
    assert replies[-1].text == "[emulator] Sorry, go on." and not replies[-1].interrupted
    assert session.duplex.yields == 1
    assert [t.text for t in transcript.turns if t.role == "user"][-1] == "stop please"


async def test_a_typed_turn_is_delegated_and_the_profiles_tool_answers(tmp_path: Path) -> None:
    from runner.plugins import Registry

    (tmp_path / "weather.py").write_text(WEATHER_TOOL, encoding="utf-8")
    registry = Registry.discover([tmp_path])
    tools = [
        {
            "type": "function",
            "name": name,
            "description": s["description"],
            "parameters": s["parameters"],
        }
        for name, s in registry.schemas().items()
    ]
    backend = {"type": "responses", "responses": {"model": "backend-x", "tools": tools}}
    async with desk() as (live_desk, endpoint):
        session, _ = _session(
            endpoint, {"delegation": backend}, registry=registry, greeting="Welcome to the desk."
        )
        session.feed_line("what is the weather in Paris?")
        session.feed_line(None)
        assert await asyncio.wait_for(session.run(), 30) == 0
        record = live_desk.sessions[-1]
    received = [e["type"] for e in record.received]
    assert received[:2] == ["session.start", "session.commentary.append"]  # the greeting
    outputs = [
        e["item"]
        for e in record.received
        if e["type"] == "response.item.create" and e["item"]["type"] == "function_call_output"
    ]
    assert len(outputs) == 1
    assert json.loads(outputs[0]["output"]) == {"city": "Paris", "temperature": 18, "unit": "C"}
    creates = [i for i, kind in enumerate(received) if kind == "response.create"]
    assert len(creates) == 2 and received.index("response.item.create", creates[0]) < creates[1]
    transcript = session.transcript
    assert isinstance(transcript, Watched)
    out = transcript.out.getvalue()  # type: ignore[attr-defined]
    assert "  [tool] get_weather(" in out and "[tool] get_weather -> " in out
    err = transcript.err_text
    assert "-- delegation " in err and " to responses" in err
    said = [t.text for t in transcript.turns if t.role == "assistant"]
    assert said[0] == "[emulator] Welcome to the desk."
    assert any("get_weather returned" in text for text in said), said


async def test_typed_turns_need_a_delegation_deployment() -> None:
    async with desk() as (live_desk, endpoint):
        session, _ = _session(endpoint, {})
        session.feed_line("hello")
        session.feed_line(None)
        assert await asyncio.wait_for(session.run(), 30) == 0
        record = live_desk.sessions[-1]
    transcript = session.transcript
    assert isinstance(transcript, Watched)
    assert "error: GPT-Live takes typed turns only with a delegation deployment" in (
        transcript.err_text
    )
    assert "response.item.create" not in [e["type"] for e in record.received]


# ---------------------------------------------------------------- the real CLI


@contextlib.contextmanager
def desk_thread(script: dict[str, Any] | None = None) -> Any:
    """The desk on its own event loop in a thread, for the CLI in a subprocess."""
    import threading

    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def serve() -> None:
        holder["stop"] = asyncio.Event()
        async with desk(script) as (live, endpoint):
            holder["desk"], holder["endpoint"] = live, endpoint
            ready.set()
            await holder["stop"].wait()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield holder["desk"], holder["endpoint"]
    finally:
        loop.call_soon_threadsafe(holder["stop"].set)
        thread.join(10)
        loop.close()


GL_PROFILE = """\
name: gl
connection: {model: gpt-live-1}
voice: marin
instructions: Be brief.
greeting: {text: Welcome to the weather desk.}
gpt_live: {delegation: {deployment: backend-x}}
tools: [get_weather]
"""


def test_vlrun_run_talks_gpt_live_in_text_mode(run_cli: Any, tmp_path: Path) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "weather.py").write_text(WEATHER_TOOL, encoding="utf-8")
    (tmp_path / "gl.yaml").write_text(GL_PROFILE, encoding="utf-8")
    with desk_thread() as (live_desk, endpoint):
        result = run_cli(
            ["run", "gl.yaml", "--endpoint", endpoint, "--text", "--logs", "-"],
            # q right after: the turn typed before it and its delegated answer come first
            input="what is the weather in Paris?\nq\n",
            env={"AZURE_VOICELIVE_API_KEY": KEY},
        )
        record = live_desk.sessions[-1]
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[0] == "assistant: [emulator] Welcome to the weather desk."
    assert out[1] == "you: what is the weather in Paris?"
    assert any(line.startswith("  [tool] get_weather -> ") for line in out), out
    assert any("get_weather returned" in line for line in out if line.startswith("assistant:"))
    assert "-- delegation " in result.stderr
    assert "; 0 backchannel(s), 0 yield(s)" in result.stderr
    assert record.headers.get("api-key") and record.query == {}
    assert [e["type"] for e in record.received][-1] == "session.close"
    assert "Traceback" not in result.stderr


def test_vlrun_run_speaks_to_gpt_live_from_a_wav(run_cli: Any, tmp_path: Path) -> None:
    import wave

    with wave.open(str(tmp_path / "caller.wav"), "wb") as wav:  # 0.8 s of the caller's voice
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(voice(800))
    profile = "name: gl\nconnection: {model: gpt-live-1}\nvoice: marin\ninstructions: Be brief.\n"
    (tmp_path / "gl.yaml").write_text(profile, encoding="utf-8")
    with desk_thread() as (_, endpoint):
        result = run_cli(
            [
                "run",
                "gl.yaml",
                "--endpoint",
                endpoint,
                "--input",
                "caller.wav",
                "--fast",
                "--output",
                "out.wav",
                "--logs",
                "-",
            ],
            env={"AZURE_VOICELIVE_API_KEY": KEY},
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "you: [emulator] 0.8 seconds of audio",
        "assistant: [emulator] I heard 0.8 seconds of audio.",
    ]
    with wave.open(str(tmp_path / "out.wav")) as out:
        assert out.getframerate() == 24000 and out.getnframes() > 2400


async def test_a_wrong_key_is_one_clear_error() -> None:
    from runner.errors import AuthError

    async with desk() as (live_desk, endpoint):
        session, _ = _session(endpoint, {})
        session.credential = AzureKeyCredential("not-the-key")
        try:
            await asyncio.wait_for(session.run(), 10)
        except AuthError as exc:
            assert "refused the API key" in exc.message and "HTTP 401" in exc.message
        else:
            raise AssertionError("a wrong key was accepted")
        assert live_desk.sessions == []
    assert session.end_reason == "connect_failed"


class Agent:
    """A Foundry project's Responses API on loopback, answering as one agent would."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.asked: list[tuple[str, dict[str, Any], dict[str, str]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.asked.append((request.match_info["project"], body, dict(request.headers)))
        if self.status != 200:
            return web.json_response({"error": {"message": "agent is busy"}}, status=self.status)
        answer = {"type": "output_text", "text": "It is 18 degrees in Paris."}
        return web.json_response({"output": [{"type": "message", "content": [answer]}]})


DELEGATE = {"turns": [{"turn": 1, "transcript": "what is the weather in Paris?"}]}


async def _client_delegation(agent: Agent) -> tuple[GptLiveSession, LiveDesk]:
    from runner.live.agent_backend import FoundryAgentBackend

    async with desk(DELEGATE, agent) as (live_desk, endpoint):
        caller = Caller()
        session, _ = _session(endpoint, {}, source=caller)
        session.client_backend = FoundryAgentBackend(
            endpoint, "desk-agent", "proj", AzureKeyCredential(KEY)
        )
        caller.say(voice(1200) + quiet(800))
        caller.end()
        assert await asyncio.wait_for(session.run(), 30) == 0
        return session, live_desk


async def test_a_client_delegation_is_answered_by_the_profiles_foundry_agent() -> None:
    agent = Agent()
    session, live_desk = await _client_delegation(agent)
    ((project, body, headers),) = agent.asked
    assert project == "proj" and headers.get("api-key") == KEY
    assert body["agent"] == {"name": "desk-agent", "type": "agent_reference"}
    assert body["input"] == [{"role": "user", "content": "what is the weather in Paris?"}]
    record = live_desk.sessions[-1]
    created = next(e for e in record.sent if e["type"] == "session.delegation.created")
    appended = [e for e in record.received if e["type"] == "session.commentary.append"]
    assert appended == [
        {
            "type": "session.commentary.append",
            "delegation_id": created["delegation"]["id"],
            "content": "It is 18 degrees in Paris.",
        }
    ]
    said = [t.text for t in session.transcript.turns if t.role == "assistant"]
    assert any("It is 18 degrees in Paris." in text for text in said), said


async def test_an_agent_that_cannot_answer_is_said_and_the_model_told_quietly() -> None:
    session, live_desk = await _client_delegation(Agent(status=503))
    transcript = session.transcript
    assert isinstance(transcript, Watched)
    assert (
        "warning: Foundry agent desk-agent (project proj) answered HTTP 503: agent is busy"
        in transcript.err_text
    )
    received = [e["type"] for e in live_desk.sessions[-1].received]
    assert "session.thinking.append" in received and "session.commentary.append" not in received


async def test_the_edge_api_sends_a_turn_and_waits_for_its_reply() -> None:
    """What a scenario or a phone edge calls: send_text, finish_reply; images are refused."""
    import pytest

    from runner.errors import UsageError
    from runner.live.images import ImageError

    backend = {"type": "responses", "responses": {"model": "backend-x"}}
    async with desk() as (_, endpoint):
        session, _ = _session(endpoint, {"delegation": backend})
        task = asyncio.create_task(session.run())
        await asyncio.wait_for(session.ready.wait(), 10)
        await asyncio.wait_for(session.send_text("hello there"), 10)
        await session.finish_reply(timeout=20)
        said = [t.text for t in session.transcript.turns if t.role == "assistant"]
        assert len(said) == 1 and said[0].startswith("[emulator")
        assert said[0].endswith("You said: hello there")
        with pytest.raises(ImageError):
            await session.send_image(b"\x89PNG\r\n\x1a\n", "image/png")
        session.stop()
        assert await asyncio.wait_for(task, 10) == 0
    client, _ = _session("http://127.0.0.1:9", {})
    with pytest.raises(UsageError):
        await client.send_text("hello")


async def test_a_dropped_connection_ends_the_conversation_with_one_line() -> None:
    from runner.errors import ConnectError

    async with desk() as (live_desk, endpoint):
        session, _ = _session(endpoint, {})
        task = asyncio.create_task(session.run())
        await asyncio.wait_for(session.ready.wait(), 10)
        await live_desk.close()  # the service side goes away (1001)
        try:
            await asyncio.wait_for(task, 10)
        except ConnectError as exc:
            assert "the GPT-Live connection ended (close code 1001)" in exc.message
        else:
            raise AssertionError("a dropped connection ended quietly")
    assert session.end_reason == "dropped"
