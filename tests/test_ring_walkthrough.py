"""docs/telephony.md "Ringing your server locally: vlrun ring", run as written.

Each provider's walkthrough is taken from the doc: its ``# NAME.yaml`` blocks are written to
a folder, and its ``sh`` block's lines run there in order (``… &`` starts a server and waits
for the line it prints when it listens; ``. FILE`` and ``export`` set the environment), on
free loopback ports instead of 8080, 8443 and 8765. Every ``vlrun`` line must exit 0, and a
ring that records must have heard the server's audio.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import wave
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("twilio")
pytest.importorskip("azure.communication.callautomation")
pytest.importorskip("jwt")

DOC = Path(__file__).resolve().parent.parent / "docs" / "telephony.md"
TITLE = "## Ringing your server locally: vlrun ring"
START_S = 60.0  # a server's start-up line
RUN_S = 180.0  # one command, a call included


def section() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(TITLE)
    end = text.find("\n## ", start + len(TITLE))
    return text[start : end if end != -1 else None]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.M | re.S)


def walkthroughs() -> dict[str, str]:
    parts = re.split(r"^### ", section(), flags=re.M)
    return {part.splitlines()[0].strip(): part for part in parts[1:]}


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free loopback port not handed out before in this run (the kernel may give the same
    free port twice in a row, and the walkthrough binds two servers)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


class Shell:
    """Runs a walkthrough's lines in a folder, as a user would in a terminal."""

    def __init__(self, folder: Path, ports: dict[str, str]) -> None:
        self.folder, self.ports = folder, ports
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_VOICELIVE")}
        self.env["PYTHONUNBUFFERED"] = "1"
        self.servers: list[subprocess.Popen[str]] = []
        self.outputs: list[str] = []

    def local(self, text: str) -> str:
        for port, free in self.ports.items():
            text = text.replace(port, free)
        return text

    def write(self, block: str) -> None:
        name = block.splitlines()[0].removeprefix("# ").strip()
        (self.folder / name).write_text(self.local(block), encoding="utf-8")

    def source(self, path: str) -> None:
        for line in (self.folder / path).read_text(encoding="utf-8").splitlines():
            self.export(line)

    def export(self, line: str) -> None:
        for word in shlex.split(line)[1:]:
            key, _, value = word.partition("=")
            self.env[key] = value

    def command(self, words: list[str]) -> list[str]:
        assert words[0] == "vlrun", words
        return [sys.executable, "-m", "runner", *words[1:]]

    def background(self, words: list[str]) -> None:
        errors = self.folder / f"server-{len(self.servers)}.stderr"
        with errors.open("w") as err:
            proc = subprocess.Popen(
                self.command(words), cwd=self.folder, env=self.env, text=True,
                stdout=subprocess.PIPE, stderr=err,
            )  # fmt: skip
        self.servers.append(proc)
        lines: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        stdout = proc.stdout
        threading.Thread(target=lambda: [lines.put(x) for x in stdout], daemon=True).start()
        try:
            first = lines.get(timeout=START_S)  # `open URL` / the emulator's endpoint
        except queue.Empty:
            said = errors.read_text(errors="replace")[-2000:]
            pytest.fail(f"{' '.join(words)} printed nothing in {START_S:.0f} s; stderr:\n{said}")
        assert "http://127.0.0.1:" in first, (first, errors.read_text(errors="replace")[-2000:])

    def run(self, line: str) -> None:
        line = self.local(line.strip())
        if not line or line.startswith("#"):
            return
        words = shlex.split(line)
        if words[0] == "export":
            self.export(line)
        elif words[0] in (".", "source"):
            self.source(words[1])
        elif words[-1] == "&":
            self.background(words[:-1])
        else:
            done = subprocess.run(
                self.command(words), cwd=self.folder, env=self.env, text=True,
                capture_output=True, timeout=RUN_S,
            )  # fmt: skip
            assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
            self.outputs.append(done.stdout)

    def stop(self) -> None:
        for proc in self.servers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.servers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def heard_rms(path: Path) -> float:
    with wave.open(str(path), "rb") as wav:
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(float)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0


@pytest.mark.parametrize("provider", ["Twilio", "Azure Communication Services", "Voice Live SIP"])
def test_the_walkthrough_runs_as_written(provider: str, tmp_path: Path) -> None:
    found = {name: text for name, text in walkthroughs().items() if name.startswith(provider)}
    assert len(found) == 1, f"no '### {provider}' walkthrough in {DOC.name}"
    text = next(iter(found.values()))
    shell = Shell(tmp_path, {p: str(free_port()) for p in ("8080", "8443", "8765")})
    for block in blocks(section().split("\n### ")[0], "yaml") + blocks(text, "yaml"):
        shell.write(block)
    lines = [line for block in blocks(text, "sh") for line in block.splitlines()]
    rings = [line for line in lines if line.startswith("vlrun ring") and "--say" in line]
    assert rings, "the walkthrough rings"
    try:
        for line in lines:
            shell.run(line)
    finally:
        shell.stop()
    said = shell.outputs[-1]
    assert "hung up" in said
    turns = re.findall(r"^turn \d+ .*$", said, flags=re.M)
    assert len(turns) == rings[-1].count("--say") + rings[-1].count("--dtmf"), said
    record = re.search(r"--record (\S+)", rings[-1])
    if record is None:  # SIP through the emulator: text turns, no media to hear
        assert all(": said" in turn for turn in turns), said
        return
    for turn in turns:
        heard = re.search(r"heard (\d+) ms, first audio after \d+ ms", turn)
        assert heard and int(heard.group(1)) > 0, said
    assert heard_rms(tmp_path / record.group(1)) > 100  # speech, not silence
