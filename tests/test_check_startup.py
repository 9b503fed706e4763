"""`vlrun check` imports only what the files it checks need (its cold start and throughput).

The flow wing and GPT-Live's rules are imported by a profile that has a flow or a GPT-Live
model, not by every check; file kinds are told apart by a substring search before their
regex, with the regex's answer. The timings themselves are bench/bench_check.py's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runner.commands.check import _SCENARIO, _is_scenario_file
from runner.config import capabilities, compile, gpt_live
from runner.config.check import _SERVE_HEAD, _is_serve_file
from runner.config.load import load_profile

ROOT = Path(__file__).resolve().parents[1]

# A fresh interpreter runs `vlrun check` in process, then lists the runner modules it imported.
_IMPORTED = """
import json, sys
from runner.cli import main
code = main(["check", *sys.argv[1:]])
modules = sorted(m for m in sys.modules if m.startswith("runner"))
print(json.dumps({"code": code, "modules": modules}))
"""

PLAIN = """\
name: plain
connection:
  model: gpt-realtime
instructions: You are brief.
voice: {name: alloy}
turn_detection: {type: server_vad, threshold: 0.5}
temperature: 0.8
"""


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _vlrun_check(profile: Path) -> subprocess.CompletedProcess[str]:
    return _python("-m", "runner", "check", str(profile))


def _check_imports(*paths: Path) -> tuple[int, set[str]]:
    proc = _python("-c", _IMPORTED, *map(str, paths))
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    return found["code"], set(found["modules"])


def _flow_or_gpt_live(modules: set[str]) -> set[str]:
    return {m for m in modules if m.startswith("runner.config.flow") or m.endswith("gpt_live")}


def test_a_plain_profile_imports_neither_the_flow_wing_nor_gpt_live(tmp_path: Path) -> None:
    profile = tmp_path / "plain.yaml"
    profile.write_text(PLAIN)
    code, modules = _check_imports(profile)
    assert code == 0
    assert "runner.config.capabilities" in modules  # the matrix itself still runs
    assert _flow_or_gpt_live(modules) == set()


def test_a_flow_profile_still_has_its_flow_checked(tmp_path: Path) -> None:
    profile = tmp_path / "flow.yaml"
    profile.write_text(
        PLAIN
        + textwrap.dedent(
            """\
            flow:
              start: nowhere
              nodes:
                hello: {instructions: Say hello.}
            """
        )
    )
    proc = _vlrun_check(profile)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "nowhere" in proc.stdout
    assert "Traceback" not in proc.stderr
    # the example flow profile loads whole: its flow is read when it has one
    flow = load_profile(ROOT / "profiles" / "reservation.yaml").flow
    assert flow is not None and flow.start == "collect"


def test_a_gpt_live_profile_still_gets_its_refusals(tmp_path: Path) -> None:
    profile = tmp_path / "live.yaml"
    azure_voice = PLAIN.replace("alloy", "en-US-AvaNeural")
    profile.write_text(azure_voice.replace("gpt-realtime", "gpt-live-1"))
    proc = _vlrun_check(profile)
    assert proc.returncode == 1
    # GPT-Live refuses turn_detection and temperature, and takes no Azure voice
    assert "turn_detection: GPT-Live decides by itself" in proc.stdout
    assert "temperature: a GPT-Live session has no temperature" in proc.stdout
    assert "'en-US-AvaNeural' is not a GPT-Live voice" in proc.stdout


@pytest.mark.parametrize(
    "model",
    [
        *capabilities.CATALOG,
        *capabilities.BYOM_ONLY,
        "GPT-Live-1",
        "gpt-live-2-preview",
        "gpt-liver",
        "my-gpt-live",
        "gpt-4o-realtime-preview",
        "",
        None,
    ],
)
def test_compile_takes_the_gpt_live_path_exactly_for_gpt_live_models(model: str | None) -> None:
    # compile asks the catalog's family, so that it need not import runner.config.gpt_live
    assert (capabilities.family(model) == "gpt-live") == gpt_live.is_gpt_live(model)


def test_family_of_a_non_string_model_is_unknown() -> None:
    assert capabilities.family(4) is None  # type: ignore[arg-type]
    assert compile.effective_api_version  # the module imports without runner.config.gpt_live


HEADS = [
    "serve: 1\nroutes: []\n",
    "# a comment\nserve: 1\n",
    "# comment\r\nserve : 1\r\n",
    "name: x\nturn_detection: {type: server_vad}\naudio: {echo_cancellation: server}\n",
    "  serve: 1\n",  # indented: not a top-level key
    "name: serve\nserver: 2\nserves:\n",
    "scenario:\n  profile: a.yaml\n",
    "# c\nscenarios:\n  - name: x\n",
    "turns:\n  - user: hi\n",
    "name: x\nturns_left: 3\nscenario_count: 2\n",
    "name: x\ndescription: scenarios and turns\n",
    "",
    "serve",
    "\nturns :",
]


@pytest.mark.parametrize("head", HEADS)
def test_file_kinds_are_told_apart_as_their_regex_says(head: str) -> None:
    assert _is_serve_file(Path("f.yaml"), head) == bool(_SERVE_HEAD.search(head))
    assert _is_serve_file(Path("f.txt"), head) is False
    assert _is_scenario_file(Path("f.yaml"), head) == bool(_SCENARIO.search(head))


def test_the_detectors_agree_with_their_regexes_on_generated_heads() -> None:
    words = ["serve", "server", "scenario", "scenarios", "turns", "name", " serve", "\tturns"]
    seps = [":", " :", "  :", "", "=", ": 1"]
    lines = [w + s for w in words for s in seps]
    for i, first in enumerate(lines):
        for second in lines[i % 7 :: 7]:
            for eol in ("\n", "\r\n"):
                head = f"# x{eol}{first}{eol}{second}{eol}"
                assert _is_serve_file(Path("a.yml"), head) == bool(_SERVE_HEAD.search(head))
                assert _is_scenario_file(Path("a.yml"), head) == bool(_SCENARIO.search(head))
                bare = f"{first}{eol}"
                assert _is_serve_file(Path("a.yml"), bare) == bool(_SERVE_HEAD.search(bare))
                assert _is_scenario_file(Path("a.yml"), bare) == bool(_SCENARIO.search(bare))
