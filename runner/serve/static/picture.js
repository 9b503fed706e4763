// The conversation on one time axis: the caller's speech, the assistant's audio (played, not
// heard, cut), tool calls with their duration, flow nodes and each turn's latency. Times are
// the server's t_ms (the page's own audio reports are mapped onto that clock). Everything is
// built with createElementNS and textContent: server text is never parsed as markup.
const NS = "http://www.w3.org/2000/svg";
const LANES = [["caller", "Caller"], ["assistant", "Assistant"], ["tools", "Tools"], ["flow", "Flow"]];
const LEFT = 78, RIGHT = 96, TOP = 22, LANE = 40, BAR = 18;  // RIGHT: room for labels
const MAX_ITEMS = 400;       // per kind: a long conversation keeps its latest part

export class Picture {
  constructor(svg, scroller, empty) {
    this.svg = svg;
    this.scroller = scroller;
    this.empty = empty;
    this.dirty = false;
    this.tick = null;
    this.reset();
  }

  reset() {
    this.offset = null;        // performance.now() - server t_ms (its smallest sample)
    this.speech = [];          // {item, start, end, text, typed}
    this.replies = new Map();  // item -> {item, start, receivedMs, playStart, playedMs, cutMs, text}
    this.tools = new Map();    // call_id -> {name, start, duration, ok, mocked}
    this.nodes = [];           // {t, name}
    this.latencies = [];       // {t, ms}
    this.barges = [];          // t
    this.lastT = 0;
    this.running = false;
    this.changed();
  }

  // ---- the server's clock
  stamp(tMs) {
    if (typeof tMs !== "number") return;
    const off = performance.now() - tMs;
    if (this.offset === null || off < this.offset) this.offset = off;
    this.seen(tMs);
  }
  now() { return this.offset === null ? 0 : performance.now() - this.offset; }
  seen(t) { if (t > this.lastT) this.lastT = t; }

  // ---- what happened
  speechStarted(t, item) {
    this.speech.push({ item, start: t, end: null, text: "", typed: false });
    trim(this.speech);
    this.seen(t); this.changed();
  }
  speechStopped(t, item) {
    const s = [...this.speech].reverse().find((x) => x.end === null && (!item || !x.item || x.item === item));
    if (s) s.end = t;
    this.seen(t); this.changed();
  }
  userText(t, item, text) {
    const s = this.speech.find((x) => x.item && x.item === item);
    if (s) s.text = text;
    else {
      // typed (or a transcript with no VAD segment): a short marker where it was said
      this.speech.push({ item, start: t, end: t + 400, text, typed: true });
      trim(this.speech);
    }
    this.seen(t); this.changed();
  }
  replyStarted(t, item) {
    if (!this.replies.has(item)) {
      this.replies.set(item, { item, start: t, receivedMs: 0, playStart: null, playedMs: 0, cutMs: null, text: "" });
      trimMap(this.replies);
    }
    this.seen(t); this.changed();
  }
  replyAudio(item, ms) {
    const r = this.replies.get(item);
    if (r) { r.receivedMs += ms; this.changed(); }
  }
  replyText(item, text, interrupted) {
    const r = this.replies.get(item);
    if (r) { r.text = text; r.interrupted = interrupted; this.changed(); }
  }
  played(item, ms) {
    const r = this.replies.get(item);
    if (!r || r.cutMs !== null) return;
    if (r.playStart === null && ms > 0) r.playStart = this.now() - ms;
    r.playedMs = Math.max(r.playedMs, ms);
    this.seen(this.now()); this.changed();
  }
  cut(item, ms) {
    const r = this.replies.get(item);
    if (!r) return;
    r.cutMs = ms;
    r.playedMs = ms;
    if (r.playStart === null) r.playStart = this.now() - ms;
    this.changed();
  }
  toolCall(t, id, name) {
    this.tools.set(id, { name, start: t, duration: null, ok: null, mocked: false });
    trimMap(this.tools);
    this.seen(t); this.changed();
  }
  toolResult(t, id, ok, durationMs, mocked) {
    const c = this.tools.get(id);
    if (!c) return;
    c.ok = ok; c.duration = durationMs; c.mocked = mocked;
    if (typeof t === "number") c.start = Math.min(c.start, t - durationMs);
    this.changed();
  }
  node(t, name) { this.nodes.push({ t, name }); trim(this.nodes); this.seen(t); this.changed(); }
  latency(t, ms) { this.latencies.push({ t, ms }); trim(this.latencies); this.seen(t); this.changed(); }
  bargeIn(t) { this.barges.push(t); trim(this.barges); this.seen(t); this.changed(); }

  // ---- drawing (at most once a frame)
  changed() {
    if (this.dirty) return;
    this.dirty = true;
    requestAnimationFrame(() => { this.dirty = false; this.draw(); });
  }

  draw() {
    const svg = this.svg;
    const any = this.speech.length || this.replies.size || this.tools.size || this.nodes.length;
    this.empty.hidden = Boolean(any);
    const end = Math.max(this.lastT, this.running ? this.now() : 0, 1000);
    const start = this.firstT();
    const span = Math.max(end - start, 1000) + 500;
    const avail = Math.max(this.scroller.clientWidth - LEFT - RIGHT, 200);
    // Fit the whole conversation while a second is at least 24 px; past that it scrolls.
    const pxPerMs = Math.max(avail / span, 0.024);
    const width = LEFT + span * pxPerMs + RIGHT;
    const height = TOP + LANES.length * LANE + 6;
    const x = (t) => LEFT + (t - start) * pxPerMs;
    const lane = (name) => TOP + LANES.findIndex(([n]) => n === name) * LANE + (LANE - BAR) / 2;
    const atEnd = this.scroller.scrollLeft + this.scroller.clientWidth >= this.scroller.scrollWidth - 4;
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
    for (const s of this.speech) {
      const s1 = s.end ?? Math.max(this.now(), s.start + 100);
      const rect = bar(x(s.start), lane("caller"), x(s1) - x(s.start), s.typed ? "speech-typed" : "speech");
      rect.dataset.kind = s.typed ? "typed" : "speech";
      titled(rect, `${s.typed ? "typed" : "caller"}: ${s.text || "(speech)"} — ${fmtMs(s1 - s.start)}`);
      g.push(rect);
      if (s.text && x(s1) - x(s.start) > 40) {
        g.push(clipText(s.text, x(s.start) + 4, lane("caller") + BAR - 5, x(s1) - x(s.start) - 8, s.typed ? "bar-text dark" : "bar-text"));
      }
    }
    // the assistant's audio: what arrived (pale), what was played (solid), where it was cut
    for (const r of this.replies.values()) {
      const t0 = r.playStart ?? r.start;
      const y = lane("assistant");
      // Cut off: the part never heard is a thin pale strip, so the next reply shows over it.
      const got = r.cutMs === null
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
      if (r.cutMs !== null) {
        const cx = x(t0 + r.cutMs);
        const line = el("line", { x1: cx, x2: cx, y1: y - 4, y2: y + BAR + 4, class: "cut" });
        line.dataset.kind = "cut";
        titled(line, `cut at ${fmtMs(r.cutMs)} (barge-in); the truncate says what was heard`);
        g.push(line, text(`cut at ${fmtMs(r.cutMs)}`, { x: cx + 3, y: y + BAR + 11, class: "cut-label" }));
      }
    }
    // latency: end of speech to first audio, drawn between the caller's and the assistant's lanes
    for (const l of this.latencies) {
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
    for (const c of this.tools.values()) {
      const dur = c.duration ?? Math.max(this.now() - c.start, 50);
      const w = Math.max(dur * pxPerMs, 3);
      const rect = bar(x(c.start), lane("tools"), w, c.ok === false ? "tool failed" : "tool");
      rect.dataset.kind = "tool";
      const state = c.ok === null ? "running…" : `${c.ok ? "" : "failed, "}${dur.toFixed(0)} ms${c.mocked ? ", mocked" : ""}`;
      titled(rect, `${c.name}: ${state}`);
      const label = `${c.name} ${state}`;
      g.push(rect, text(label, { x: place("tools", x(c.start) + w + 3, label), y: lane("tools") + BAR - 5, class: "tool-label" }));
    }
    // flow nodes
    for (const n of this.nodes) {
      const y = lane("flow");
      const line = el("line", { x1: x(n.t), x2: x(n.t), y1: y, y2: y + BAR, class: "node" });
      line.dataset.kind = "node";
      titled(line, `flow: now in ${n.name}`);
      g.push(line, text(n.name, { x: place("flow", x(n.t) + 3, n.name), y: y + BAR - 5, class: "node-label" }));
    }
    for (const t of this.barges) {
      const line = el("line", { x1: x(t), x2: x(t), y1: TOP, y2: height - 4, class: "barge" });
      line.dataset.kind = "barge";
      titled(line, "barge-in");
      g.push(line);
    }
    if (this.running) {
      g.push(el("line", { x1: x(this.now()), x2: x(this.now()), y1: TOP, y2: height - 4, class: "now" }));
    }
    svg.setAttribute("width", String(Math.ceil(width)));
    svg.setAttribute("height", String(height));
    svg.setAttribute("viewBox", `0 0 ${Math.ceil(width)} ${height}`);
    svg.replaceChildren(...g);
    if (atEnd) this.scroller.scrollLeft = this.scroller.scrollWidth;
    // While it runs, the "now" line and open segments move on (four times a second).
    if (this.running && !this.tick) this.tick = setTimeout(() => { this.tick = null; this.changed(); }, 250);
  }

  firstT() {
    const ts = [
      ...this.speech.map((s) => s.start), ...[...this.replies.values()].map((r) => r.playStart ?? r.start),
      ...[...this.tools.values()].map((c) => c.start), ...this.nodes.map((n) => n.t),
      ...this.latencies.map((l) => l.t - l.ms),
    ];
    // A long conversation shows its latest part (the items it keeps).
    return ts.length ? Math.max(0, Math.min(...ts) - 300) : 0;
  }

  // what the page drew, for tests and the curious
  summary() {
    return {
      speech: this.speech.length, replies: [...this.replies.values()].map((r) => ({
        item: r.item, receivedMs: r.receivedMs, playedMs: r.playedMs, cutMs: r.cutMs })),
      tools: [...this.tools.values()], nodes: this.nodes, latencies: this.latencies,
    };
  }
}

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
function fmtMs(ms) { return ms >= 10000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`; }
function tickStep(span, px) {
  for (const s of [100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000, 300000]) if (span / s <= px / 70) return s;
  return 600000;
}
function trim(list) { if (list.length > MAX_ITEMS) list.splice(0, list.length - MAX_ITEMS); }
function trimMap(map) { while (map.size > MAX_ITEMS) map.delete(map.keys().next().value); }
