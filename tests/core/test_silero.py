"""The Silero classifier (VAD_ENGINE=silero) on real speech: the model faster-whisper ships, run as a
stream. Recordings with pauses between them come out as one segment each, as with webrtcvad."""

from __future__ import annotations

import numpy as np
from stt_core import session as s
from stt_core.endpointing import AutoSegmenter
from stt_core.silero import silero_classifier
from stt_core.vad import VadConfig, VadGate

from harness.speech import clip, pick


def frames(pcm: np.ndarray, ms: int = 30) -> list[bytes]:
    n = 16 * ms
    return [pcm[i:i + n].tobytes() for i in range(0, len(pcm) - n + 1, n)]


def test_speech_is_speech_and_silence_and_noise_are_not():
    rng = np.random.default_rng(7)
    noise = (rng.normal(0, 60, 32000)).astype(np.int16)  # a quiet room, -55 dBFS
    is_speech = silero_classifier(0.5)
    quiet = [is_speech(f) for f in frames(noise)]
    speech = [is_speech(f) for f in frames(clip(pick(1, 3.0, 6.0)[0]))]
    assert sum(quiet) == 0
    assert sum(speech) > 0.5 * len(speech)


def test_the_gate_with_silero_ends_each_recording_at_its_pause():
    names = pick(3, 1.5, 6.0)
    gap = np.zeros(32000, np.int16)
    pcm = np.concatenate([gap, *(np.concatenate([clip(n), gap]) for n in names)])
    auto = AutoSegmenter(VadConfig(engine="silero"))
    actions = [a for f in frames(pcm) for a in auto.feed(f)]
    assert sum(isinstance(a, s.OpenSegment) for a in actions) == len(names)
    assert sum(isinstance(a, s.EndSegment) for a in actions) == len(names)


def test_the_engine_is_chosen_by_the_config():
    assert VadGate(VadConfig(engine="silero")).is_speech.__qualname__.startswith("silero_classifier")
    assert VadGate(VadConfig()).is_speech.__qualname__.startswith("webrtc_classifier")
