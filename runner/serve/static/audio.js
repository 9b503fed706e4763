// The page's audio: one AudioContext, a capture worklet (mic -> session rate PCM16 frames)
// and a playback worklet (reply PCM16 -> speakers, jitter buffer, flush on barge-in).
export const FRAME_MS = 40;      // 20-100 ms frames; 40 ms keeps latency and overhead low
export const BUFFER_MS = 60;     // playback starts once this much reply audio is queued

export class PageAudio {
  constructor(handlers) {
    this.handlers = handlers;    // {frame(ArrayBuffer), level(db, peak), played(item, ms), flushed(item, ms)}
    this.ctx = null;
    this.stream = null;
    this.capture = null;
    this.playback = null;
    this.analyser = null;
    this.stats = { framesSent: 0, playedSamples: 0, peak: 0, flushes: 0, flushedAt: [] };
    this.sending = true;
  }

  async start({ inputRate, outputRate, echoCancellation, noiseSuppression }) {
    this.ctx = new AudioContext();
    await this.ctx.audioWorklet.addModule("static/capture-worklet.js");
    await this.ctx.audioWorklet.addModule("static/playback-worklet.js");
    this.playback = new AudioWorkletNode(this.ctx, "vlrun-playback", {
      numberOfInputs: 0, outputChannelCount: [1],
      processorOptions: { rate: outputRate, bufferMs: BUFFER_MS },
    });
    this.analyser = this.ctx.createAnalyser();
    this.analyser.fftSize = 1024;
    this.playback.connect(this.analyser);
    this.analyser.connect(this.ctx.destination);
    this.playback.port.onmessage = (e) => {
      const m = e.data;
      if (m.type === "played") {
        this.stats.playedSamples = m.total;
        this.handlers.played(m.item, m.ms);
      } else if (m.type === "flushed") {
        this.stats.flushes++;
        this.stats.flushedAt.push(m.ms);
        this.handlers.flushed(m.item, m.ms);
      }
    };
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation, noiseSuppression, autoGainControl: true, channelCount: 1 },
    });
    const mic = this.ctx.createMediaStreamSource(this.stream);
    this.capture = new AudioWorkletNode(this.ctx, "vlrun-capture", {
      numberOfOutputs: 0,
      processorOptions: { rate: inputRate, frameMs: FRAME_MS },
    });
    this.capture.port.onmessage = (e) => {
      this.handlers.level(e.data.db, e.data.peak ?? 0);
      if (e.data.pcm && this.sending) {
        this.stats.framesSent++;
        this.handlers.frame(e.data.pcm);
      }
    };
    mic.connect(this.capture);
    await this.ctx.resume();
    this.meterLoop();
  }

  // The reply's loudness as the speakers get it (AnalyserNode after the playback worklet).
  meterLoop() {
    const buf = new Float32Array(this.analyser.fftSize);
    const tick = () => {
      if (!this.analyser) return;
      this.analyser.getFloatTimeDomainData(buf);
      let peak = 0;
      for (const x of buf) peak = Math.max(peak, Math.abs(x));
      this.stats.peak = Math.max(this.stats.peak, peak);
      setTimeout(tick, 50);
    };
    tick();
  }

  play(item, pcm) {
    this.playback?.port.postMessage({ type: "audio", item, pcm }, [pcm]);
  }

  flush() {
    this.playback?.port.postMessage({ type: "flush" });
  }

  setSending(on) {
    this.sending = on;
  }

  async stop() {
    this.stream?.getTracks().forEach((t) => t.stop());
    this.analyser = null;
    if (this.ctx) await this.ctx.close();
    this.ctx = this.stream = this.capture = this.playback = null;
  }
}
