"""Debian's headless Chromium driven over the DevTools protocol (no browser download).

One page target, attached with a flat session: evaluate JavaScript (awaiting promises),
wait for a condition the page signals itself, and take screenshots.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
_LISTENING = re.compile(rb"DevTools listening on (ws://\S+)")

#: Resolves once ``predicate`` holds, re-checked on every page event, played report and DOM
#: change (event driven: nothing in the page polls).
_WAIT_JS = """
(predicate, timeoutMs) => new Promise((resolve, reject) => {
  const check = () => { try { const v = predicate(); if (v) { done(); resolve(v); } }
                        catch (e) { done(); reject(e); } };
  const observer = new MutationObserver(check);
  const kinds = ["vlrun-event", "vlrun-played", "vlrun-flushed"];
  const timer = setTimeout(() => { done(); reject(new Error("timed out: " + predicate)); },
                           timeoutMs);
  function done() { clearTimeout(timer); observer.disconnect();
                    document.removeEventListener("readystatechange", check);
                    kinds.forEach((k) => window.removeEventListener(k, check)); }
  document.addEventListener("readystatechange", check);
  observer.observe(document, { subtree: true, childList: true, characterData: true,
                               attributes: true });
  kinds.forEach((k) => window.addEventListener(k, check));
  check();
})
"""


def available() -> bool:
    return os.path.exists(CHROMIUM)


class Browser:
    """A Chromium process and one attached page."""

    def __init__(self, proc: asyncio.subprocess.Process, ws: aiohttp.ClientWebSocketResponse):
        self.proc = proc
        self.ws = ws
        self.session: str | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self.console: list[str] = []
        self._reader = asyncio.create_task(self._read(), name="cdp-reader")

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self._pending:
                future = self._pending.pop(data["id"])
                if not future.done():
                    future.set_result(data)
            elif data.get("method") == "Runtime.consoleAPICalled":
                args = data["params"].get("args", [])
                shown = (str(a.get("value", a.get("description"))) for a in args)
                self.console.append(" ".join(shown))
            elif data.get("method") == "Runtime.exceptionThrown":
                details = data["params"]["exceptionDetails"]
                self.console.append(
                    "exception: "
                    + str(details.get("exception", {}).get("description", details.get("text")))
                )
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("the browser went away"))

    async def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        browser: bool = False,
        timeout: float = 30,
    ) -> dict[str, Any]:
        call_id = next(self._ids)
        message: dict[str, Any] = {"id": call_id, "method": method, "params": params or {}}
        if self.session is not None and not browser:
            message["sessionId"] = self.session
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        await self.ws.send_str(json.dumps(message))
        reply = await asyncio.wait_for(future, timeout)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def open(self, url: str, width: int = 1280, height: int = 800) -> None:
        target = await self.send("Target.createTarget", {"url": "about:blank"}, browser=True)
        attached = await self.send(
            "Target.attachToTarget",
            {"targetId": target["targetId"], "flatten": True},
            browser=True,
        )
        self.session = attached["sessionId"]
        await self.send("Runtime.enable")
        await self.send("Page.enable")
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        await self.goto(url)

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", {"url": url})
        await self.wait("document.readyState === 'complete'", timeout=20)

    async def eval(self, expression: str, timeout: float = 30) -> Any:
        result = await self.send(
            "Runtime.evaluate",
            {
                "expression": expression,
                "awaitPromise": True,
                "returnByValue": True,
                "userGesture": True,
            },
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise AssertionError(
                f"{expression[:200]}: {details.get('exception', {}).get('description') or details}"
                f"\nconsole: {self.console[-20:]}"
            )
        return result.get("result", {}).get("value")

    async def wait(self, predicate_js: str, timeout: float = 30) -> Any:
        """Wait until the JavaScript expression is truthy (re-checked on page events)."""
        expr = f"({_WAIT_JS})(() => ({predicate_js}), {int(timeout * 1000)})"
        return await self.eval(expr, timeout=timeout + 5)

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("Page.captureScreenshot", {"format": "png"})
        await asyncio.to_thread(_write, path, base64.b64decode(shot["data"]))

    async def resize(self, width: int, height: int, mobile: bool = False) -> None:
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()


@contextlib.asynccontextmanager
async def chromium(profile_dir: Path, fake_audio: Path | None = None) -> AsyncIterator[Browser]:
    """Headless Chromium with a fake microphone playing ``fake_audio`` (a WAV) in a loop."""
    args = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile_dir}",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        "--autoplay-policy=no-user-gesture-required",
        "--remote-debugging-port=0",
        "--remote-allow-origins=*",
    ]
    if fake_audio is not None:
        args.append(f"--use-file-for-fake-audio-capture={fake_audio}")
    args.append("about:blank")
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    try:
        url = await asyncio.wait_for(_devtools_url(proc.stderr), 60)
        drain = asyncio.create_task(_drain(proc.stderr), name="chromium-stderr")
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(url, max_msg_size=64 * 1024 * 1024) as ws,
        ):
            browser = Browser(proc, ws)
            try:
                yield browser
            finally:
                with contextlib.suppress(Exception):
                    await browser.send("Browser.close", browser=True, timeout=5)
                await ws.close()
                await asyncio.wait({browser._reader})
        await asyncio.wait({drain}, timeout=5)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


async def _devtools_url(stream: asyncio.StreamReader) -> str:
    seen = b""
    while (m := _LISTENING.search(seen)) is None:
        line = await stream.readline()
        if not line:
            raise RuntimeError(f"chromium exited: {seen.decode(errors='replace')[-2000:]}")
        seen += line
    return m.group(1).decode()


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass
