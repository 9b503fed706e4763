"""Secret registration and redaction after a day and two weeks of hourly Entra tokens, the
registry of 4a2cac0 (one regex recompiled per registration) against today's, side by side.

    python bench/bench_redact.py [--old-rev 4a2cac0]

Prints a Markdown table: registration (plus the first redaction that pays for it) and one
redaction of a 170-character log line, for Entra JWTs and for opaque 2 kB secrets.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]

LINE = (
    "call CA"
    + secrets.token_hex(16)
    + " answered (twilio, profile casual-chat); session sess_"
    + secrets.token_hex(8)
    + " connected to wss://x.cognitiveservices.azure.com/voice-live/realtime ok"
)


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def entra_token() -> str:
    """A token shaped like Entra's (header, ~1 kB of claims, RS256 signature)."""
    header = {"typ": "JWT", "alg": "RS256", "kid": secrets.token_urlsafe(20)}
    claims = {
        "aud": "https://cognitiveservices.azure.com",
        "iss": "https://sts.windows.net/" + secrets.token_hex(16) + "/",
        "exp": 1765003600,
        "aio": secrets.token_urlsafe(200),
        "oid": secrets.token_hex(16),
        "tid": secrets.token_hex(16),
        "rh": secrets.token_urlsafe(60),
    }
    return ".".join(
        (
            _b64(json.dumps(header).encode()),
            _b64(json.dumps(claims).encode()),
            _b64(secrets.token_bytes(256)),
        )
    )


def per_call(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def measure(module: ModuleType, hours: int, kind: str) -> tuple[float, float]:
    module.forget_secrets()
    make = entra_token if kind == "jwt" else (lambda: secrets.token_urlsafe(1500))
    tokens = [make() for _ in range(hours)]
    for token in tokens[:-1]:
        module.register_secret(token)
        module.redact("x")
    start = time.perf_counter()
    module.register_secret(tokens[-1])
    module.redact(LINE)
    registration = time.perf_counter() - start
    assert tokens[-1] not in module.redact("t " + tokens[-1]), "the newest token is masked"
    return registration, per_call(lambda: module.redact(LINE), 300)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old-rev", default="4a2cac0")
    args = parser.parse_args()
    old_source = subprocess.run(
        ["git", "show", f"{args.old_rev}:runner/redact.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    with tempfile.TemporaryDirectory() as tmp:
        old_path = Path(tmp) / "old_redact.py"
        old_path.write_text(old_source, encoding="utf-8")
        modules = {
            "old": load(old_path, "old_redact"),
            "new": load(ROOT / "runner/redact.py", "new"),
        }
        print("| tokens | kind | registration old -> new | one redaction old -> new |")
        print("|---|---|---|---|")
        for hours in (24, 336):
            for kind in ("jwt", "opaque"):
                (old_reg, old_red), (new_reg, new_red) = (
                    measure(modules[name], hours, kind) for name in ("old", "new")
                )
                print(
                    f"| {hours} | {kind} | {old_reg * 1000:.1f} ms -> {new_reg * 1000:.2f} ms "
                    f"| {old_red * 1e6:.1f} µs -> {new_red * 1e6:.1f} µs |"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
