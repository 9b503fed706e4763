"""Flow coverage (runner/scenarios/coverage.py): the shipped profiles' graphs with synthetic
walks, a walk read from each source a run leaves (ScenarioResult, results.jsonl record,
trace), and a real `vlrun test` run through the CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from runner.config.load import load_profile
from runner.scenarios.coverage import FlowWalk, Step, coverage_by_profile, flow_coverage
from runner.scenarios.results import ScenarioResult, ToolCallSeen, TurnOutcome
from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]


def _profile(name: str) -> Any:
    return load_profile(ROOT / "profiles" / f"{name}.yaml")


def _walk(*steps: tuple[str, dict[str, Any], str | None], name: str = "s") -> FlowWalk:
    return FlowWalk(tuple(Step(n, g, to) for n, g, to in steps), name)


BOOKED = _walk(
    (
        "collect",
        {"guest": "Ann", "date": "2026-12-24", "time": "19:30", "party_size": 4},
        "confirm",
    ),
    ("confirm", {"confirmed": True}, "book"),
    ("book", {"reference": "R-1"}, "booked"),
    name="booked",
)
LARGE = _walk(
    (
        "collect",
        {"guest": "Bo", "date": "2026-12-24", "time": "20:00", "party_size": 12},
        "large_party",
    ),
    name="large",
)
CORRECTED = _walk(
    ("collect", {"guest": "Cy", "date": "2026-12-24", "time": "19:00", "party_size": 2}, "confirm"),
    ("confirm", {"confirmed": False}, "collect"),
    name="corrected",
)


def test_three_walks_cover_every_part_of_the_reservation_flow() -> None:
    report = flow_coverage(_profile("reservation").flow, [BOOKED, LARGE, CORRECTED])
    assert report.uncovered == []
    assert report.ratio == 1.0
    assert report.counts() == {
        "node": (5, 5),
        "transition": (1, 1),  # book -> booked
        "branch": (4, 4),  # collect's two, confirm's two
        "value": (6, 6),
    }
    by = {i.key: i for i in report.items}
    assert by["collect"].count == 4  # three starts, one way back from confirm
    assert by["large_party"].covered_by == ("large",)


def test_an_uncovered_branch_is_named_with_the_path_and_condition_that_reach_it() -> None:
    profile = _profile("reservation")
    report = flow_coverage(profile.flow, [BOOKED, CORRECTED], where=profile.origin)
    missing = {i.label: i for i in report.uncovered}
    assert set(missing) == {"collect -> large_party [party_size > 8]", "large_party"}
    branch = missing["collect -> large_party [party_size > 8]"]
    assert branch.kind == "branch"
    assert branch.route() == "collect -[party_size > 8]-> large_party"
    assert "`party_size > 8` holds" in branch.how
    assert branch.where is not None and branch.where.endswith("profiles/reservation.yaml:30")
    assert report.ratio == pytest.approx(14 / 16)
    text = report.render_text()
    assert "88% (14/16) over 2 run(s)" in text
    assert "not exercised: node large_party" in text
    assert "path: collect -[party_size > 8]-> large_party" in text


def test_the_otherwise_branch_is_its_own_item() -> None:
    report = flow_coverage(_profile("reservation").flow, [BOOKED, LARGE])
    (back,) = [i for i in report.uncovered]
    assert back.label == "confirm -> collect [otherwise]"
    assert back.route() == "collect -[otherwise]-> confirm -[otherwise]-> collect"


def test_helpdesk_branches_are_told_apart_by_the_values_collected_earlier() -> None:
    flow = _profile("helpdesk").flow

    def desk(category: str, verified: bool, then: str) -> FlowWalk:
        return _walk(
            ("triage", {"category": category, "summary": "x"}, "verify"),
            ("verify", {"employee_id": "E1", "pin": "***"}, "check"),  # the trace's mask
            ("check", {"verified": verified}, then),
        )

    report = flow_coverage(flow, [desk("vpn", True, "solve"), desk("hardware", True, "escalate")])
    branch = {i.label: i.covered for i in report.items if i.kind == "branch" and i.node == "check"}
    assert branch == {
        "check -> solve [verified and category in ['password', 'vpn']]": True,
        "check -> escalate [verified]": True,
        "check -> locked [otherwise]": False,
    }
    # a masked secret still counts as given
    assert {i.key: i.covered for i in report.items}["verify.pin"] is True
    assert report.enums["category"] == (("vpn", "hardware"), ("password", "other"))
    assert "category: never given password, other (of its enum)" in report.render_text()


def test_two_transitions_to_one_node_are_told_apart_by_their_conditions(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "name: twice\ninstructions: x\nflow:\n  start: a\n  nodes:\n"
        "    a:\n      collect: {n: {type: integer}}\n"
        '      transitions: [{to: b, when: "n > 5"}, {to: b}]\n'
        "    b: {end: true}\n"
    )
    flow = load_profile(tmp_path / "p.yaml").flow
    assert flow is not None
    report = flow_coverage(flow, [_walk(("a", {"n": 3}, "b"))])
    assert [i.label for i in report.uncovered] == ["a -> b [n > 5]"]
    report = flow_coverage(flow, [_walk(("a", {"n": 9}, "b"))])
    assert [i.label for i in report.uncovered] == ["a -> b [otherwise]"]


def test_a_node_the_start_cannot_reach_has_no_path() -> None:
    # `vlrun check` refuses such a profile; coverage still says it plainly
    flow = _profile("reservation").flow
    assert flow is not None
    lonely = dataclasses.replace(flow.nodes["booked"], name="lonely", path=())
    nodes = {**flow.nodes, "lonely": lonely}
    report = flow_coverage(dataclasses.replace(flow, nodes=nodes), [BOOKED])
    item = next(i for i in report.uncovered if i.key == "lonely")
    assert item.path is None
    assert "no path from the start node reaches it" in report.render_text()


def test_refused_and_unanswered_record_calls_exercise_nothing() -> None:
    calls = [
        ("record_collect", '{"party_size": 99}', '{"error": {"type": "invalid_arguments"}}', False),
        ("record_collect", '{"guest": "Ann"}', None, None),  # cancelled before it ran
        ("book_table", "{}", '{"reference": "R"}', True),  # a plugin, not a step
    ]
    walk = FlowWalk.from_tool_calls(calls, name="refused")
    assert walk.steps == ()
    report = flow_coverage(_profile("reservation").flow, [walk])
    assert [i.key for i in report.items if i.covered] == ["collect"]


def test_a_walk_of_another_flow_is_a_note_not_a_crash() -> None:
    report = flow_coverage(_profile("reservation").flow, [_walk(("triage", {}, "verify"))])
    assert report.notes == ("s called record_triage, no step of this flow",)
    assert report.covered == 1  # the start node


def _result_with(calls: list[ToolCallSeen], *, error: str | None = None) -> ScenarioResult:
    result = ScenarioResult(Path("x.yaml"), "from a result", error=error)
    if calls:
        result.turns = [TurnOutcome(0, tool_calls=calls)]
    return result


def test_a_result_and_its_results_jsonl_record_give_the_same_walk() -> None:
    given = {"guest": "Ann", "date": "d", "time": "t", "party_size": 4}
    out = json.dumps({"ok": True, "recorded": given, "next_step": "confirm"})
    call = ToolCallSeen(
        "record_collect",
        "c1",
        '{"guest": "Ann", "date": "d", "time": "t", "party_size": 4}',
        out,
        True,
    )
    from_object = FlowWalk.from_result(_result_with([call]))
    record = {
        "name": "from a result",
        "profile": "profiles/reservation.yaml",
        "turns": [
            {
                "tool_calls": [
                    {"name": c.name, "arguments": c.arguments, "output": c.output, "ok": c.ok}
                ]
            }
            for c in [call]
        ],
    }
    from_record = FlowWalk.from_result(json.loads(json.dumps(record)))
    assert from_object is not None and from_record is not None
    assert from_object.steps == from_record.steps
    assert from_object.steps[0].to == "confirm"
    assert from_record.profile == "profiles/reservation.yaml"
    # a run that never started exercised nothing, not even the start node
    assert FlowWalk.from_result(_result_with([], error="no connection")) is None
    assert FlowWalk.from_result({"name": "x", "error": "no connection", "turns": []}) is None


def test_coverage_by_profile_leaves_out_profiles_without_a_flow() -> None:
    reservation, weather = _profile("reservation"), _profile("casual-chat")
    reports = coverage_by_profile([(reservation, _result_with([])), (weather, _result_with([]))])
    assert list(reports) == [str(reservation.source)]
    assert reports[str(reservation.source)].walks == 1


def test_to_dict_is_json_with_each_uncovered_path() -> None:
    data = json.loads(json.dumps(flow_coverage(_profile("reservation").flow, [BOOKED]).to_dict()))
    assert data["total"] == 16 and data["covered"] == 13
    paths = {u["label"]: u["path"] for u in data["uncovered"]}
    assert paths["large_party"] == ["collect", "-[party_size > 8]->", "large_party"]
    assert paths["confirm -> collect [otherwise]"] == [
        "collect",
        "-[otherwise]->",
        "confirm",
        "-[otherwise]->",
        "collect",
    ]


def test_a_real_vlrun_test_run_gives_the_walk_its_scenario_states(tmp_path: Path) -> None:
    """`vlrun test --record` on the shipped reservation scenario: the trace's record calls
    are the walk the scenario expects (collect -> confirm -> book -> booked)."""
    proc = run_cli("test", "tests/scenarios/reservation.yaml", "--record", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (trace,) = tmp_path.glob("*.jsonl")
    events = [
        (rec["dir"], rec["event"])
        for rec in map(json.loads, trace.read_text().splitlines())
        if rec["dir"] in ("in", "out")
    ]
    walk = FlowWalk.from_trace(events, name="reservation")
    assert [(s.node, s.to) for s in walk.steps] == [
        ("collect", "confirm"),
        ("confirm", "book"),
        ("book", "booked"),
    ]
    report = flow_coverage(_profile("reservation").flow, [walk])
    assert {i.label for i in report.uncovered} == {
        "collect -> large_party [party_size > 8]",
        "confirm -> collect [otherwise]",
        "large_party",
    }


def test_a_real_vlrun_test_results_jsonl_gives_each_run_s_walk(tmp_path: Path) -> None:
    """`vlrun test --results` on two shipped reservation scenarios: each line of
    results.jsonl is the walk its scenario states, and together they leave out exactly the
    branch no scenario takes (a caller who says the booking is wrong)."""
    out = tmp_path / "results.jsonl"
    proc = run_cli(
        "test",
        "tests/scenarios/reservation.yaml",
        "tests/scenarios/reservation-large-party.yaml",
        "--results",
        str(out),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    walks = [FlowWalk.from_result(r) for r in records]
    assert [[(s.node, s.to) for s in w.steps] for w in walks if w is not None] == [
        [("collect", "confirm"), ("confirm", "book"), ("book", "booked")],
        [("collect", "large_party")],
    ]
    assert {Path(str(w.profile)).name for w in walks if w is not None} == {"reservation.yaml"}
    report = flow_coverage(_profile("reservation").flow, walks)
    assert [i.label for i in report.uncovered] == ["confirm -> collect [otherwise]"]
    assert report.ratio == pytest.approx(15 / 16)
