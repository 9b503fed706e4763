"""A simulated caller's voice (tier 3): its text spoken as PCM16 mono 24 kHz, with seeded noise.

espeak-ng speaks offline (:func:`espeak`, which the simulated carrier's caller also speaks
with); Azure Speech speaks when a scenario asks for an Azure
voice (``voice: azure:en-US-AvaMultilingualNeural``) and ``AZURE_SPEECH_KEY`` with
``AZURE_SPEECH_REGION`` (or ``AZURE_SPEECH_ENDPOINT``) are set. The noise is white noise at a
signal-to-noise ratio, drawn from a generator seeded by (scenario seed, turn), so a run can be
repeated sample for sample.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from runner.errors import AudioUnavailable, VlrunError
from runner.evals.types import EvalsError

RATE = 24000
ESPEAK_TIMEOUT_S = 30.0  # one turn's words; espeak-ng takes well under a second
AZURE_TIMEOUT_S = 30.0
AZURE_HINT = (
    'install the evals extra (pip install "vlrun[evals]") and set AZURE_SPEECH_KEY and '
    "AZURE_SPEECH_REGION (or AZURE_SPEECH_ENDPOINT); or use voice: espeak"
)


def voice_problem(voice: Any) -> str | None:
    """What is wrong with a caller's ``voice`` setting (None: nothing)."""
    if voice == "espeak":
        return None
    if isinstance(voice, str) and voice.startswith("azure:") and len(voice) > len("azure:"):
        return None
    return f"`voice` {voice!r}: use espeak, or azure:VOICE_NAME (e.g. azure:en-US-AvaNeural)"


async def speak(text: str, voice: str = "espeak") -> bytes:
    """``text`` spoken by ``voice`` as PCM16 mono at :data:`RATE`."""
    if voice.startswith("azure:"):
        return await _azure(text, voice[len("azure:") :])
    # no espeak-ng: AudioUnavailable (exit 3), naming the package to install
    return await espeak(text, RATE)


def add_noise(pcm: bytes, snr_db: float | None, seed: int, turn: int) -> bytes:
    """``pcm`` with white noise ``snr_db`` below its level (None: unchanged); the noise is
    drawn from a generator seeded by (``seed``, ``turn``), so the same turn of the same run
    gets the same samples."""
    import numpy as np

    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float64)
    if snr_db is None or samples.size == 0:
        return pcm
    level = float(np.sqrt(np.mean(samples**2)))
    if level == 0.0:
        return pcm
    rng = np.random.default_rng([seed & 0xFFFFFFFF, turn])
    noise = rng.normal(0.0, level / 10 ** (snr_db / 20), samples.size)
    mixed = np.clip(np.rint(samples + noise), -32768, 32767).astype("<i2")
    return mixed.tobytes()


async def _azure(text: str, voice_name: str) -> bytes:
    key = os.environ.get("AZURE_SPEECH_KEY", "")
    region = os.environ.get("AZURE_SPEECH_REGION", "")
    endpoint = os.environ.get("AZURE_SPEECH_ENDPOINT", "")
    if not key or not (region or endpoint):
        raise EvalsError(
            f"voice azure:{voice_name} needs AZURE_SPEECH_KEY and AZURE_SPEECH_REGION "
            "(or AZURE_SPEECH_ENDPOINT), which are not set",
            hint=AZURE_HINT,
        )
    try:
        import azure.cognitiveservices.speech as speechsdk  # type: ignore[import-not-found]
    except ImportError:
        raise EvalsError(
            f"voice azure:{voice_name} needs azure-cognitiveservices-speech, which is not "
            "installed",
            hint=AZURE_HINT,
        ) from None
    from runner.redact import register_secret

    register_secret(key)

    def synthesize() -> bytes:
        config = (
            speechsdk.SpeechConfig(subscription=key, region=region)
            if region
            else speechsdk.SpeechConfig(subscription=key, endpoint=endpoint)
        )
        config.speech_synthesis_voice_name = voice_name
        config.set_speech_synthesis_output_format(
            speechsdk.SpeechSynthesisOutputFormat.Raw24Khz16BitMonoPcm
        )
        synth = speechsdk.SpeechSynthesizer(speech_config=config, audio_config=None)
        result = synth.speak_text_async(text).get()
        if result.reason == speechsdk.ResultReason.SynthesizingAudioCompleted:
            return bytes(result.audio_data)
        details = getattr(result, "cancellation_details", None)
        why = getattr(details, "error_details", None) or str(result.reason)
        from runner.redact import redact

        raise EvalsError(f"Azure Speech did not speak the caller's turn: {redact(str(why))[:200]}")

    try:
        # the Speech SDK blocks; its own thread, and the wait has a deadline
        return await asyncio.wait_for(asyncio.to_thread(synthesize), AZURE_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise EvalsError(f"Azure Speech took over {AZURE_TIMEOUT_S:.0f} s") from None


async def espeak(text: str, rate: int) -> bytes:
    """``text`` spoken by espeak-ng (a subprocess, off the loop), as PCM16 at ``rate``."""
    from runner.live.audio import AudioFormat, read_wav

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise AudioUnavailable(
            "speaking text needs espeak-ng, which is not installed",
            hint="install the espeak-ng package (apt install espeak-ng, brew install espeak-ng), "
            "or give a recording (vlrun ring --say-wav FILE, a scenario's wav: turn)",
        )
    with tempfile.TemporaryDirectory(prefix="vlrun-say-") as folder:
        out = Path(folder) / "say.wav"
        proc = await asyncio.create_subprocess_exec(
            exe, "-w", str(out), "--", text,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            _, err = await asyncio.wait_for(proc.communicate(), ESPEAK_TIMEOUT_S)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise VlrunError(f"espeak-ng took over {ESPEAK_TIMEOUT_S:.0f} s") from None
        if proc.returncode != 0 or not out.exists():
            reason = err.decode(errors="replace").strip()[:200]
            raise VlrunError(f"espeak-ng failed ({reason or proc.returncode})")
        return read_wav(out, AudioFormat(rate))
