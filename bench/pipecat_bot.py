"""A Pipecat Twilio bot, the peer ``bench_calls.py --peer pipecat`` runs beside vlrun.

Runs in its own virtualenv (bench/.venv-pipecat, made by ``bench_calls.py``), never in vlrun's:

    bench/.venv-pipecat/bin/python bench/pipecat_bot.py --port 8765 --endpoint http://127.0.0.1:N

Pipecat's own Twilio path, as its Twilio example builds it: a FastAPI/uvicorn server, the
``TwilioFrameSerializer``, the ``FastAPIWebsocketTransport``, and the
``AzureVoiceLiveLLMService`` (its Azure Voice Live service) with the same turn detection and
the same tool as the vlrun route, pointed at the same emulator. The service builds a
``wss://`` URL from any endpoint (the emulator on loopback speaks ``ws://``), so the bot sets
the service's ``base_url`` to the emulator's URL after building it; nothing of Pipecat is
patched. Pipecat logs at WARNING (its DEBUG default costs more than the calls).

What the benchmark reads of it: the webhook (TwiML ``<Connect><Stream>``), the media socket,
and ``/metrics`` (empty: Pipecat counts no underruns or frame delays, so those columns are
blank for it; gaps heard and turn latency are measured at the callers for both).
"""

import argparse
import asyncio
import datetime
import json
import sys
from typing import Any


def build_app(endpoint: str) -> Any:
    from fastapi import FastAPI, Request, WebSocket
    from fastapi.responses import PlainTextResponse, Response
    from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
    from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.runner import PipelineRunner
    from pipecat.pipeline.task import PipelineParams, PipelineTask
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
    from pipecat.serializers.twilio import TwilioFrameSerializer
    from pipecat.services.azure.voice_live import events
    from pipecat.services.azure.voice_live.llm import AzureVoiceLiveLLMService
    from pipecat.transports.websocket.fastapi import (
        FastAPIWebsocketParams,
        FastAPIWebsocketTransport,
    )

    realtime = endpoint.replace("http://", "ws://").rstrip("/") + "/voice-live/realtime"
    app = FastAPI()
    tool = FunctionSchema(
        name="current_time",
        description="The current time in a time zone.",
        properties={"timezone": {"type": "string"}},
        required=[],
    )

    async def current_time(params: Any) -> None:
        now = datetime.datetime.now(datetime.timezone.utc)
        await params.result_callback(
            {"time": now.strftime("%H:%M"), "date": now.date().isoformat()}
        )

    @app.post("/twilio/voice")
    async def voice(request: Request) -> Response:
        host = request.headers.get("host", "127.0.0.1")
        twiml = (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
            f'<Stream url="ws://{host}/twilio/media"></Stream></Connect></Response>'
        )
        return Response(content=twiml, media_type="text/xml")

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse("")

    @app.websocket("/twilio/media")
    async def media(websocket: WebSocket) -> None:
        await websocket.accept()
        messages = websocket.iter_text()
        start: dict[str, Any] = {}
        while start.get("event") != "start":  # connected, then start
            start = json.loads(await messages.__anext__())
        serializer = TwilioFrameSerializer(
            stream_sid=start["start"]["streamSid"],
            call_sid=start["start"]["callSid"],
            params=TwilioFrameSerializer.InputParams(auto_hang_up=False),
        )
        transport = FastAPIWebsocketTransport(
            websocket=websocket,
            params=FastAPIWebsocketParams(
                audio_in_enabled=True,
                audio_out_enabled=True,
                add_wav_header=False,
                serializer=serializer,
            ),
        )
        llm = AzureVoiceLiveLLMService(
            api_key="bench-key",
            endpoint="https://emulator.invalid",
            settings=AzureVoiceLiveLLMService.Settings(
                session_properties=events.SessionProperties(
                    instructions="You answer the phone.",
                    voice=events.OpenAIVoice(name="alloy"),
                    turn_detection=events.TurnDetection(
                        type="server_vad",
                        threshold=0.5,
                        prefix_padding_ms=100,
                        silence_duration_ms=300,
                    ),
                ),
            ),
        )
        llm.base_url = realtime  # the emulator on loopback (ws://), not a wss:// resource
        llm.register_function("current_time", current_time)
        context = LLMContext(tools=ToolsSchema(standard_tools=[tool]))
        aggregators = LLMContextAggregatorPair(context)
        pipeline = Pipeline(
            [
                transport.input(),
                aggregators.user(),
                llm,
                transport.output(),
                aggregators.assistant(),
            ]
        )
        task = PipelineTask(
            pipeline,
            params=PipelineParams(audio_in_sample_rate=8000, audio_out_sample_rate=8000),
        )

        @transport.event_handler("on_client_disconnected")
        async def _gone(_transport: Any, _client: Any) -> None:
            await task.cancel()

        await PipelineRunner(handle_sigint=False).run(task)

    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--endpoint", required=True, help="the emulator's http:// URL")
    args = parser.parse_args()
    import uvicorn
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    app = build_app(args.endpoint)

    async def ready() -> None:
        print(f"pipecat bot: open http://127.0.0.1:{args.port}/", flush=True)

    app.router.on_startup.append(ready)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        ws_ping_interval=None,
    )
    asyncio.run(uvicorn.Server(config).serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
