"""The HTML report of `vlrun test`: one self-contained file a person can read.

Per scenario: its pass rate over repeats, and per run the failures, the judge's verdicts with
their reasons (and the prompt that got them), latency per turn, the transcript, and the
conversation as a picture on a time axis: the browser console's drawing
(``runner/scenarios/static/timeline.js``, inlined). At the end, the flow coverage.

Everything in a record is untrusted (a caller's words, a tool's output, a model's reply): text
is masked (:func:`runner.redact.redact`) and HTML-escaped; the drawing's data travels as JSON
in a ``<script type="application/json">`` with ``<``, ``>`` and ``&`` escaped, and is drawn
with ``textContent`` only. The page loads nothing: a Content-Security-Policy allows no
network and runs only its own script (by hash).

:func:`timeline_of` turns a run's events (the Observer's, or a trace's) into the drawing's
model; a ``results.jsonl`` record carries it under ``timeline``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runner.errors import OutputError
from runner.redact import clean, redact

STATIC = Path(__file__).resolve().parent / "static"
MAX_ITEMS = 400  # per kind in a drawing, as the console keeps (the latest part)
TYPED_MARK_MS = 400  # a typed turn is a short marker where it was sent, as in the console
_AUDIO_PLACEHOLDER = re.compile(r"^<(\d+) chars audio>$")


# --- the drawing's model -----------------------------------------------------------------------


def timeline_of(
    events: Iterable[tuple[float, str, Mapping[str, Any]]],
    *,
    speed: float = 1.0,
    rate: int = 24000,
    start_node: str | None = None,
) -> dict[str, Any]:
    """The model ``drawTimeline`` draws, from ``(seconds, "in"|"out", event)`` in order.

    ``speed`` maps the events' clock onto the emulator's (a scenario at speed 4 runs its
    seconds four times faster); ``rate`` is the output audio's sample rate (PCM16), to turn
    audio deltas (base64, or a trace's ``<N chars audio>``) into milliseconds; ``start_node``
    marks the flow's first node at 0."""
    t0: float | None = None
    speech: list[dict[str, Any]] = []
    replies: dict[str, dict[str, Any]] = {}
    tools: dict[str, dict[str, Any]] = {}
    nodes: list[dict[str, Any]] = [{"t": 0.0, "name": start_node}] if start_node else []
    latencies: list[dict[str, Any]] = []
    barges: list[float] = []
    waiting: float | None = None  # when the caller's turn ended, until the first audio
    last = 0.0
    for seconds, direction, event in events:
        if t0 is None:
            t0 = seconds
        t = round((seconds - t0) * 1000 * speed, 1)
        last = max(last, t)
        kind = event.get("type")
        if direction == "in":
            if kind == "input_audio_buffer.speech_started":
                speech.append(_speech(event.get("item_id"), t, None, "", typed=False))
            elif kind == "input_audio_buffer.speech_stopped":
                item = event.get("item_id")
                for s in reversed(speech):
                    if s["end"] is None and (not item or not s["item"] or s["item"] == item):
                        s["end"] = t
                        break
                waiting = t
            elif kind == "conversation.item.input_audio_transcription.completed":
                for s in speech:
                    if s["item"] and s["item"] == event.get("item_id"):
                        s["text"] = _text(event.get("transcript"))
            elif kind in ("response.audio.delta", "response.text.delta"):
                item = str(event.get("item_id") or "")
                reply = replies.get(item)
                if reply is None:
                    reply = replies[item] = {
                        "item": item,
                        "start": t,
                        "receivedMs": 0.0,
                        "playStart": t,
                        "playedMs": 0.0,
                        "cutMs": None,
                        "text": "",
                    }
                if kind == "response.audio.delta":
                    reply["receivedMs"] += _audio_ms(event.get("delta"), rate)
                    if reply["cutMs"] is None:
                        reply["playedMs"] = reply["receivedMs"]
                if waiting is not None:
                    latencies.append({"t": t, "ms": round(t - waiting, 1)})
                    waiting = None
            elif kind in ("response.audio_transcript.done", "response.text.done"):
                reply = replies.get(str(event.get("item_id") or ""))
                if reply is not None:
                    reply["text"] = _text(event.get("transcript") or event.get("text"))
            elif kind == "response.function_call_arguments.done":
                tools[str(event.get("call_id"))] = {
                    "name": _text(event.get("name")),
                    "start": t,
                    "duration": None,
                    "ok": None,
                    "mocked": False,
                }
        elif direction == "out":
            if kind == "conversation.item.create":
                item = event.get("item") or {}
                if not isinstance(item, Mapping):
                    continue
                if item.get("type") == "message" and item.get("role") == "user":
                    said = " ".join(
                        str(c.get("text") or "")
                        for c in item.get("content") or []
                        if isinstance(c, Mapping)
                    ).strip()
                    speech.append(_speech(item.get("id"), t, t + TYPED_MARK_MS, said, typed=True))
                    waiting = t
                elif item.get("type") == "function_call_output":
                    call = tools.get(str(item.get("call_id")))
                    if call is None or call["duration"] is not None:
                        continue
                    answer = _json_object(item.get("output"))
                    call["duration"] = round(t - call["start"], 1)
                    call["ok"] = not (answer is not None and "error" in answer)
                    step = answer.get("next_step") if answer is not None else None
                    if str(call["name"]).startswith("record_") and isinstance(step, str):
                        nodes.append({"t": t, "name": _text(step)})
            elif kind == "conversation.item.truncate":
                reply = replies.get(str(event.get("item_id") or ""))
                if reply is not None:
                    cut = float(event.get("audio_end_ms") or 0)
                    reply["cutMs"] = cut
                    reply["playedMs"] = min(cut, reply["receivedMs"])
            elif kind == "response.cancel":
                barges.append(t)
    return {
        "speech": speech[-MAX_ITEMS:],
        "replies": list(replies.values())[-MAX_ITEMS:],
        "tools": list(tools.values())[-MAX_ITEMS:],
        "nodes": nodes[-MAX_ITEMS:],
        "latencies": latencies[-MAX_ITEMS:],
        "barges": barges[-MAX_ITEMS:],
        "lastT": last,
    }


def timeline_of_trace(path: Path, **options: Any) -> dict[str, Any]:
    """:func:`timeline_of` for a JSONL trace (``vlrun run --trace``, ``vlrun test --record``,
    ``vlrun serve``'s ``*.trace.jsonl``); lines that are not events are skipped."""
    events = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(raw)
        except ValueError:
            continue
        if (
            isinstance(rec, dict)
            and rec.get("dir") in ("in", "out")
            and isinstance(rec.get("event"), dict)
        ):
            events.append((float(rec.get("t") or 0.0), str(rec["dir"]), rec["event"]))
    return timeline_of(events, **options)


def _speech(
    item: Any, start: float, end: float | None, text: str, *, typed: bool
) -> dict[str, Any]:
    return {
        "item": str(item) if item else None,
        "start": start,
        "end": end,
        "text": _text(text),
        "typed": typed,
    }


def _audio_ms(delta: Any, rate: int) -> float:
    if not isinstance(delta, str):
        return 0.0
    m = _AUDIO_PLACEHOLDER.match(delta)
    chars = int(m.group(1)) if m else len(delta)
    pad = 0 if m else len(delta) - len(delta.rstrip("="))
    return (chars * 3 // 4 - pad) / 2 / max(rate, 1) * 1000


def _text(value: Any) -> str:
    return redact(str(value)) if value is not None else ""


def _json_object(text: Any) -> dict[str, Any] | None:
    if isinstance(text, Mapping):
        return dict(text)
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


# --- a results.jsonl record ----------------------------------------------------------------------


def result_record(
    result: Any,
    *,
    profile: str | None = None,
    repeat: int | None = None,
    timeline: Mapping[str, Any] | None = None,
    judge: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """One ``results.jsonl`` line from a ScenarioResult, with the keys this report and
    :meth:`runner.scenarios.coverage.FlowWalk.from_result` read (masked)."""
    record: dict[str, Any] = {
        "name": result.name,
        "file": str(result.path),
        "profile": profile,
        "repeat": repeat,
        "passed": bool(result.passed),
        "error": result.error,
        "duration_s": round(float(result.duration_s), 3),
        "failures": [
            {"location": f.location, "message": f.message, "turn": f.turn} for f in result.failures
        ],
        "turns": [
            {
                "index": t.index,
                "reply": t.reply,
                "first_audio_ms": t.first_audio_ms,
                "tool_silence_ms": t.tool_silence_ms,
                "errors": list(t.errors),
                "tool_calls": [
                    {"name": c.name, "arguments": c.arguments, "output": c.output, "ok": c.ok}
                    for c in t.tool_calls
                ],
            }
            for t in result.turns
        ],
        "lines": [[n, text] for n, text in result.lines],
        "judge": [dict(v) for v in judge],
    }
    if timeline is not None:
        record["timeline"] = dict(timeline)
    masked: dict[str, Any] = _masked(record)
    return masked


def _masked(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _masked(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_masked(v) for v in obj]
    if isinstance(obj, str):
        return redact(obj)
    return obj


# --- the page ----------------------------------------------------------------------------------


def write_html_report(
    records: Sequence[Mapping[str, Any]],
    path: Path,
    coverage: Any = None,
) -> None:
    """Write the report of ``records`` (the lines of ``results.jsonl``) to ``path``.

    ``coverage`` is a :class:`~runner.scenarios.coverage.CoverageReport`, a mapping of them
    (by profile), or None."""
    page = render_html_report(records, coverage)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise OutputError(
            f"cannot write the HTML report {path}: {exc.strerror or exc}",
            hint="choose another path for the report",
        ) from None


def render_html_report(records: Sequence[Mapping[str, Any]], coverage: Any = None) -> str:
    """The report's HTML text (see :func:`write_html_report`)."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for record in records:
        if isinstance(record, Mapping):
            groups.setdefault((_file(record), _name(record)), []).append(record)
    timelines: list[Any] = []
    body: list[str] = []
    runs = sum(len(g) for g in groups.values())
    passed = sum(1 for g in groups.values() for r in g if _passed(r))
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body.append("<header><h1>vlrun test report</h1>")
    body.append(
        f'<p class="summary" id="summary">{runs} run(s) of {len(groups)} scenario(s): '
        f"{passed} passed, {runs - passed} failed. {_e(stamp)}.</p></header>"
    )
    body.append(_overview(groups))
    for n, ((file, name), group) in enumerate(groups.items()):
        body.append(_scenario(n, file, name, group, timelines))
    body.append(_coverage_section(coverage))
    script = _script()
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        f"script-src 'sha256-{digest}'"
    )
    css = (STATIC / "timeline.css").read_text(encoding="utf-8") + _PAGE_CSS
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(policy)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>vlrun test report</title>\n"
        f"<style>{css}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + '\n<script type="application/json" id="timelines">'
        + _json_for_script(timelines)
        + "</script>\n"
        + f'<script type="module">{script}</script>\n</body></html>\n'
    )


def _script() -> str:
    source = (STATIC / "timeline.js").read_text(encoding="utf-8")
    code = source + _BOOT
    if "</script" in code.lower():  # it would end the element early
        raise AssertionError("timeline.js must not contain '</script'")
    return code


# Draws each picture once the page is laid out; says how many it drew (tests read it).
_BOOT = """
const models = JSON.parse(document.getElementById("timelines").textContent);
let drawn = 0;
const errors = [];
for (const svg of document.querySelectorAll("svg[data-timeline]")) {
  try {
    const model = models[Number(svg.dataset.timeline)];
    const box = svg.parentElement;
    drawTimeline(svg, model, { avail: box.clientWidth || 800, now: model.lastT, running: false });
    drawn += 1;
  } catch (err) {
    errors.push(String(err));
  }
}
window.vlrunReport = { drawn, errors };
document.body.dataset.drawn = String(drawn);
"""


def _json_for_script(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _e(value: Any) -> str:
    """Masked, control characters shown, HTML-escaped."""
    return html.escape(clean(redact(str(value))), quote=True)


def _name(record: Mapping[str, Any]) -> str:
    return str(record.get("name") or record.get("scenario") or "(unnamed scenario)")


def _file(record: Mapping[str, Any]) -> str:
    return str(record.get("file") or record.get("path") or "")


def _passed(record: Mapping[str, Any]) -> bool:
    if "passed" in record:
        return bool(record["passed"])
    return not record.get("failures") and not record.get("error")


def _rate(group: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    return sum(1 for r in group if _passed(r)), len(group)


def _verdicts(record: Mapping[str, Any]) -> list[tuple[int | None, Mapping[str, Any]]]:
    out: list[tuple[int | None, Mapping[str, Any]]] = []
    for v in record.get("judge") or record.get("verdicts") or []:
        if isinstance(v, Mapping):  # `turn`: the turn it judged, None for the conversation
            turn = v.get("turn")
            out.append((turn if isinstance(turn, int) and not isinstance(turn, bool) else None, v))
    for i, turn in enumerate(record.get("turns") or []):
        if not isinstance(turn, Mapping):
            continue
        for v in turn.get("judge") or turn.get("verdicts") or []:
            if isinstance(v, Mapping):
                out.append((int(turn.get("index", i)), v))
    return out


def _latencies(record: Mapping[str, Any]) -> list[float]:
    return [
        float(t["first_audio_ms"])
        for t in record.get("turns") or []
        if isinstance(t, Mapping) and isinstance(t.get("first_audio_ms"), int | float)
    ]


def _overview(groups: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]]) -> str:
    rows = []
    for n, ((file, name), group) in enumerate(groups.items()):
        ok, total = _rate(group)
        flaky = 0 < ok < total
        status = "pass" if ok == total else ("flaky" if flaky else "fail")
        lat = [ms for r in group for ms in _latencies(r)]
        median = f"{statistics.median(lat):.0f} ms" if lat else "–"
        rows.append(
            f'<tr data-status="{status}"><td><a href="#s{n}">{_e(name)}</a></td>'
            f"<td><code>{_e(file)}</code></td><td>{ok}/{total} ({ok / total:.0%})</td>"
            f'<td class="status {status}">{status}</td><td>{median}</td></tr>'
        )
    return (
        '<section id="overview"><h2>Scenarios</h2><table><thead><tr><th>scenario</th>'
        "<th>file</th><th>passed</th><th>status</th><th>median first audio</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _scenario(
    n: int, file: str, name: str, group: Sequence[Mapping[str, Any]], timelines: list[Any]
) -> str:
    ok, total = _rate(group)
    parts = [
        f'<section class="scenario" id="s{n}" data-passed="{ok}" data-runs="{total}">',
        f"<h2>{_e(name)}</h2>",
        f'<p class="meta"><code>{_e(file)}</code> · passed {ok} of {total} run(s) '
        f'(<span class="rate">{ok / total:.0%}</span>)'
        + (' · <strong class="flaky">flaky</strong>' if 0 < ok < total else "")
        + "</p>",
    ]
    for k, record in enumerate(group):
        parts.append(_run(record, k, total, timelines))
    parts.append("</section>")
    return "\n".join(parts)


def _run(record: Mapping[str, Any], k: int, total: int, timelines: list[Any]) -> str:
    good = _passed(record)
    status = "pass" if good else ("error" if record.get("error") else "fail")
    repeat = record.get("repeat")
    label = f"run {int(repeat) + 1 if isinstance(repeat, int) else k + 1} of {total}"
    duration = record.get("duration_s")
    took = f", {float(duration):.1f} s" if isinstance(duration, int | float) else ""
    open_ = " open" if k == 0 or not good else ""
    out = [
        f'<details class="run" data-status="{status}"{open_}>',
        f'<summary><span class="status {status}">{status.upper()}</span> {_e(label)}{took}'
        "</summary>",
    ]
    if record.get("error"):
        out.append(f'<p class="error">could not run: {_e(record["error"])}</p>')
    failures = record.get("failures") or []
    if failures:
        items = "".join(f"<li>{_e(_failure(f))}</li>" for f in failures)
        out.append(f'<ul class="failures">{items}</ul>')
    model = record.get("timeline")
    if isinstance(model, Mapping):
        timelines.append(_masked(model))  # the drawing's data holds the words said too
        out.append(
            '<div class="picture"><svg class="timeline" role="img" '
            f'aria-label="the conversation on a time axis" data-timeline="{len(timelines) - 1}" '
            'xmlns="http://www.w3.org/2000/svg"></svg></div>'
        )
    else:
        out.append('<p class="note">No timeline was recorded for this run.</p>')
    verdicts = _verdicts(record)
    if verdicts:
        out.append(_judge(verdicts))
    turns = [t for t in record.get("turns") or [] if isinstance(t, Mapping)]
    if turns:
        out.append(_turns(turns, record.get("lines") or []))
    lines = record.get("lines") or []
    if lines:
        shown = "\n".join(_e(_line_text(line)) for line in lines)
        out.append(
            f'<details class="transcript"><summary>transcript</summary><pre>{shown}</pre></details>'
        )
    out.append("</details>")
    return "\n".join(out)


def _failure(f: Any) -> str:
    if isinstance(f, Mapping):
        where = f.get("location") or (
            f"{f.get('file')}:{f.get('line')}" if f.get("line") else f.get("file")
        )
        return f"{where}: {f.get('message')}" if where else str(f.get("message"))
    return str(f)


def _line_text(line: Any) -> str:
    if isinstance(line, list | tuple) and len(line) == 2:
        return str(line[1])
    return str(line)


def _judge(verdicts: Sequence[tuple[int | None, Mapping[str, Any]]]) -> str:
    rows = []
    for turn, v in verdicts:
        passed = v.get("passed")
        if passed is None:
            passed = v.get("verdict") in (True, "pass", "passed", "yes")
        verdict = "pass" if passed else "fail"
        where = f"turn {turn + 1}" if turn is not None else "conversation"
        prompt = v.get("prompt")
        shown = (
            "\n".join(
                f"{m.get('role')}: {m.get('content')}" if isinstance(m, Mapping) else str(m)
                for m in prompt
            )
            if isinstance(prompt, list)
            else str(prompt or "")
        )
        model = v.get("model")
        rows.append(
            f'<tr data-verdict="{verdict}"><td>{_e(where)}</td><td>{_e(v.get("rubric") or "")}'
            + (f'<div class="model">{_e(v["where"])}</div>' if v.get("where") else "")
            + "</td>"
            f'<td class="status {verdict}">{verdict}</td><td class="reason">'
            f"{_e(v.get('reason') or '')}"
            + (f'<div class="model">judged by {_e(model)}</div>' if model else "")
            + (
                f"<details><summary>prompt</summary><pre>{_e(shown)}</pre></details>"
                if shown
                else ""
            )
            + "</td></tr>"
        )
    return (
        '<table class="judge"><caption>judge</caption><thead><tr><th>where</th><th>rubric</th>'
        f"<th>verdict</th><th>reason</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _turns(turns: Sequence[Mapping[str, Any]], lines: Sequence[Any]) -> str:
    said: dict[int, list[str]] = {}
    for line in lines:
        if isinstance(line, list | tuple) and len(line) == 2 and str(line[1]).startswith("you: "):
            said.setdefault(int(line[0]), []).append(str(line[1])[5:])
    rows = []
    for i, t in enumerate(turns):
        index = int(t.get("index", i))
        caller = t.get("user") or t.get("said") or " ".join(said.get(index, []))
        calls = ", ".join(
            str(c.get("name")) + ("" if c.get("ok") is not False else " (failed)")
            for c in t.get("tool_calls") or []
            if isinstance(c, Mapping)
        )
        rows.append(
            f"<tr><td>{index + 1}</td><td>{_e(caller)}</td><td>{_e(t.get('reply') or '')}</td>"
            f'<td class="num">{_ms(t.get("first_audio_ms"))}</td>'
            f'<td class="num">{_ms(t.get("tool_silence_ms"))}</td><td>{_e(calls)}</td></tr>'
        )
    return (
        '<table class="turns"><caption>turns and latency</caption><thead><tr><th>#</th>'
        "<th>caller</th><th>reply</th><th>first audio</th><th>silence while a tool ran</th>"
        f"<th>tools</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _ms(value: Any) -> str:
    return f"{float(value):.0f} ms" if isinstance(value, int | float) else "–"


def _coverage_section(coverage: Any) -> str:
    if coverage is None:
        return ""
    reports = list(coverage.values()) if isinstance(coverage, Mapping) else [coverage]
    parts = ['<section id="coverage"><h2>Flow coverage</h2>']
    for report in reports:
        data = report.to_dict()
        kinds = ", ".join(
            f"{k}: {v['covered']}/{v['total']}" for k, v in data["kinds"].items() if v["total"]
        )
        parts.append(
            f'<div class="coverage" data-ratio="{data["ratio"]}"><h3>{_e(data["title"] or "flow")}'
            f" — {report.ratio:.0%}</h3><p>{_e(kinds)}; {data['walks']} run(s)</p>"
        )
        rows = []
        for item in data["items"]:
            state = "covered" if item["covered"] else "missing"
            if item["covered"]:
                detail = f"{item['count']}× — " + ", ".join(item["covered_by"])
            else:
                route = " ".join(item["path"]) if item["path"] else "no path from the start"
                detail = f"path: {route}" + (f"; then {item['how']}" if item["how"] else "")
            rows.append(
                f'<tr data-state="{state}"><td>{_e(item["kind"])}</td><td>{_e(item["label"])}'
                f'</td><td class="status {state}">{state}</td><td>{_e(detail)}</td></tr>'
            )
        parts.append(
            "<table><thead><tr><th>kind</th><th>item</th><th>state</th><th>detail</th></tr>"
            f"</thead><tbody>{''.join(rows)}</tbody></table>"
        )
        for note in data["notes"]:
            parts.append(f'<p class="note">{_e(note)}</p>')
        parts.append("</div>")
    parts.append("</section>")
    return "\n".join(parts)


_PAGE_CSS = """
:root { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #16181d; background: #f4f5f7; }
body { margin: 0 auto; padding: 1rem; max-width: 1200px; }
section { background: #fff; border: 1px solid #d8dbe1; border-radius: 8px; padding: .8rem;
  margin: .8rem 0; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; }
th, td { border-bottom: 1px solid #e5e7eb; padding: .25rem .4rem; text-align: left;
  vertical-align: top; overflow-wrap: anywhere; }
caption { text-align: left; font-weight: 600; }
.num { text-align: right; white-space: nowrap; }
.status { white-space: nowrap; }
.status.pass, .status.covered { color: #15803d; font-weight: 600; }
.status.fail, .status.error, .status.missing { color: #b91c1c; font-weight: 600; }
.status.flaky, .flaky { color: #a16207; font-weight: 600; }
.picture { overflow-x: auto; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #f8f9fb; padding: .4rem; }
.note, .meta, .model { color: #5b6270; }
.failures { color: #b91c1c; }
"""
