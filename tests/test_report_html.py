"""The HTML report of `vlrun test` (runner/scenarios/report_html.py): built from real runs of
the shipped scenarios on the emulator, parsed back with html.parser, hostile text escaped,
and the drawing script run in Debian's headless Chromium."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from runner.config.load import load_profile
from runner.errors import OutputError
from runner.scenarios.coverage import coverage_by_profile
from runner.scenarios.files import analyse_scenario
from runner.scenarios.report_html import (
    render_html_report,
    result_record,
    timeline_of,
    timeline_of_trace,
    write_html_report,
)
from runner.scenarios.run import RunSettings, run_scenario
from tests.browser import chromium

ROOT = Path(__file__).resolve().parents[1]


class Page(HTMLParser):
    """Every element with its attributes, and the text inside each script element."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.text: list[str] = []
        self._in_script: dict[str, str | None] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = dict(attrs)
            self.scripts.append((self._in_script, ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = None

    def handle_data(self, data: str) -> None:
        if self._in_script is not None:
            attrs, body = self.scripts[-1]
            self.scripts[-1] = (attrs, body + data)
        else:
            self.text.append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [
            a
            for t, a in self.elements
            if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    @property
    def all_text(self) -> str:
        return "".join(self.text)


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[dict[str, Any]], Any]]:
    """The reservation and helpdesk scenarios run on the emulator, each with its trace."""
    folder = tmp_path_factory.mktemp("runs")
    records: list[dict[str, Any]] = []
    pairs = []
    for name in ("reservation", "helpdesk"):
        scenario, problems = analyse_scenario(ROOT / "tests" / "scenarios" / f"{name}.yaml")
        assert scenario is not None, problems
        trace = folder / f"{name}.jsonl"
        result = run_scenario(scenario, RunSettings(trace_path=trace))
        assert result.passed, result.failures
        profile = load_profile(scenario.profile_path)
        assert profile.flow is not None
        model = timeline_of_trace(trace, speed=scenario.speed, start_node=profile.flow.start)
        record = result_record(result, profile=str(scenario.profile_path), timeline=model)
        records.append(json.loads(json.dumps(record)))  # as a results.jsonl line
        pairs.append((profile, record))
    yield records, coverage_by_profile(pairs)


def test_a_report_of_real_runs_has_each_scenario_turn_latency_and_coverage(
    real: tuple[list[dict[str, Any]], Any], tmp_path: Path
) -> None:
    records, coverage = real
    out = tmp_path / "report.html"
    write_html_report(records, out, coverage)
    page = Page(out.read_text(encoding="utf-8"))
    sections = page.find("section", **{"class": "scenario"})
    assert [(s["data-passed"], s["data-runs"]) for s in sections] == [("1", "1"), ("1", "1")]
    # one turn row per turn, each with its measured first audio
    turns = [len(r["turns"]) for r in records]
    assert turns == [4, 6]
    text = page.all_text
    for record in records:
        for turn in record["turns"]:
            assert f"{turn['first_audio_ms']:.0f} ms" in text
            assert turn["reply"] in text
    # the pictures' data: the flow's nodes as the runs walked them, start first
    (data,) = [body for attrs, body in page.scripts if attrs.get("type") == "application/json"]
    models = json.loads(data)
    assert [n["name"] for n in models[0]["nodes"]] == ["collect", "confirm", "book", "booked"]
    assert [n["name"] for n in models[1]["nodes"]] == [
        "triage",
        "verify",
        "check",
        "escalate",
        "handed_over",
    ]
    assert len(page.find("svg", **{"class": "timeline"})) == 2
    # coverage: what the shipped scenarios leave out, by name
    missing = [a for a in page.find("tr", data_state="missing")]
    assert len(missing) == sum(len(r.uncovered) for r in coverage.values())
    assert "path: collect -[party_size > 8]-> large_party" in text
    assert "locked" in text


def test_vlrun_test_html_reports_what_its_results_jsonl_holds(tmp_path: Path) -> None:
    """The real CLI: `vlrun test --results --html --repeat 2` on two flow scenarios. The page
    has one section per scenario with both runs, one picture per run (the data of
    results.jsonl), and the flow coverage of the profile."""
    from tests.helpers import run_cli

    results, page_path = tmp_path / "results.jsonl", tmp_path / "report.html"
    proc = run_cli(
        "test",
        "tests/scenarios/reservation.yaml",
        "tests/scenarios/reservation-large-party.yaml",
        "--repeat",
        "2",
        "--results",
        str(results),
        "--html",
        str(page_path),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(records) == 4 and all(isinstance(r.get("timeline"), dict) for r in records)
    page = Page(page_path.read_text(encoding="utf-8"))
    sections = page.find("section", **{"class": "scenario"})
    assert [(s["data-passed"], s["data-runs"]) for s in sections] == [("2", "2"), ("2", "2")]
    (data,) = [body for attrs, body in page.scripts if attrs.get("type") == "application/json"]
    assert json.loads(data) == [r["timeline"] for r in records]
    assert len(page.find("svg", **{"class": "timeline"})) == 4
    (coverage,) = page.find("div", **{"class": "coverage"})
    assert coverage["data-ratio"] == str(round(15 / 16, 4))
    assert len(page.find("tr", data_state="missing")) == 1


def test_the_judge_s_verdicts_of_a_real_run_are_shown_with_their_reasons(tmp_path: Path) -> None:
    """`vlrun test --html` on the judged example (the emulator judges by the rubrics' offline
    rules): each verdict in its row, at the turn it judged, with its reason and rubric line."""
    from tests.helpers import run_cli

    page_path = tmp_path / "report.html"
    proc = run_cli("test", "tests/data/scenarios/diner.yaml", "--html", str(page_path))
    assert proc.returncode == 1, proc.stdout + proc.stderr  # "forgetful host" fails
    page = Page(page_path.read_text(encoding="utf-8"))
    rows = page.find("tr", data_verdict="pass") + page.find("tr", data_verdict="fail")
    assert [r["data-verdict"] for r in rows] == ["pass", "pass", "fail"]
    text = page.all_text
    assert "[vlrun emulator, not a model] it did not ask for a time" in text
    assert "turn 1The assistant asks for the time.tests/data/scenarios/diner.yaml:34" in text
    assert "conversationThe assistant confirms the time back to the caller." in text


def test_the_timeline_model_of_a_trace_has_latency_audio_and_cuts() -> None:
    events = [
        (
            10.0,
            "out",
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "hi"}],
                },
            },
        ),
        (
            10.1,
            "in",
            {"type": "response.audio.delta", "item_id": "r1", "delta": "<64000 chars audio>"},
        ),  # 48000 bytes: 1000 ms at 24 kHz
        (10.2, "out", {"type": "response.cancel"}),
        (10.2, "out", {"type": "conversation.item.truncate", "item_id": "r1", "audio_end_ms": 250}),
    ]
    model = timeline_of(events, speed=2.0)
    assert model["speech"][0]["typed"] and model["speech"][0]["text"] == "hi"
    (reply,) = model["replies"]
    assert reply["receivedMs"] == pytest.approx(1000)
    assert (reply["cutMs"], reply["playedMs"]) == (250, 250)
    # the emulator's clock: at speed 2, 0.1 s of wall time is 200 ms
    assert model["latencies"] == [{"t": 200.0, "ms": 200.0}]
    assert model["barges"] == [400.0]
    # base64 audio counts the same as the trace's placeholder
    pcm = base64.b64encode(bytes(4800)).decode()  # 100 ms
    other = timeline_of(
        [(0.0, "in", {"type": "response.audio.delta", "item_id": "a", "delta": pcm})]
    )
    assert other["replies"][0]["receivedMs"] == pytest.approx(100)


HOSTILE = '</script><script>window.pwned=1</script><img src=x onerror="window.pwned=2">&amp;'


def _hostile_record(**extra: Any) -> dict[str, Any]:
    return {
        "name": f"x {HOSTILE}",
        "file": f"evil{HOSTILE}.yaml",
        "passed": False,
        "failures": [{"location": "s.yaml:3", "message": f"the reply contains {HOSTILE}"}],
        "turns": [
            {
                "index": 0,
                "reply": HOSTILE,
                "first_audio_ms": 120.4,
                "tool_calls": [{"name": f"t{HOSTILE}", "arguments": "{}", "output": HOSTILE}],
                "judge": [
                    {
                        "rubric": f"rubric {HOSTILE}",
                        "passed": False,
                        "reason": f"because {HOSTILE}",
                        "prompt": [{"role": "user", "content": f"judge {HOSTILE}"}],
                        "model": "emulator (not a model)",
                    }
                ],
            }
        ],
        "lines": [[0, f"you: {HOSTILE}"]],
        "timeline": {
            "speech": [{"item": "u", "start": 0, "end": 400, "text": HOSTILE, "typed": True}],
            "replies": [],
            "tools": [{"name": HOSTILE, "start": 0, "duration": 5, "ok": True}],
            "nodes": [{"t": 0, "name": HOSTILE}],
            "latencies": [],
            "barges": [],
            "lastT": 400,
        },
        **extra,
    }


def test_hostile_text_is_escaped_everywhere_and_only_the_reports_own_script_runs() -> None:
    text = render_html_report([_hostile_record()])
    page = Page(text)
    assert not page.find("img")
    assert all(not k.startswith("on") for _, attrs in page.elements for k in attrs)
    # two scripts: the data (JSON) and the drawing module; nothing else became a script
    kinds = [attrs.get("type") for attrs, _ in page.scripts]
    assert kinds == ["application/json", "module"]
    # every place shows the text as text
    shown = page.all_text
    for where in (f"x {HOSTILE}", f"because {HOSTILE}", f"rubric {HOSTILE}", f"judge {HOSTILE}"):
        assert where in shown
    # the drawing's data survives the trip as the same characters
    data = page.scripts[0][1]
    assert "</" not in data and "<" not in data
    assert json.loads(data)[0]["speech"][0]["text"] == HOSTILE
    # the policy runs only the script whose hash it names, and loads nothing
    (meta,) = page.find("meta", http_equiv="Content-Security-Policy")
    policy = str(meta["content"])
    assert "default-src 'none'" in policy
    digest = base64.b64encode(hashlib.sha256(page.scripts[1][1].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in policy
    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", text)


def test_secrets_in_records_are_masked_in_the_page() -> None:
    jwt = (
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    )
    record = _hostile_record(name="secret", failures=[], lines=[[0, f"you: token {jwt}"]])
    record["turns"][0]["reply"] = f"your token is {jwt}"
    text = render_html_report([record])
    assert jwt not in text
    assert "your token is" in text


def test_secrets_in_a_timeline_are_masked_in_the_drawing_s_data() -> None:
    """The drawing's JSON is the caller's words and the model's too: masked like the rest."""
    jwt = (
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    )
    record = _hostile_record(name="secret", failures=[], lines=[])
    record["timeline"]["speech"][0]["text"] = f"my token is {jwt}"
    record["timeline"]["tools"][0]["name"] = "lookup"
    text = render_html_report([record])
    assert jwt not in text
    data = json.loads(Page(text).scripts[0][1])
    assert data[0]["speech"][0]["text"].startswith("my token is ")
    assert data[0]["tools"][0]["name"] == "lookup"  # the rest as it was


def test_pass_rates_over_repeats_and_flaky_scenarios() -> None:
    def run(passed: bool, k: int) -> dict[str, Any]:
        return {"name": "books", "file": "b.yaml", "passed": passed, "repeat": k, "turns": []}

    page = Page(
        render_html_report(
            [
                run(True, 0),
                run(False, 1),
                run(True, 2),
                {"name": "steady", "file": "s.yaml", "passed": True, "turns": []},
            ]
        )
    )
    rows = page.find("tr")
    assert [r.get("data-status") for r in rows if r.get("data-status")][:2] == ["flaky", "pass"]
    (books,) = page.find("section", id="s0")
    assert (books["data-passed"], books["data-runs"]) == ("2", "3")
    assert "2/3 (67%)" in page.all_text
    runs = page.find("details", **{"class": "run"})
    assert [r["data-status"] for r in runs] == ["pass", "fail", "pass", "pass"]


def test_a_report_that_cannot_be_written_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot write the HTML report"):
        write_html_report([], tmp_path / "file" / "report.html")


@pytest.mark.skipif(not chromium.available(), reason="needs Debian's chromium")
def test_chromium_draws_every_picture_without_an_error(
    real: tuple[list[dict[str, Any]], Any], tmp_path: Path
) -> None:
    records, coverage = real
    hostile = _hostile_record()
    out = tmp_path / "report.html"
    write_html_report([*records, hostile], out, coverage)

    async def look() -> tuple[Any, Any, list[str]]:
        async with chromium.chromium(tmp_path / "chrome") as browser:
            await browser.open(out.as_uri())
            await browser.wait("document.body.dataset.drawn")
            report = await browser.eval("JSON.stringify(window.vlrunReport)")
            kinds = await browser.eval(
                "JSON.stringify([...document.querySelectorAll('svg.timeline')].map((s) => "
                "[...s.querySelectorAll('[data-kind]')].map((e) => e.dataset.kind)))"
            )
            pwned = await browser.eval("typeof window.pwned")
            return json.loads(report), json.loads(kinds), [*browser.console, pwned]

    report, kinds, console = asyncio.run(look())
    assert report == {"drawn": 3, "errors": []}
    assert not [line for line in console if "exception" in str(line)]
    assert console[-1] == "undefined"  # the hostile record's script and onerror never ran
    # the reservation's picture: four typed turns, their latencies, four record/tool calls,
    # the start and three steps of the flow
    first = kinds[0]
    assert first.count("typed") == 4 and first.count("latency") == 4
    assert first.count("tool") == 4 and first.count("node") == 4
    assert first.count("received") == first.count("played") >= 4
    assert kinds[2].count("node") == 1  # the hostile node name is drawn as text
