"""Scenario files for `vlrun test`: load with positions, validate, and check them for `vlrun check`.

A scenario names a profile, scripts the emulated model (``model:``) and lists user turns with
what must happen in each. Every value keeps its file:line (via :mod:`runner.config.source`, as
profiles do), so a schema problem, and later a failed expectation, points at the line to edit.
Running a scenario lives in :mod:`runner.scenarios.run`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from runner.config import source as yamlsrc
from runner.config.patterns import NEVER
from runner.config.source import PathKey, Pos
from runner.errors import Problem, ProfileError, UsageError

SCHEMA_HINT = "see docs/testing.md, 'Scenario format'"
TURN_INPUTS = ("user", "say", "wav", "dtmf", "image")
# keys a file with `scenarios:` gives every scenario in it, unless the scenario sets its own
SHARED_KEYS = (
    "description",
    "profile",
    "vars",
    "set",
    "tools",
    "speed",
    "timeout_s",
    "mocks",
    "model",
    "judge",
)
DEFAULT_SPEED = 10.0
DEFAULT_TIMEOUT_S = 30.0


class ScenarioError(ProfileError):
    """A scenario failed to load or validate; every problem carries file:line."""


@dataclass(frozen=True)
class Scenario:
    """A loaded, schema-valid scenario; ``positions`` map a JSON path to its file:line."""

    path: Path
    name: str
    data: Mapping[str, Any]
    positions: Mapping[PathKey, Pos] = field(repr=False)
    prefix: PathKey = ()  # where it sits in its file: ("scenarios", 2) in a list of them
    inherited: frozenset[str] = frozenset()  # keys it takes from the file's top level

    @property
    def turns(self) -> list[dict[str, Any]]:
        return list(self.data.get("turns") or [])

    @property
    def profile_path(self) -> Path:
        return (self.path.parent / str(self.data["profile"])).resolve()

    @property
    def speed(self) -> float:
        return float(self.data.get("speed") or DEFAULT_SPEED)

    @property
    def timeout_s(self) -> float:
        return float(self.data.get("timeout_s") or DEFAULT_TIMEOUT_S)

    def relative(self, value: str) -> Path:
        """A path written in the scenario, relative to the scenario file."""
        return (self.path.parent / value).resolve()

    @property
    def root(self) -> Path:
        """The project the scenario belongs to; every path it names must stay inside."""
        return project_root(self.path)

    def paths(self) -> list[tuple[PathKey, str]]:
        """Every path the scenario names: ``profile``, each turn's ``wav`` or ``image``,
        ``tools`` folders."""
        out: list[tuple[PathKey, str]] = []
        if isinstance(self.data.get("profile"), str):
            out.append((("profile",), self.data["profile"]))
        for i, turn in enumerate(self.turns):
            for key in ("wav", "image"):
                if isinstance(turn, Mapping) and isinstance(turn.get(key), str):
                    out.append((("turns", i, key), turn[key]))
        for i, folder in enumerate(self.data.get("tools") or []):
            if isinstance(folder, str):
                out.append((("tools", i), folder))
        return out

    def line(self, path: PathKey, *, at_key: bool = False) -> int | None:
        """The line of the value at ``path``, else of its nearest parent."""
        for i in range(len(path), -1, -1):
            pos = self.positions.get(tuple(path[:i]))
            if pos is not None:
                return pos.at_key()[0] if at_key else pos.line
        return None

    def where(self, path: PathKey, *, at_key: bool = False) -> str:
        """``file:line`` for messages."""
        line = self.line(path, at_key=at_key)
        return f"{self.path}:{line}" if line else str(self.path)

    def problem(
        self, path: PathKey, message: str, *, hint: str | None = None, severity: str = "error"
    ) -> Problem:
        pos = None
        for i in range(len(path), -1, -1):
            pos = self.positions.get(tuple(path[:i]))
            if pos is not None:
                break
        return Problem(
            str(self.path),
            pos.line if pos else None,
            pos.col if pos else None,
            severity,  # type: ignore[arg-type]
            message,
            yamlsrc.json_path(
                path if path[:1] and path[0] in self.inherited else self.prefix + path
            ),
            hint,
        )


# --- schema -----------------------------------------------------------------------------------


def _schema_json(name: str) -> dict[str, Any]:
    text = resources.files("runner.config.schema").joinpath(name).read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@lru_cache(maxsize=1)
def _validator() -> Any:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    model = _schema_json("model-script.schema.json")
    registry = Registry().with_resource(model["$id"], Resource.from_contents(model))
    return Draft202012Validator(_schema_json("scenario.schema.json"), registry=registry)


def _schema_problems(scenario: Scenario) -> list[Problem]:
    from runner.config.suggest import suggest

    out: list[Problem] = []
    errors = sorted(
        _validator().iter_errors(scenario.data),
        key=lambda e: (list(map(str, e.absolute_path)), e.validator),
    )
    for err in errors:
        path: PathKey = tuple(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = list((err.schema or {}).get("properties", {}))
            for key in err.instance:
                if key not in allowed:
                    out.append(
                        _at_key(
                            scenario,
                            (*path, key),
                            f"unknown key {key!r}" + (f" in `{_dotted(path)}`" if path else ""),
                            hint=suggest(key, allowed) or f"allowed keys: {', '.join(allowed)}",
                        )
                    )
            continue
        if err.validator == "oneOf" and len(path) >= 2 and path[-2] == "turns":
            keys = [k for k in TURN_INPUTS if k in err.instance]
            message = (
                "a turn needs one of `user` (text), `say` (spoken text), `wav` (a file), "
                "`dtmf` (keys) or `image` (a picture)"
                if not keys
                else f"a turn has one input, not {' and '.join(keys)}"
            )
            out.append(scenario.problem(path, message, hint=SCHEMA_HINT))
            continue
        if err.validator == "pattern" and path and path[-1] == "dtmf":
            out.append(
                scenario.problem(
                    path,
                    f"{err.instance!r} has a key no keypad has",
                    hint="DTMF keys are 0-9, *, # and A-D",
                )
            )
            continue
        if err.validator == "not" and not path:  # `scenarios:` beside one scenario's keys
            both = [k for k in ("scenario", "turns") if k in err.instance]
            out.append(
                _at_key(
                    scenario,
                    (both[0],),
                    f"`{both[0]}` beside `scenarios:`: a file holds one scenario or a list",
                    hint="move it into an item of `scenarios:`",
                )
            )
            continue
        if err.validator == "anyOf" and (not path or (len(path) == 2 and path[0] == "scenarios")):
            out.append(
                scenario.problem(
                    path,
                    "missing `turns` (scripted turns) or `caller` (a simulated caller)"
                    + (f" in `{_dotted(path)}`" if path else ""),
                    hint=SCHEMA_HINT,
                )
            )
            continue
        if err.validator == "required":
            missing = re.findall(r"'([^']+)' is a required property", err.message)
            message = f"missing `{missing[0]}`" if missing else err.message
            where = f" in `{_dotted(path)}`" if path else ""
            out.append(scenario.problem(path, message + where, hint=SCHEMA_HINT))
            continue
        out.append(scenario.problem(path, err.message, hint=SCHEMA_HINT))
    seen: set[tuple[int | None, str]] = set()
    unique = []
    for p in out:
        if (p.line, p.message) not in seen:
            seen.add((p.line, p.message))
            unique.append(p)
    return unique


def _at_key(scenario: Scenario, path: PathKey, message: str, *, hint: str | None) -> Problem:
    pos = scenario.positions.get(path)
    if pos is None:
        return scenario.problem(path, message, hint=hint)
    line, col = pos.at_key()
    return Problem(str(scenario.path), line, col, "error", message, yamlsrc.json_path(path), hint)


def _dotted(path: PathKey) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


# --- loading ----------------------------------------------------------------------------------


def _read(path: Path) -> Scenario:
    src = yamlsrc.load_file(path)
    if not isinstance(src.data, dict):
        raise ScenarioError(
            [
                yamlsrc.problem(
                    str(path),
                    1,
                    1,
                    "a scenario is a mapping with `scenario`, `profile` and `turns`",
                    hint=SCHEMA_HINT,
                )
            ]
        )
    name = str(src.data.get("scenario") or path.stem)
    return Scenario(path, name, src.data, src.positions)


def _entries(whole: Scenario) -> list[Scenario]:
    """The scenarios of a schema-valid file: itself, or each item of ``scenarios:`` with the
    file's shared keys as defaults. Positions are re-rooted, so every path a scenario names
    (``turns[0].expect``) still finds its own line in the file."""
    if "scenarios" not in whole.data:
        return [whole]
    out = []
    for i, item in enumerate(whole.data["scenarios"]):
        data = {k: v for k, v in whole.data.items() if k in SHARED_KEYS}
        data.update(item)
        prefix = ("scenarios", i)
        positions = {
            key: pos
            for key, pos in whole.positions.items()
            if key and key[0] in SHARED_KEYS and key[0] not in item
        }
        positions.update(
            {key[2:]: pos for key, pos in whole.positions.items() if key[:2] == prefix}
        )
        inherited = frozenset(k for k in data if k not in item)
        out.append(Scenario(whole.path, str(item["scenario"]), data, positions, prefix, inherited))
    return out


def analyse_file(path: Path) -> tuple[list[Scenario], list[Problem]]:
    """Load and check a scenario file; returns the scenarios that can run (every one, or
    none when any has an error) and every problem found."""
    try:
        whole = _read(path)
    except ProfileError as exc:
        return [], list(exc.all_problems)
    problems = _schema_problems(whole)
    if problems:
        return [], problems
    scenarios = _entries(whole)
    names: set[str] = set()
    for n, scenario in enumerate(scenarios):
        if scenario.name in names:  # results, pass rates and JUnit group runs by name
            problems.append(
                whole.problem(
                    ("scenarios", n, "scenario"),
                    f"a second scenario named {scenario.name!r} in this file",
                    hint="give each scenario its own name",
                )
            )
        names.add(scenario.name)
        if "profile" not in scenario.data:
            problems.append(
                whole.problem(
                    ("scenarios", n),
                    f"scenario {scenario.name!r} has no `profile` (here or at the top level)",
                    hint=SCHEMA_HINT,
                )
            )
            continue
        problems += semantic_problems(scenario)
    if any(p.severity == "error" for p in problems):
        return [], problems
    return scenarios, problems


def analyse_scenario(path: Path) -> tuple[Scenario | None, list[Problem]]:
    """Load and check a file holding one scenario; returns it (when it can run) and every
    problem found. A file with ``scenarios:`` gives its first here: use :func:`analyse_file`."""
    scenarios, problems = analyse_file(path)
    return (scenarios[0] if scenarios else None), problems


def load_scenarios(path: Path) -> list[Scenario]:
    """Every scenario of a file, or :class:`ScenarioError` listing every problem."""
    scenarios, problems = analyse_file(path)
    if not scenarios:
        raise ScenarioError(problems)
    return scenarios


def load_scenario(path: Path) -> Scenario:
    """The one runnable scenario of a file, or :class:`ScenarioError` listing every problem
    (also when the file holds several: :func:`load_scenarios` loads those)."""
    scenarios = load_scenarios(path)
    if len(scenarios) > 1:
        raise ScenarioError(
            [
                yamlsrc.problem(
                    str(path),
                    1,
                    1,
                    f"the file holds {len(scenarios)} scenarios, not one",
                    hint="load them with load_scenarios()",
                )
            ]
        )
    return scenarios[0]


PROJECT_MARKERS = ("pyproject.toml", ".git", ".vlrun")


def project_root(path: Path) -> Path:
    """The nearest folder above ``path`` holding a project marker, else the file's own folder.

    Scenarios usually sit in ``tests/scenarios`` and name ``../../profiles/x.yaml``: the
    project, not the scenario's folder, is what their paths must stay inside."""
    start = path.absolute().parent
    try:
        start = start.resolve()
    except (OSError, RuntimeError):
        return start
    for folder in (start, *start.parents):
        if any((folder / marker).exists() for marker in PROJECT_MARKERS):
            return folder
    return start


def confinement_problems(scenario: Scenario) -> list[Problem]:
    """Every path in a scenario is relative and resolves inside the project.

    The one gate for ``profile:``, ``wav:`` and ``tools:``: a scenario from a pull request
    must not make `vlrun test` read /etc/passwd or a .env outside the checkout."""
    out: list[Problem] = []
    root = scenario.root
    hint = f"keep profiles, WAV files and tools inside the project ({root})"
    for key, value in scenario.paths():
        if os.path.isabs(value) or value.startswith("~"):
            out.append(
                scenario.problem(key, f"{value!r} must be a path relative to this file", hint=hint)
            )
            continue
        try:
            target = (scenario.path.parent / value).resolve()
        except (OSError, RuntimeError):  # a symlink loop (RuntimeError on Python 3.11)
            out.append(scenario.problem(key, f"{value!r} is a symlink loop"))
            continue
        try:
            target.relative_to(root)
        except ValueError:
            out.append(scenario.problem(key, f"{value!r} points outside the project", hint=hint))
            continue
        if key[0] != "tools":
            kind = yamlsrc.file_kind_problem(target)
            if kind is not None and kind != "file not found":
                out.append(scenario.problem(key, f"{value!r} {kind}"))
    return out


def semantic_problems(scenario: Scenario, *, profile_problems: bool = True) -> list[Problem]:
    """What the schema cannot see: files that must exist, regexes, the model script, tool names."""
    out: list[Problem] = confinement_problems(scenario)
    if out:
        return out  # nothing outside the project is opened, not even to see if it exists
    profile_path = scenario.profile_path
    declared: set[str] | None = None
    if not profile_path.is_file():
        out.append(
            scenario.problem(
                ("profile",),
                f"no profile at {profile_path}",
                hint="the path is relative to the scenario file",
            )
        )
    elif profile_problems:
        declared = _profile_tools(scenario, out)
    for i, turn in enumerate(scenario.turns):
        for key, what in (("wav", "WAV file"), ("image", "image")):
            if key in turn and not scenario.relative(turn[key]).is_file():
                out.append(
                    scenario.problem(
                        ("turns", i, key),
                        f"no {what} at {scenario.relative(turn[key])}",
                        hint="the path is relative to the scenario file",
                    )
                )
        if "image" in turn and image_mime(turn["image"]) is None:
            out.append(
                scenario.problem(
                    ("turns", i, "image"),
                    f"{turn['image']!r} is not a PNG, JPEG, GIF or WebP file name",
                    hint="name the file .png, .jpg, .jpeg, .gif or .webp",
                )
            )
        if "text" in turn and "image" not in turn:
            out.append(
                scenario.problem(
                    ("turns", i, "text"),
                    "`text` goes with an `image` turn",
                    hint="a typed turn is `user: TEXT`",
                )
            )
        expect = turn.get("expect") or {}
        cancelled = expect.get("tool_cancelled")
        if isinstance(cancelled, str) and declared is not None and cancelled not in declared:
            out.append(
                scenario.problem(
                    ("turns", i, "expect", "tool_cancelled"),
                    f"expects {cancelled!r} to be cancelled, which the profile does not offer",
                    hint=f"the profile's tools: {', '.join(sorted(declared)) or 'none'}",
                )
            )
        if cancelled and "barge_in" not in turn:
            out.append(
                scenario.problem(
                    ("turns", i, "expect", "tool_cancelled"),
                    "expects a tool to be cancelled but the turn has no `barge_in`",
                    hint="a barge-in cancels running tools: add barge_in: {at_ms: 200}",
                )
            )
        _regex(scenario, ("turns", i, "expect", "reply_matches"), expect.get("reply_matches"), out)
        for j, call in enumerate(expect.get("tools") or []):
            base: PathKey = ("turns", i, "expect", "tools", j)
            for key, pattern in (call.get("args_match") or {}).items():
                _regex(scenario, (*base, "args_match", key), pattern, out)
            if declared is not None and call["name"] not in declared:
                out.append(
                    scenario.problem(
                        (*base, "name"),
                        f"expects a call to {call['name']!r}, which the profile does not offer",
                        hint=f"the profile's tools: {', '.join(sorted(declared)) or 'none'}",
                    )
                )
        if expect.get("interrupted") and "barge_in" not in turn:
            out.append(
                scenario.problem(
                    ("turns", i, "expect", "interrupted"),
                    "expects an interruption but the turn has no `barge_in`",
                    hint="add barge_in: {at_ms: 500} to talk over the reply",
                )
            )
    out += _evals_problems(scenario)
    for where, mocks in _all_mocks(scenario):
        for name in mocks:
            if declared is not None and name not in declared:
                out.append(
                    scenario.problem(
                        (*where, name),
                        f"mocks {name!r}, which the profile does not offer",
                        severity="warning",
                    )
                )
    if isinstance(scenario.data.get("model"), Mapping):
        out += _model_problems(scenario)
    return out


def _evals_problems(scenario: Scenario) -> list[Problem]:
    """The caller's and the rubrics' own checks (runner.evals), at their lines."""
    caller = scenario.data.get("caller")
    rubrics: list[tuple[PathKey, Mapping[str, Any]]] = [
        (("judge", n), r) for n, r in enumerate(scenario.data.get("judge") or [])
    ]
    for i, turn in enumerate(scenario.turns):
        wanted = (turn.get("expect") or {}).get("judge")
        if isinstance(wanted, Mapping):
            rubrics.append((("turns", i, "expect", "judge"), wanted))
        elif isinstance(wanted, list):
            rubrics += [(("turns", i, "expect", "judge", n), r) for n, r in enumerate(wanted)]
    if caller is None and not rubrics:
        return []  # runner.evals is not even imported
    from runner.evals import caller_problems, offline_problems

    out: list[Problem] = []
    if caller is not None:
        if "turns" in scenario.data:
            out.append(
                scenario.problem(
                    ("caller",),
                    "a scenario has scripted `turns` or a `caller`, not both",
                    hint="put the simulated caller in a scenario of its own",
                )
            )
        # the text tier's rules (the script is optional there); offline needs the script
        inner = {k: v for k, v in caller.items() if k not in ("offline", "expect")}
        for message in caller_problems(inner, "text"):
            out.append(scenario.problem(("caller",), message, hint="see docs/evals.md"))
        if "script" not in caller:
            out.append(
                scenario.problem(
                    ("caller",),
                    "the caller has no `script`: it cannot run offline (--caller script)",
                    hint="add script: [lines the caller says] for CI",
                    severity="warning",
                )
            )
        if "offline" in caller:
            rubrics.append((("caller", "offline"), {"rubric": "success", **caller}))
    for path, rubric in rubrics:
        rules = rubric.get("offline")
        at: PathKey = (*path, "offline") if path[-1] != "offline" else path
        if rules is None:
            continue
        for message in offline_problems(rules):
            out.append(scenario.problem(at, message, hint="see docs/evals.md#offline"))
    return out


def _all_mocks(scenario: Scenario) -> list[tuple[PathKey, Mapping[str, Any]]]:
    found: list[tuple[PathKey, Mapping[str, Any]]] = []
    if scenario.data.get("mocks"):
        found.append((("mocks",), scenario.data["mocks"]))
    for i, turn in enumerate(scenario.turns):
        if turn.get("mocks"):
            found.append((("turns", i, "mocks"), turn["mocks"]))
    return found


def _regex(scenario: Scenario, path: PathKey, pattern: Any, out: list[Problem]) -> None:
    if not isinstance(pattern, str):
        return
    from runner.config.patterns import PatternError, compile_pattern

    try:
        compile_pattern(pattern)  # RE2: what compiles here matches in linear time
    except PatternError as exc:
        out.append(scenario.problem(path, f"bad regular expression {pattern!r}: {exc}"))


def _profile_tools(scenario: Scenario, out: list[Problem]) -> set[str] | None:
    """Tool names the profile offers; a profile that does not load is one problem here. A
    GPT-Live profile's scenario is also checked for turns GPT-Live cannot take."""
    profile = _load_profile(scenario, out)
    if profile is None:
        return None
    _duplex_problems(scenario, profile, out)
    return _tool_names(scenario, profile, out)


def _duplex_problems(scenario: Scenario, profile: Any, out: list[Problem]) -> None:
    """Turns a GPT-Live profile cannot take (images, typed turns under client delegation,
    ...), and GPT-Live's own keys on any other profile: at their lines, before a run."""
    from runner.config.gpt_live import accepts_typed_turns, is_gpt_live

    duplex = is_gpt_live(profile.connection.model)
    typed = accepts_typed_turns(profile.settings)
    for i, turn in enumerate(scenario.turns):
        if duplex:
            for path, message, hint in duplex_turn_problems(turn, typed_turns=typed):
                out.append(scenario.problem(("turns", i, *path), message, hint=hint))
            continue
        expect = turn.get("expect") or {}
        keys: list[PathKey] = [("talk_over",)] if "talk_over" in turn else []
        keys += [("expect", k) for k in ("yielded", "backchannels") if k in expect]
        for path in keys:
            out.append(
                scenario.problem(
                    ("turns", i, *path),
                    f"`{path[-1]}` is for GPT-Live profiles (full duplex); "
                    f"{profile.connection.model or 'this profile'} is not one",
                    hint="on a Voice Live profile, talk over the reply with barge_in and "
                    "expect interrupted",
                )
            )
    caller = scenario.data.get("caller")
    if duplex and not typed and isinstance(caller, Mapping):
        out.append(
            scenario.problem(
                ("caller",),
                "a text-tier caller types its turns, and this GPT-Live profile takes typed "
                "turns only with a delegation deployment (gpt_live.delegation.deployment)",
                hint="run the caller with --caller audio, or give the profile a deployment",
                severity="warning",
            )
        )


def duplex_turn_problems(
    turn: Mapping[str, Any], *, typed_turns: bool
) -> list[tuple[PathKey, str, str]]:
    """What a GPT-Live scenario turn asks that GPT-Live cannot do: (path in the turn, message,
    hint). The same list for `vlrun check` (runner.scenarios.files) and the run."""
    out: list[tuple[PathKey, str, str]] = []
    for key, what, hint in (
        ("dtmf", "DTMF keys", "GPT-Live takes spoken and typed turns"),
        (
            "image",
            "image turns",
            "GPT-Live's WebSocket has no image event; use a gpt-realtime model for image turns",
        ),
        (
            "barge_in",
            "barge_in",
            "GPT-Live decides itself when to yield: talk over its reply "
            "with talk_over: {at_ms: 1000, say: ...} and expect yielded: true or false",
        ),
    ):
        if key in turn:
            out.append(
                ((key,), f"a GPT-Live scenario takes spoken and typed turns, not {what}", hint)
            )
    if "user" in turn and not typed_turns:
        out.append(
            (
                ("user",),
                "GPT-Live takes typed turns only with a delegation deployment "
                "(gpt_live.delegation.deployment); this profile delegates to the client",
                "speak the turn instead (say: ...), or give the profile a deployment",
            )
        )
    expect = turn.get("expect") or {}
    if "silent_for_ms" in expect and "user" in turn:
        out.append(
            (
                ("expect", "silent_for_ms"),
                "`silent_for_ms` on GPT-Live is measured on the session's clock from the end of "
                "the caller's speech; a typed turn has no place on that clock",
                "make the turn spoken (say: ...)",
            )
        )
    if "tool_cancelled" in expect:
        out.append(
            (
                ("expect", "tool_cancelled"),
                "`tool_cancelled` cannot be measured on GPT-Live: it has no cancel event, and "
                "a delegated call's result is always returned (the wire never says it went "
                "unused)",
                "leave it out of a GPT-Live scenario; expect yielded: true for an interruption",
            )
        )
    return out


def profile_options(scenario: Scenario) -> tuple[dict[str, str], tuple[str, ...]]:
    """The scenario's `vars:` and `set:` as the profile loader takes them (``--var``/``--set``
    strings; a YAML boolean is ``true``/``false``, as typed on a command line)."""
    vars_ = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in _vars(scenario)}
    return vars_, tuple(str(s) for s in scenario.data.get("set") or ())


def _load_profile(scenario: Scenario, out: list[Problem]) -> Any:
    from runner.config.load import analyse

    vars_, sets = profile_options(scenario)
    try:
        profile, problems = analyse(scenario.profile_path, vars=vars_, sets=tuple(sets))
    except UsageError as exc:  # a `set:` item that is not PATH=VALUE, or cannot apply
        bad = next((i for i, s in enumerate(sets) if repr(s) in exc.message), None)
        out.append(
            scenario.problem(
                ("set",) if bad is None else ("set", bad),
                exc.message.replace("--set ", "set item ", 1),
                hint=exc.hint,
            )
        )
        return None
    errors = [p for p in problems if p.severity == "error"]
    first = errors[0] if errors else None
    if first is not None and first.file.startswith("--set ") and first.file[6:] in sets:
        # the value came from this scenario's `set:` list, not from a command line
        out.append(
            scenario.problem(
                ("set", sets.index(first.file[6:])),
                f"set item {first.file[6:]!r} does not apply"
                + (f" to {first.json_path}" if first.json_path else "")
                + f": {first.message}",
                hint=first.hint.replace("--set ", "the set item ") if first.hint else None,
            )
        )
        return None
    if profile is None or errors:
        out.append(
            scenario.problem(
                ("profile",),
                "the profile does not load"
                + (f": {first.location}: {first.message}" if first else ""),
                hint=f"run `vlrun check {scenario.profile_path}` for every problem",
            )
        )
        return None
    return profile


def _tool_names(scenario: Scenario, profile: Any, out: list[Problem]) -> set[str]:
    names = {t.name for t in profile.tools}
    if profile.flow is not None:
        names |= profile.flow.tool_names()
        for i, turn in enumerate(scenario.turns):
            wanted = (turn.get("expect") or {}).get("flow") or {}
            at: PathKey = ("turns", i, "expect", "flow")
            named = [((*at, "node"), wanted["node"])] if "node" in wanted else []
            named += [((*at, "path", j), n) for j, n in enumerate(wanted.get("path") or [])]
            for path, node in named:
                if node not in profile.flow.nodes:
                    out.append(
                        scenario.problem(
                            path,
                            f"expects the flow node {node!r}, which the profile does not have",
                            hint="nodes: " + ", ".join(profile.flow.nodes),
                        )
                    )
    return names


def _vars(scenario: Scenario) -> list[tuple[str, Any]]:
    return list((scenario.data.get("vars") or {}).items())


_JSON_PATH_PART = re.compile(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]")


def _model_problems(scenario: Scenario) -> list[Problem]:
    """The emulator's own checks of the embedded model script, positioned in this file."""
    from runner.emulator.model import ScriptError, load_script

    try:
        load_script(dict(scenario.data["model"]), origin=str(scenario.path))
    except ScriptError as exc:
        out = []
        for p in exc.all_problems:
            sub: PathKey = tuple(
                int(i) if i else str(k) for k, i in _JSON_PATH_PART.findall(p.json_path or "")
            )
            out.append(scenario.problem(("model", *sub), p.message, hint=p.hint))
        return out
    return []


def model_script(scenario: Scenario) -> dict[str, Any]:
    """The ``model:`` block plus the transcripts of spoken turns, so the emulator 'hears' them.

    The emulator numbers user inputs from 1; every turn is one input and a barge-in another.
    A transcript rule never matches by itself (``match`` is :data:`NEVER`), so the scenario's own
    rules still decide the reply.
    """
    script = dict(scenario.data.get("model") or {})
    rules = list(script.get("turns") or [])
    number = 0
    for turn in scenario.turns:
        if "dtmf" in turn:
            number += len(str(turn["dtmf"]))  # each key is a user turn of its own
        else:
            number += 1
        heard = turn.get("transcript") or turn.get("say")
        if ("say" in turn or "wav" in turn) and heard:
            rules.append({"turn": number, "transcript": heard, "match": NEVER})
        if "barge_in" in turn:
            number += 1
            said = turn["barge_in"].get("say") or DEFAULT_BARGE_IN
            rules.append({"turn": number, "transcript": said, "match": NEVER})
        talk = turn.get("talk_over")
        if talk is not None and len(str(talk.get("say") or "").split()) > BACKCHANNEL_WORDS:
            # a GPT-Live talk-over of more words than a backchannel is an interruption: the
            # emulator yields to it (gl-yield) and it is a caller turn of its own
            number += 1
            rules.append({"turn": number, "transcript": talk["say"], "match": NEVER})
    caller = scenario.data.get("caller") or {}
    for n, line in enumerate(caller.get("script") or [], start=1):
        # a caller that speaks (tier audio) is heard by its script's lines
        rules.append({"turn": n, "transcript": str(line), "match": NEVER})
    if rules:
        script["turns"] = rules
    return script


DEFAULT_BARGE_IN = "wait a moment"
#: a caller's utterance of at most this many words over a reply is a backchannel (docs/gpt-live.md)
BACKCHANNEL_WORDS = 3
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}


def image_mime(name: str) -> str | None:
    """The MIME type an ``image:`` turn sends, from the file name; None if not an image."""
    return IMAGE_TYPES.get(Path(name).suffix.lower())


def dtmf_line(key: str) -> str:
    """A pressed key as the user turn a phone edge gives the session (runner.serve.telephony)."""
    return f"[DTMF] {key.upper()}"


# --- vlrun check ------------------------------------------------------------------------------


def check_file(path: Path, options: Any = None) -> list[Problem]:
    """`vlrun check` for a scenario file (or an emulator model script, which also has `turns:`)."""
    try:
        src = yamlsrc.load_file(path)
    except ProfileError as exc:
        return list(exc.all_problems)
    data = src.data
    if isinstance(data, dict) and not {"scenario", "scenarios", "profile"} & set(data):
        return _check_model_script(path)
    _, problems = analyse_file(path)
    return problems


def _check_model_script(path: Path) -> list[Problem]:
    from runner.emulator.model import ScriptError, load_script

    try:
        load_script(path)
    except ScriptError as exc:
        return list(exc.all_problems)
    return []
