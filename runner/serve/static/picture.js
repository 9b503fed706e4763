// The conversation so far, for the picture on one time axis: the caller's speech, the
// assistant's audio (played, not heard, cut), tool calls with their duration, flow nodes and
// each turn's latency. Times are the server's t_ms (the page's own audio reports are mapped
// onto that clock). The drawing itself is timeline.js, shared with `vlrun test`'s HTML report
// (served from runner/scenarios/static): this keeps the state and asks it to draw.
import { drawTimeline } from "./timeline.js";

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
  // GPT-Live's listening sound: its audio came as a reply's would; it is marked, not cut
  backchannel(item, text) {
    const r = this.replies.get(item);
    if (r) { r.text = text; r.backchannel = true; this.changed(); }
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
    const any = this.speech.length || this.replies.size || this.tools.size || this.nodes.length;
    this.empty.hidden = Boolean(any);
    const atEnd = this.scroller.scrollLeft + this.scroller.clientWidth >= this.scroller.scrollWidth - 4;
    // One drawing for the console and `vlrun test`'s HTML report (runner/scenarios/static).
    drawTimeline(this.svg, this.model(), {
      avail: this.scroller.clientWidth, now: this.now(), running: this.running,
    });
    if (atEnd) this.scroller.scrollLeft = this.scroller.scrollWidth;
    // While it runs, the "now" line and open segments move on (four times a second).
    if (this.running && !this.tick) this.tick = setTimeout(() => { this.tick = null; this.changed(); }, 250);
  }

  // what happened so far, in the shape drawTimeline takes
  model() {
    return {
      speech: this.speech, replies: [...this.replies.values()], tools: [...this.tools.values()],
      nodes: this.nodes, latencies: this.latencies, barges: this.barges, lastT: this.lastT,
    };
  }

  // what the page drew, for tests and the curious
  summary() {
    return {
      speech: this.speech.length, replies: [...this.replies.values()].map((r) => ({
        item: r.item, receivedMs: r.receivedMs, playedMs: r.playedMs, cutMs: r.cutMs,
        backchannel: Boolean(r.backchannel) })),
      tools: [...this.tools.values()], nodes: this.nodes, latencies: this.latencies,
    };
  }
}

function trim(list) { if (list.length > MAX_ITEMS) list.splice(0, list.length - MAX_ITEMS); }
function trimMap(map) { while (map.size > MAX_ITEMS) map.delete(map.keys().next().value); }
