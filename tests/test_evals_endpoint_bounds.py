"""A chat endpoint for callers and judges: an answer comes within one deadline however many
attempts the client makes, and a key put in the URL by mistake is never shown."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from runner.errors import UsageError
from runner.evals.endpoint import ChatEndpoint, complete
from runner.evals.types import EvalsError
from tests.loopback import on_loopback

WAIT_S = 20.0


async def test_an_endpoint_that_never_answers_is_an_error_at_the_deadline() -> None:
    pytest.importorskip("openai")  # imported now: the deadline is the request's, not the import's
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()  # answers only once the test is over
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", hang)
    async with on_loopback(app, shutdown_timeout=0.1) as port:
        endpoint = ChatEndpoint(base_url=f"http://127.0.0.1:{port}/v1", model="m")
        try:
            with pytest.raises(EvalsError, match=r"did not answer within 1 s") as caught:
                # the client's own timeout is 60 s an attempt, three attempts: the deadline wins
                await asyncio.wait_for(
                    complete(
                        endpoint,
                        [{"role": "user", "content": "hi"}],
                        schema_name="s",
                        schema={"type": "object"},
                        purpose="the judge",
                        deadline_s=1.0,
                    ),
                    WAIT_S,
                )
            assert f"127.0.0.1:{port}" in caught.value.render()
        finally:
            release.set()


def test_a_key_in_the_url_s_user_part_is_never_shown() -> None:
    key = "sk-userinfo-0123456789abcdef"
    with pytest.raises(UsageError) as caught:
        ChatEndpoint.parse(f"gpt-4o@https://user:{key}@api.example.test/v1", option="--judge")
    text = caught.value.render()
    assert key not in text and "expected MODEL@URL" in text
