// Microphone capture: resample the context's rate to the session's and post PCM16 frames.
// Linear interpolation is enough for speech going to a speech service at 16-24 kHz.
class Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions;
    this.ratio = sampleRate / o.rate;           // input samples per output sample
    this.frame = Math.round(o.rate * o.frameMs / 1000);
    this.out = new Int16Array(this.frame);
    this.n = 0;
    this.pos = 0;                                // fractional read position in the input
    this.last = 0;
    this.sumSq = 0;
    this.peak = 0;
    this.enabled = true;
    this.port.onmessage = (e) => { if ("enabled" in e.data) this.enabled = e.data.enabled; };
  }
  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (!input) return true;
    // position runs over [last sample of the previous block] + this block
    while (this.pos < input.length) {
      const i = Math.floor(this.pos);
      const frac = this.pos - i;
      const a = i === 0 ? this.last : input[i - 1];
      const b = input[i];
      const x = a + (b - a) * frac;
      const s = Math.max(-1, Math.min(1, x));
      this.out[this.n++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      this.sumSq += s * s;
      if (Math.abs(s) > this.peak) this.peak = Math.abs(s);
      if (this.n === this.frame) {
        const rms = Math.sqrt(this.sumSq / this.frame);
        const db = rms > 0 ? 20 * Math.log10(rms) : -100;
        const pcm = this.out.slice(0);
        this.port.postMessage({ pcm: this.enabled ? pcm.buffer : null, db, peak: this.peak },
                              this.enabled ? [pcm.buffer] : []);
        this.n = 0;
        this.sumSq = 0;
        this.peak = 0;
      }
      this.pos += this.ratio;
    }
    this.pos -= input.length;
    this.last = input[input.length - 1];
    return true;
  }
}
registerProcessor("vlrun-capture", Capture);
