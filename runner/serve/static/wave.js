// The current turn's waveforms: one peak (0..1) per 40 ms, drawn as bars on a canvas. The
// assistant's shows what was played dark and what was not (yet, or ever: a cut) pale.
const MAX_BARS = 750;           // 30 s of 40 ms bars; older ones give way

export class Wave {
  constructor(canvas, note, colours) {
    this.canvas = canvas;
    this.note = note;
    this.colours = colours;      // {on, off}
    this.peaks = [];
    this.playedBars = null;      // null: all "on" (the caller's); else bars played so far
    this.cutBar = null;
    this.pending = false;
  }
  // A new turn; `keep` bars of what came before stay (speech starts a little before it is
  // detected: the service reaches back by its prefix padding).
  reset(label = "", keep = 0) {
    this.peaks = keep > 0 ? this.peaks.slice(-keep) : [];
    this.playedBars = null; this.cutBar = null; this.note.textContent = label; this.changed();
  }
  push(peak) {
    this.peaks.push(Math.min(1, Math.max(0, peak)));
    if (this.peaks.length > MAX_BARS) this.peaks.splice(0, this.peaks.length - MAX_BARS);
    this.changed();
  }
  played(bars) { this.playedBars = bars; this.changed(); }
  cut(bars) { this.cutBar = bars; this.playedBars = bars; this.changed(); }
  changed() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }
  draw() {
    const c = this.canvas;
    const w = c.clientWidth || c.width;
    if (c.width !== w) c.width = w;
    const h = c.height;
    const ctx = c.getContext("2d");
    ctx.clearRect(0, 0, w, h);
    const n = Math.max(this.peaks.length, 120);   // short turns are not stretched across
    const step = w / n;
    const mid = h / 2;
    this.peaks.forEach((p, i) => {
      const on = this.playedBars === null || i < this.playedBars;
      ctx.fillStyle = on ? this.colours.on : this.colours.off;
      const half = Math.max(1, p * (mid - 2));
      ctx.fillRect(i * step, mid - half, Math.max(step - 1, 1), half * 2);
    });
    if (this.cutBar !== null) {
      ctx.fillStyle = this.colours.cut;
      ctx.fillRect(Math.min(this.cutBar * step, w - 2), 0, 2, h);
    }
  }
}

// Peaks of PCM16 audio, one per `perBar` samples (the reply's 40 ms at its rate).
export function pcmPeaks(buf, perBar, carry) {
  const s = new Int16Array(buf);
  const out = [];
  for (let i = 0; i < s.length; i++) {
    const v = Math.abs(s[i]) / 0x8000;
    if (v > carry.peak) carry.peak = v;
    if (++carry.n >= perBar) { out.push(carry.peak); carry.peak = 0; carry.n = 0; }
  }
  return out;
}
