"""Audio in and out behind one small interface: PyAudio devices, WAV files, or nothing (text mode).

The session only sees two shapes:
- a *source*: ``async for chunk in source.frames()`` yields PCM16 mono audio at the session
  rate, one chunk per hand-off (``CHUNK_MS`` of audio from the microphone or a WAV file);
- a *player*: ``write(item_id, pcm)`` queues assistant audio, ``interrupt()`` drops what has
  not been played and says how many ms of the current item were actually played.

PyAudio is imported only when a device is opened, so `vlrun check` and text mode never need it.
Device callbacks run on PortAudio's thread; they hand data to asyncio with
``loop.call_soon_threadsafe`` and never wait on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import threading
import time
import wave
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from runner import g711
from runner.errors import AudioUnavailable, VlrunError

FRAME_MS = 20
_OUTPUT_UNDERFLOW = 0x4  # PortAudio's paOutputUnderflow callback status flag
# Capture is handed to the event loop, and appended, 100 ms at a time. Each hand-off wakes the
# loop, and on small machines a wake-up costs more CPU than the audio work itself; 100 ms is also
# what production realtime clients send (LiveKit's agents do), and it adds at most 80 ms before
# the service's VAD hears the first word. `vlrun --chunk-ms` trades CPU for less delay.
CHUNK_MS = 100
SAMPLE_WIDTH = 2  # PCM16
INSTALL_HINT = (
    "install the audio extra: pip install 'vlrun[audio]' "
    "(needs the PortAudio library: apt-get install portaudio19-dev / brew install portaudio)"
)


def whole_frames_ms(ms: int) -> int:
    """A chunk length rounded down to whole 20 ms frames (at least one frame)."""
    return max(FRAME_MS, ms // FRAME_MS * FRAME_MS)


@dataclass(frozen=True)
class AudioFormat:
    """The session's audio format; Voice Live uses 24 kHz mono PCM16 unless the profile says
    otherwise. G.711 on the wire is one byte a sample (``sample_width=1``)."""

    rate: int = 24000
    channels: int = 1
    sample_width: int = SAMPLE_WIDTH

    def bytes_for_ms(self, ms: float) -> int:
        return int(self.rate * ms / 1000) * self.sample_width * self.channels

    def ms_for_bytes(self, n: int) -> float:
        return n / (self.sample_width * self.channels) / self.rate * 1000

    @property
    def frame_bytes(self) -> int:
        return self.bytes_for_ms(FRAME_MS)


def level_dbfs(pcm: bytes) -> float:
    """RMS level of a PCM16 frame in dBFS (-100 for silence); feeds the mic meter."""
    if not pcm:
        return -100.0
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    rms = float(np.sqrt(np.mean(samples * samples))) if samples.size else 0.0
    return -100.0 if rms < 1 else 20 * float(np.log10(rms / 32768))


# ---------------------------------------------------------------------------------------------
# PyAudio: lazy import, device listing and choice


def import_pyaudio() -> Any:
    """Import PyAudio or raise one clear line saying what to install."""
    try:
        import pyaudio
    except ImportError as exc:  # missing wheel or missing libportaudio
        raise AudioUnavailable(f"PyAudio is not available ({exc})", hint=INSTALL_HINT) from None
    return pyaudio


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Hide PortAudio's JACK/ALSA probing noise, which is printed straight to fd 2."""
    if os.environ.get("VLRUN_AUDIO_DEBUG"):
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


_pa_lock = threading.Lock()
_pa: Any = None
_alsa_handler: Any = None


def _silence_alsa() -> None:
    """Route ALSA's own error prints (e.g. "underrun occurred") to nowhere; they are not ours
    to show and they arrive on stderr long after start-up."""
    global _alsa_handler
    if _alsa_handler is not None or os.environ.get("VLRUN_AUDIO_DEBUG"):
        return
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("asound")
    if not name:
        return
    try:
        asound = ctypes.cdll.LoadLibrary(name)
    except OSError:
        return
    handler_type = ctypes.CFUNCTYPE(
        None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p
    )
    _alsa_handler = handler_type(lambda *args: None)  # kept referenced: ALSA holds the pointer
    asound.snd_lib_error_set_handler(_alsa_handler)


def pyaudio_instance() -> Any:
    """One PortAudio instance per process (initialising it probes every host API, slowly)."""
    global _pa
    with _pa_lock:
        if _pa is None:
            pyaudio = import_pyaudio()
            _silence_alsa()
            with _quiet_stderr():
                _pa = pyaudio.PyAudio()
        return _pa


def release_pyaudio() -> None:
    """Terminate PortAudio (end of the run)."""
    global _pa
    with _pa_lock:
        if _pa is not None:
            _pa.terminate()
            _pa = None


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    max_input_channels: int
    max_output_channels: int
    default_rate: int
    host_api: str


def list_devices() -> list[DeviceInfo]:
    """Every PortAudio device, as the user would pick it with --input-device/--output-device."""
    pa = pyaudio_instance()
    out = []
    for i in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(i)
        try:
            api = pa.get_host_api_info_by_index(info["hostApi"])["name"]
        except Exception:  # a host API that vanished between calls; the name is cosmetic
            api = "?"
        out.append(
            DeviceInfo(
                index=i,
                name=str(info["name"]),
                max_input_channels=int(info["maxInputChannels"]),
                max_output_channels=int(info["maxOutputChannels"]),
                default_rate=int(info["defaultSampleRate"]),
                host_api=str(api),
            )
        )
    return out


def find_device(spec: str | int | None, kind: str) -> DeviceInfo:
    """Pick an input or output device by index, by (part of) its name, or the system default."""
    devices = [
        d
        for d in list_devices()
        if (d.max_input_channels if kind == "input" else d.max_output_channels) > 0
    ]
    label = "microphone" if kind == "input" else "speaker"
    if not devices:
        raise AudioUnavailable(
            f"no {label} found (PortAudio lists no {kind} device)",
            hint="connect one, or use --text / --input FILE.wav; "
            "`vlrun devices` lists what is seen",
        )
    if spec is None or spec == "":
        pa = pyaudio_instance()
        try:
            info = (
                pa.get_default_input_device_info()
                if kind == "input"
                else pa.get_default_output_device_info()
            )
            return next(d for d in devices if d.index == int(info["index"]))
        except (OSError, StopIteration):
            return devices[0]
    text = str(spec)
    if text.isdigit():
        match = [d for d in devices if d.index == int(text)]
    else:
        exact = [d for d in devices if d.name.lower() == text.lower()]
        match = exact or [d for d in devices if text.lower() in d.name.lower()]
    if not match:
        names = ", ".join(f"{d.index}: {d.name}" for d in devices)
        raise AudioUnavailable(f"no {kind} device matches {text!r}", hint=f"choose one of: {names}")
    return match[0]


def supported_rates(
    device: DeviceInfo, kind: str, rates: tuple[int, ...] = (16000, 24000, 44100, 48000)
) -> list[int]:
    """Rates this device can open for mono PCM16 (for `vlrun doctor`)."""
    pyaudio = import_pyaudio()
    pa = pyaudio_instance()
    ok = []
    for rate in rates:
        kwargs: dict[str, Any] = (
            {"input_device": device.index, "input_channels": 1, "input_format": pyaudio.paInt16}
            if kind == "input"
            else {
                "output_device": device.index,
                "output_channels": 1,
                "output_format": pyaudio.paInt16,
            }
        )
        try:
            if pa.is_format_supported(rate, **kwargs):
                ok.append(rate)
        except ValueError:
            pass
    return ok


def _open_stream(
    device: DeviceInfo,
    kind: str,
    fmt: AudioFormat,
    callback: Callable[..., Any],
    buffer_ms: int = FRAME_MS,
) -> tuple[Any, int]:
    """Open a callback stream at the session rate, else at the device's rate (we resample)."""
    pyaudio = import_pyaudio()
    pa = pyaudio_instance()
    last: Exception | None = None
    for rate in dict.fromkeys((fmt.rate, device.default_rate, 48000, 44100)):
        kwargs: dict[str, Any] = {
            "format": pyaudio.paInt16,
            "channels": fmt.channels,
            "rate": rate,
            "frames_per_buffer": rate * buffer_ms // 1000,
            "stream_callback": callback,
            "start": False,
        }
        if kind == "input":
            kwargs.update(input=True, input_device_index=device.index)
        else:
            kwargs.update(output=True, output_device_index=device.index)
        try:
            with _quiet_stderr():
                return pa.open(**kwargs), rate
        except (OSError, ValueError) as exc:
            last = exc
    raise AudioUnavailable(
        f"{kind} device {device.index} ({device.name}) cannot open mono PCM16 "
        f"at any usable rate ({last})",
        hint="pick another device with --input-device/--output-device; "
        "`vlrun doctor` shows supported rates",
    )


def wire_formats(session: dict[str, Any]) -> tuple[Any, Any, str | None, str | None]:
    """PCM16 formats the edges open, and the G.711 law (if any) each way on the wire; the
    session in either shape (dated, or v1's ``audio.input.format`` / ``audio.output.format``)."""
    from runner.config.service import dated_audio

    session = dated_audio(session)
    in_law = g711.law_of(str(session.get("input_audio_format") or "pcm16"))
    out_format = str(session.get("output_audio_format") or "pcm16")
    out_law = g711.law_of(out_format)
    match = re.search(r"(\d+)hz$", out_format)
    out_rate = g711.RATE if out_law else int(match.group(1)) if match else 24000
    in_rate = g711.RATE if in_law else int(session.get("input_audio_sampling_rate") or 24000)
    return AudioFormat(in_rate), AudioFormat(out_rate), in_law, out_law


class _Resampler:
    """Streaming PCM16 resampler (soxr keeps filter state across frames, so no clicks)."""

    def __init__(self, in_rate: int, out_rate: int, channels: int) -> None:
        import soxr

        self._stream = soxr.ResampleStream(in_rate, out_rate, channels, dtype="int16")
        self.channels = channels

    def __call__(self, pcm: bytes, last: bool = False) -> bytes:
        data = np.frombuffer(pcm, dtype="<i2")
        if self.channels > 1:
            data = data.reshape(-1, self.channels)
        out: np.ndarray = self._stream.resample_chunk(data, last=last)
        return out.astype("<i2").tobytes()


# ---------------------------------------------------------------------------------------------
# Sources


class Source(Protocol):
    """Yields PCM16 at the session rate, one chunk per hand-off, until the input ends."""

    def frames(self) -> AsyncIterator[bytes]: ...

    def close(self) -> None: ...


class Microphone:
    """A PortAudio input stream whose callback hands each chunk to the event loop."""

    live = True  # audio that cannot be sent now is dropped, not delayed

    def __init__(
        self, fmt: AudioFormat, device: str | int | None = None, *, chunk_ms: int = CHUNK_MS
    ) -> None:
        self.fmt = fmt
        self.device = find_device(device, "input")
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        # PortAudio fills one buffer per chunk, so both its thread and the event loop wake once
        # per chunk (capture latency is the chunk either way; only playback needs small buffers).
        chunk_ms = whole_frames_ms(chunk_ms)
        self._stream, self.device_rate = _open_stream(
            self.device, "input", fmt, self._callback, buffer_ms=chunk_ms
        )
        self._resample = (
            _Resampler(self.device_rate, fmt.rate, fmt.channels)
            if self.device_rate != fmt.rate
            else None
        )
        self._stream.start_stream()

    def _callback(
        self, in_data: bytes, frame_count: int, time_info: Any, status: int
    ) -> tuple[None, int]:
        with contextlib.suppress(RuntimeError):  # loop already closed at shutdown
            self._loop.call_soon_threadsafe(self._queue.put_nowait, in_data)
        return None, 0  # paContinue

    async def frames(self) -> AsyncIterator[bytes]:
        while True:
            data = await self._queue.get()
            if data is None:
                return
            yield self._resample(data) if self._resample else data

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._stream.stop_stream()
            self._stream.close()
        self._queue.put_nowait(None)


def read_wav(path: Path, fmt: AudioFormat) -> bytes:
    """Read a WAV file as PCM16 at the session format (mixing down and resampling if needed)."""
    try:
        with wave.open(str(path), "rb") as wav:
            width, channels, rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
            raw = wav.readframes(wav.getnframes())
    except FileNotFoundError:
        raise VlrunError(f"{path}: no such file", hint="--input expects a WAV file") from None
    except (wave.Error, EOFError) as exc:
        raise VlrunError(
            f"{path}: not a readable WAV file ({exc})",
            hint="convert it: sox in.ext -r 24000 -c 1 -b 16 out.wav",
        ) from None
    if width != SAMPLE_WIDTH:
        raise VlrunError(
            f"{path}: {8 * width}-bit samples; vlrun streams 16-bit PCM",
            hint=f"convert it: sox {path} -b 16 out.wav",
        )
    samples = np.frombuffer(raw, dtype="<i2")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1).astype("<i2")
    pcm = samples.tobytes()
    if rate != fmt.rate:
        pcm = _Resampler(rate, fmt.rate, 1)(pcm, last=True)
    return pcm


class WavSource:
    """Streams a WAV file as the microphone would, then silence so VAD ends the turn."""

    live = False  # every chunk is delivered, even if the connection has to be re-opened first

    def __init__(
        self,
        path: Path,
        fmt: AudioFormat,
        *,
        fast: bool = False,
        tail_ms: int = 1500,
        chunk_ms: int = CHUNK_MS,
    ) -> None:
        self.fmt = fmt
        self.fast = fast
        self.chunk_ms = whole_frames_ms(chunk_ms)
        pcm = read_wav(path, fmt) + bytes(fmt.bytes_for_ms(tail_ms))
        self.pcm = pcm + bytes(-len(pcm) % fmt.frame_bytes)  # whole frames
        self.duration_ms = fmt.ms_for_bytes(len(self.pcm))

    async def frames(self) -> AsyncIterator[bytes]:
        step = self.fmt.bytes_for_ms(self.chunk_ms)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n, offset in enumerate(range(0, len(self.pcm), step)):
            if not self.fast:
                # Paced like a microphone: chunk n is complete at start + (n + 1) * chunk.
                delay = start + (n + 1) * self.chunk_ms / 1000 - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)  # let the receive side run between chunks
            yield self.pcm[offset : offset + step]

    def close(self) -> None:
        pass


class G711Source:
    """A PCM16 source whose chunks go on the wire as G.711 (the device side stays PCM16)."""

    def __init__(self, inner: Source, law: str, rate: int = g711.RATE) -> None:
        self.inner = inner
        self.law = law
        self.fmt = AudioFormat(rate, 1, 1)

    async def frames(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner.frames():
            yield g711.encode(chunk, self.law)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:  # live, duration_ms, ... of the wrapped source
        return getattr(self.inner, name)


# ---------------------------------------------------------------------------------------------
# Output


class WavRecorder:
    """Writes what the assistant actually played to a WAV file (interrupted tails are dropped)."""

    def __init__(self, path: Path, fmt: AudioFormat) -> None:
        self.path = path
        self.fmt = fmt
        path.parent.mkdir(parents=True, exist_ok=True)
        self._wav: wave.Wave_write | None = wave.open(str(path), "wb")  # noqa: SIM115 - whole run
        self._wav.setnchannels(fmt.channels)
        self._wav.setsampwidth(SAMPLE_WIDTH)
        self._wav.setframerate(fmt.rate)  # type: ignore[union-attr]
        self._lock = threading.Lock()
        self.bytes_written = 0

    def write(self, pcm: bytes) -> None:
        with self._lock:
            if self._wav is not None:
                self._wav.writeframes(pcm)
                self.bytes_written += len(pcm)

    def close(self) -> None:
        with self._lock:
            if self._wav is not None:
                self._wav.close()
                self._wav = None


class Player(Protocol):
    """Assistant audio output with an accurate count of what was played."""

    fmt: AudioFormat

    def write(self, item_id: str, pcm: bytes) -> None: ...

    def interrupt(self) -> tuple[str | None, int]: ...

    def played_ms(self) -> int: ...

    def pending_ms(self) -> float: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...


class G711Player:
    """A PCM16 player fed G.711 from the wire: decodes each delta, counts time in wire bytes."""

    def __init__(self, inner: Player, law: str) -> None:
        self.inner = inner
        self.law = law
        self.fmt = AudioFormat(inner.fmt.rate, inner.fmt.channels, 1)

    def write(self, item_id: str, data: bytes) -> None:
        self.inner.write(item_id, g711.decode(data, self.law))

    def __getattr__(self, name: str) -> Any:  # interrupt, played_ms, drain, close, ...
        return getattr(self.inner, name)


class ClockPlayer:
    """Plays into a virtual device that consumes audio at real-time speed (no sound card needed).

    Used for WAV output, text mode and tests: the "played" position follows the wall clock just
    as a real speaker would, so barge-in truncation positions are the same as with a device.
    With ``realtime=False`` audio counts as played as soon as it arrives (text mode, --fast).
    """

    def __init__(
        self, fmt: AudioFormat, *, recorder: WavRecorder | None = None, realtime: bool = True
    ) -> None:
        self.fmt = fmt
        self.recorder = recorder
        self.realtime = realtime
        self._end = 0.0  # monotonic time when everything queued has been played
        self._item: str | None = None
        self._item_bytes = 0
        self._item_buf = bytearray()  # current item, recorded once we know how much played
        self.silenced_at: float | None = None

    def _remaining_s(self, now: float) -> float:
        return max(0.0, self._end - now) if self.realtime else 0.0

    def write(self, item_id: str, pcm: bytes) -> None:
        now = time.monotonic()
        if item_id != self._item:
            self._flush_item()
            self._item, self._item_bytes = item_id, 0
        self._end = max(now, self._end) + self.fmt.ms_for_bytes(len(pcm)) / 1000
        self._item_bytes += len(pcm)
        if self.recorder is not None:
            self._item_buf += pcm

    def played_ms(self) -> int:
        remaining_ms = self._remaining_s(time.monotonic()) * 1000
        return int(max(0.0, self.fmt.ms_for_bytes(self._item_bytes) - remaining_ms))

    def pending_ms(self) -> float:
        return self._remaining_s(time.monotonic()) * 1000

    def interrupt(self) -> tuple[str | None, int]:
        played = self.played_ms()
        self._end = time.monotonic()
        self.silenced_at = time.perf_counter()
        keep = self.fmt.bytes_for_ms(played)
        del self._item_buf[keep:]
        self._item_bytes = min(self._item_bytes, keep)
        item, self._item = self._item, None
        self._flush_item()
        return item, played

    def _flush_item(self) -> None:
        if self.recorder is not None and self._item_buf:
            self.recorder.write(bytes(self._item_buf))
        self._item_buf.clear()

    async def drain(self) -> None:
        remaining = self._remaining_s(time.monotonic())
        if remaining > 0:
            await asyncio.sleep(remaining)  # a timer for the known play-out time, not a poll

    def close(self) -> None:
        self._flush_item()
        if self.recorder is not None:
            self.recorder.close()


class DevicePlayer:
    """A PortAudio output stream fed from a chunk queue by its callback.

    ``write`` appends to the queue (resampled to the device rate if needed); the callback copies
    20 ms at a time, pads with silence when the queue is empty and counts bytes per item, so
    ``played_ms`` is what really left for the speaker. ``interrupt`` clears the queue: the next
    callback (at most one buffer later) plays silence.
    """

    def __init__(
        self,
        fmt: AudioFormat,
        device: str | int | None = None,
        *,
        recorder: WavRecorder | None = None,
    ) -> None:
        self.fmt = fmt
        self.recorder = recorder
        self.device = find_device(device, "output")
        self._lock = threading.Lock()
        self._chunks: deque[tuple[str, bytes]] = deque()
        self._head_offset = 0
        self._played: dict[str, int] = {}  # item -> device bytes handed to PortAudio
        self._item: str | None = None
        self._loop = asyncio.get_running_loop()
        self._drained = asyncio.Event()
        self._drained.set()
        self._silence_requested: float | None = None
        # When the first buffer after interrupt() left for PortAudio: it holds none of the
        # interrupted audio (silence, or a newer reply). perf_counter seconds.
        self.silenced_at: float | None = None
        self.silence_log: list[tuple[float, float]] = []  # (interrupt() called, silenced_at)
        self.underflows = 0  # callbacks PortAudio flagged as output underflow (a stalled stack)
        self._silence = b""
        self._stream, self.device_rate = _open_stream(self.device, "output", fmt, self._callback)
        self._dev_fmt = AudioFormat(self.device_rate, fmt.channels)
        self._resample = (
            _Resampler(fmt.rate, self.device_rate, fmt.channels)
            if self.device_rate != fmt.rate
            else None
        )
        self._stream.start_stream()

    def _callback(
        self, in_data: Any, frame_count: int, time_info: Any, status: int
    ) -> tuple[bytes, int]:
        need = frame_count * SAMPLE_WIDTH * self.fmt.channels
        if status & _OUTPUT_UNDERFLOW:
            self.underflows += 1
        if not self._chunks and self._silence_requested is None and self._drained.is_set():
            # Idle (most of a conversation): no lock, no allocation, no loop wake-up.
            if len(self._silence) != need:
                self._silence = bytes(need)
            return self._silence, 0  # paContinue
        out = bytearray()
        recorded = bytearray()
        with self._lock:
            while self._chunks and len(out) < need:
                item, data = self._chunks[0]
                take = data[self._head_offset : self._head_offset + need - len(out)]
                out += take
                self._played[item] = self._played.get(item, 0) + len(take)
                self._head_offset += len(take)
                if self._head_offset >= len(data):
                    self._chunks.popleft()
                    self._head_offset = 0
            empty = not self._chunks
            if self._silence_requested is not None:  # the queue was cleared: nothing old is left
                self.silenced_at = time.perf_counter()
                self.silence_log.append((self._silence_requested, self.silenced_at))
                self._silence_requested = None
        if out and self.recorder is not None:
            recorded = out
        if len(out) < need:
            out += bytes(need - len(out))
        if recorded:
            self.recorder.write(bytes(recorded))  # type: ignore[union-attr]
        if empty and not self._drained.is_set():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._drained.set)
        return bytes(out), 0  # paContinue

    def write(self, item_id: str, pcm: bytes) -> None:
        data = self._resample(pcm) if self._resample else pcm
        with self._lock:
            self._item = item_id
            self._chunks.append((item_id, data))
        self._drained.clear()

    def played_ms(self) -> int:
        with self._lock:
            n = self._played.get(self._item or "", 0)
        return int(self._dev_fmt.ms_for_bytes(n))

    def pending_ms(self) -> float:
        with self._lock:
            n = sum(len(d) for _, d in self._chunks) - self._head_offset
        return self._dev_fmt.ms_for_bytes(max(0, n))

    def interrupt(self) -> tuple[str | None, int]:
        with self._lock:
            self._chunks.clear()
            self._head_offset = 0
            self._silence_requested = time.perf_counter()
            item = self._item
            n = self._played.get(item or "", 0)
            self._item = None
        self._drained.set()
        return item, int(self._dev_fmt.ms_for_bytes(n))

    async def drain(self) -> None:
        await self._drained.wait()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._stream.stop_stream()
            self._stream.close()
        if self.recorder is not None:
            self.recorder.close()
