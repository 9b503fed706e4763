"""Structured logs of a serve worker: one JSON object a line, the call id on every line.

The call id lives in a context variable set by the task that handles a call, so everything
that call's tasks log (the session, its tools, the edge) carries it without being passed it.
Every message goes through :func:`runner.redact.redact` before it is written.
"""

from __future__ import annotations

import contextvars
import io
import json
import logging
import time
from typing import IO, Any

from runner.redact import redact

call_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("vlrun_call_id", default="")
log = logging.getLogger("vlrun.serve.call")


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "call_id", "msg"}`` (+ ``exc`` for tracebacks)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "call_id": getattr(record, "call_id", None) or call_id_var.get(),
            "msg": redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def json_handler(stream: IO[str]) -> logging.Handler:
    """A handler that writes JSON lines to ``stream`` (the worker's stderr)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    return handler


class CallConsole(io.TextIOBase):
    """What a session would print on a console, as log lines of its call instead.

    A server has no console per call; the per-call conversation log and trace are written as
    for `vlrun PROFILE`, and these lines join the worker's structured log.
    """

    def __init__(self, call_id: str, level: int = logging.INFO) -> None:
        super().__init__()
        self.call_id = call_id
        self.level = level
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        data = self._partial + text
        *lines, self._partial = data.split("\n")
        if len(self._partial) > 4096:  # a line that never ends still gets logged, bounded
            lines.append(self._partial)
            self._partial = ""
        for line in lines:
            if line.strip():
                log.log(self.level, "%s", line.rstrip(), extra={"call_id": self.call_id})
        return len(text)
