// Reply playback with a small jitter buffer. PCM16 at the session's output rate comes in
// chunks tagged with their item; the worklet resamples to the context rate, reports how much
// of the current item it has played, and on "flush" drops everything queued at once and
// reports the exact position where it stopped (what the person heard).
class Playback extends AudioWorkletProcessor {
  constructor(options) {
    const o = options.processorOptions;
    super();
    this.rate = o.rate;
    this.step = o.rate / sampleRate;            // source samples per output sample
    this.startAfter = Math.round(o.rate * o.bufferMs / 1000);
    this.queue = [];                            // {item, pcm: Float32Array, off}
    this.queued = 0;
    this.playing = false;
    this.item = null;
    this.itemPlayed = 0;                        // source samples of `item` played
    this.frac = 0;
    this.waiting = 0;
    this.sinceReport = 0;
    this.totalPlayed = 0;
    this.port.onmessage = (e) => this.message(e.data);
  }
  message(m) {
    if (m.type === "audio") {
      const src = new Int16Array(m.pcm);
      const f = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) f[i] = src[i] / 0x8000;
      this.queue.push({ item: m.item, pcm: f, off: 0 });
      this.queued += f.length;
    } else if (m.type === "flush") {
      const ms = this.itemPlayed * 1000 / this.rate;
      const item = this.item;
      this.queue = [];
      this.queued = 0;
      this.playing = false;
      this.item = null;
      this.itemPlayed = 0;
      this.port.postMessage({ type: "flushed", item, ms });
    }
  }
  process(_inputs, outputs) {
    const out = outputs[0][0];
    if (!this.playing && this.queued > 0) {
      // Start once the buffer holds bufferMs, or once a shorter tail has waited that long.
      this.waiting += out.length * this.step;
      if (this.queued >= this.startAfter || this.waiting >= this.startAfter) this.playing = true;
    }
    if (this.playing) this.waiting = 0;
    for (let i = 0; i < out.length; i++) {
      if (!this.playing || this.queue.length === 0) { out[i] = 0; continue; }
      const head = this.queue[0];
      if (head.item !== this.item) { this.item = head.item; this.itemPlayed = 0; }
      out[i] = head.pcm[head.off];
      this.frac += this.step;
      while (this.frac >= 1 && this.queue.length) {
        this.frac -= 1;
        const h = this.queue[0];
        h.off++;
        this.queued--;
        this.itemPlayed++;
        this.totalPlayed++;
        if (h.off >= h.pcm.length) this.queue.shift();
      }
      if (this.queue.length === 0) this.playing = false;   // underrun: refill the buffer first
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    this.sinceReport += out.length;
    if (this.sinceReport >= sampleRate / 25 && this.item !== null) {   // every 40 ms
      this.sinceReport = 0;
      this.port.postMessage({ type: "played", item: this.item,
                              ms: this.itemPlayed * 1000 / this.rate, total: this.totalPlayed });
    }
    return true;
  }
}
registerProcessor("vlrun-playback", Playback);
