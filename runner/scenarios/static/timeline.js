// The conversation on one time axis, shared by the browser console (vlrun serve) and the HTML
// report of `vlrun test`: the caller's speech, the assistant's audio (played, not heard, cut),
// tool calls with their duration, flow nodes, each turn's latency and barge-ins.
//
// drawTimeline(svg, model, view) draws `model` into `svg` and returns its size. It keeps no
// state: the console's Picture holds what happened so far and calls it once a frame; the
// report calls it once per scenario with the model vlrun recorded. Times are milliseconds on
// one clock (the server's t_ms, or the scenario's emulator clock). Everything is built with
// createElementNS and textContent: no text in the model is ever parsed as markup.
//
// model: {
//   speech:    [{item, start, end, text, typed}],     end null: still speaking
//   replies:   [{item, start, receivedMs, playStart, playedMs, cutMs, text}],
//   tools:     [{name, start, duration, ok, mocked}], duration null: still running
//   nodes:     [{t, name}],  latencies: [{t, ms}],  barges: [t],
//   lastT:     the latest time seen }
// view: { avail: px available for the axis, now: the current time (ms), running: bool }
const NS = "http://www.w3.org/2000/svg";
export const LANES = [["caller", "Caller"], ["assistant", "Assistant"], ["tools", "Tools"], ["flow", "Flow"]];
const LEFT = 78, RIGHT = 96, TOP = 22, LANE = 40, BAR = 18;  // RIGHT: room for labels

export function drawTimeline(svg, model, view = {}) {
  const speech = model.speech ?? [], replies = model.replies ?? [], tools = model.tools ?? [];
  const nodes = model.nodes ?? [], latencies = model.latencies ?? [], barges = model.barges ?? [];
  const running = Boolean(view.running);
  const now = typeof view.now === "number" ? view.now : 0;
  const end = Math.max(model.lastT ?? 0, running ? now : 0, 1000);
  const start = firstT(model);
  const span = Math.max(end - start, 1000) + 500;
  const avail = Math.max((view.avail ?? 800) - LEFT - RIGHT, 200);
  // Fit the whole conversation while a second is at least 24 px; past that it scrolls.
  const pxPerMs = Math.max(avail / span, 0.024);
  const width = LEFT + span * pxPerMs + RIGHT;
  const height = TOP + LANES.length * LANE + 6;
  const x = (t) => LEFT + (t - start) * pxPerMs;
  const lane = (name) => TOP + LANES.findIndex(([n]) => n === name) * LANE + (LANE - BAR) / 2;
  const g = [];
  // Labels in a lane never overlap: one that would starts after the one before it.
  const labelEnd = new Map();
  const place = (laneName, want, content) => {
    const at = Math.max(want, (labelEnd.get(laneName) ?? -Infinity) + 6);
    labelEnd.set(laneName, at + content.length * 6);
    return at;
  };

  // axis and lanes
  const axis = el("g", { class: "axis" });
  const step = tickStep(span, avail);
  for (let t = Math.ceil(start / step) * step; t <= start + span; t += step) {
    axis.append(el("line", { x1: x(t), x2: x(t), y1: TOP - 4, y2: height - 4, class: "grid" }));
    axis.append(text(`${(t / 1000).toFixed(step < 1000 ? 1 : 0)} s`, { x: x(t) + 2, y: TOP - 8 }));
  }
  g.push(axis);
  LANES.forEach(([, label], i) => {
    g.push(text(label, { x: 4, y: TOP + i * LANE + LANE / 2 + 4, class: "lane-name" }));
  });

  // the caller's speech (typed turns pale)
  for (const s of speech) {
    const s1 = s.end ?? Math.max(now, s.start + 100);
    const rect = bar(x(s.start), lane("caller"), x(s1) - x(s.start), s.typed ? "speech-typed" : "speech");
    rect.dataset.kind = s.typed ? "typed" : "speech";
    titled(rect, `${s.typed ? "typed" : "caller"}: ${s.text || "(speech)"} — ${fmtMs(s1 - s.start)}`);
    g.push(rect);
    if (s.text && x(s1) - x(s.start) > 40) {
      g.push(clipText(s.text, x(s.start) + 4, lane("caller") + BAR - 5, x(s1) - x(s.start) - 8, s.typed ? "bar-text dark" : "bar-text"));
    }
  }
  // the assistant's audio: what arrived (pale), what was played (solid), where it was cut
  for (const r of replies) {
    const t0 = r.playStart ?? r.start;
    const y = lane("assistant");
    const cutMs = r.cutMs ?? null;
    // Cut off: the part never heard is a thin pale strip, so the next reply shows over it.
    const got = cutMs === null
      ? bar(x(t0), y, Math.max(r.receivedMs * pxPerMs, 2), "unplayed")
      : el("rect", { x: x(t0), y: y + BAR - 5, width: Math.max(r.receivedMs * pxPerMs, 2), height: 5, class: "unplayed" });
    got.dataset.kind = "received";
    titled(got, `reply ${r.text ? `"${r.text}"` : ""} — ${fmtMs(r.receivedMs)} received`);
    g.push(got);
    if (r.playedMs > 0) {
      const heard = bar(x(t0), y, Math.max(r.playedMs * pxPerMs, 1), "played");
      heard.dataset.kind = "played";
      titled(heard, `played ${fmtMs(r.playedMs)} of ${fmtMs(r.receivedMs)}`);
      g.push(heard);
    }
    if (cutMs !== null) {
      const cx = x(t0 + cutMs);
      const line = el("line", { x1: cx, x2: cx, y1: y - 4, y2: y + BAR + 4, class: "cut" });
      line.dataset.kind = "cut";
      titled(line, `cut at ${fmtMs(cutMs)} (barge-in); the truncate says what was heard`);
      g.push(line, text(`cut at ${fmtMs(cutMs)}`, { x: cx + 3, y: y + BAR + 11, class: "cut-label" }));
    }
  }
  // latency: end of speech to first audio, drawn between the caller's and the assistant's lanes
  for (const l of latencies) {
    const y = lane("assistant") - 4;
    const x0 = x(l.t - l.ms), x1 = Math.max(x(l.t), x0 + 2);
    const line = el("path", { d: `M${x0},${y - 4}V${y}H${x1}V${y - 4}`, class: "latency", fill: "none" });
    line.dataset.kind = "latency";
    titled(line, `end of speech → first audio: ${fmtMs(l.ms)}`);
    const label = text(`${l.ms.toFixed(0)} ms`, { x: x0, y: y - 6, class: "latency-label" });
    label.dataset.kind = "latency-label";
    g.push(line, label);
  }
  // tool calls with their duration
  for (const c of tools) {
    const dur = c.duration ?? Math.max(now - c.start, 50);
    const w = Math.max(dur * pxPerMs, 3);
    const rect = bar(x(c.start), lane("tools"), w, c.ok === false ? "tool failed" : "tool");
    rect.dataset.kind = "tool";
    const state = c.ok === null || c.ok === undefined ? "running…" : `${c.ok ? "" : "failed, "}${dur.toFixed(0)} ms${c.mocked ? ", mocked" : ""}`;
    titled(rect, `${c.name}: ${state}`);
    const label = `${c.name} ${state}`;
    g.push(rect, text(label, { x: place("tools", x(c.start) + w + 3, label), y: lane("tools") + BAR - 5, class: "tool-label" }));
  }
  // flow nodes
  for (const n of nodes) {
    const y = lane("flow");
    const line = el("line", { x1: x(n.t), x2: x(n.t), y1: y, y2: y + BAR, class: "node" });
    line.dataset.kind = "node";
    titled(line, `flow: now in ${n.name}`);
    g.push(line, text(n.name, { x: place("flow", x(n.t) + 3, n.name), y: y + BAR - 5, class: "node-label" }));
  }
  for (const t of barges) {
    const line = el("line", { x1: x(t), x2: x(t), y1: TOP, y2: height - 4, class: "barge" });
    line.dataset.kind = "barge";
    titled(line, "barge-in");
    g.push(line);
  }
  if (running) {
    g.push(el("line", { x1: x(now), x2: x(now), y1: TOP, y2: height - 4, class: "now" }));
  }
  svg.setAttribute("width", String(Math.ceil(width)));
  svg.setAttribute("height", String(height));
  svg.setAttribute("viewBox", `0 0 ${Math.ceil(width)} ${height}`);
  svg.replaceChildren(...g);
  return { width: Math.ceil(width), height };
}

// The earliest time drawn (a little before the first thing that happened).
export function firstT(model) {
  const ts = [
    ...(model.speech ?? []).map((s) => s.start),
    ...(model.replies ?? []).map((r) => r.playStart ?? r.start),
    ...(model.tools ?? []).map((c) => c.start), ...(model.nodes ?? []).map((n) => n.t),
    ...(model.latencies ?? []).map((l) => l.t - l.ms),
  ];
  // A long conversation shows its latest part (the items it keeps).
  return ts.length ? Math.max(0, Math.min(...ts) - 300) : 0;
}

export function fmtMs(ms) { return ms >= 10000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`; }

function el(name, attrs = {}) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}
function text(content, attrs) { const t = el("text", attrs); t.textContent = content; return t; }
function titled(node, content) { const t = el("title"); t.textContent = content; node.append(t); }
function bar(x, y, w, cls) { return el("rect", { x, y, width: Math.max(w, 1), height: BAR, rx: 3, class: cls }); }
function clipText(content, x, y, maxW, cls) {
  const chars = Math.floor(maxW / 6);          // about 6 px a character at 11 px
  const shown = content.length > chars ? `${content.slice(0, Math.max(chars - 1, 1))}…` : content;
  return text(shown, { x, y, class: cls });
}
function tickStep(span, px) {
  for (const s of [100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000, 300000]) if (span / s <= px / 70) return s;
  return 600000;
}
