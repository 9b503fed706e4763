"""An endpoint that accepts TCP and never answers: run and doctor give up after
--connect-timeout with one line, instead of hanging."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A loopback server that accepts every connection and never sends a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (["profiles/casual-chat.yaml", "--text", "--logs", "-"], 3),  # unavailable
        (["doctor", "profiles/casual-chat.yaml"], 1),  # a thing to fix
    ],
)
def test_a_silent_endpoint_is_given_up_on(
    command: list[str], code: int, silent_endpoint: str, cli_env: Any
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "runner", *command, "--connect-timeout", "0.5"],
        cwd=ROOT,
        env=cli_env({"AZURE_VOICELIVE_ENDPOINT": silent_endpoint, "AZURE_VOICELIVE_API_KEY": "k"}),
        input="hello\n",
        capture_output=True,
        text=True,
        timeout=60,  # the bound: before, this hung for more than 120 s
    )
    out = proc.stdout + proc.stderr
    assert f"{silent_endpoint} did not answer the handshake within 0.5 s" in out, out
    assert proc.returncode == code, out
    assert "Traceback" not in out
