"""The baseline, measured in the same run: faster-whisper's own ``WhisperModel.transcribe`` of each whole
clip with the embedded model (int8 on CPU, beam 5, English), exactly as ../shared/conformance/lib.py's
``offline_decode_times`` does it: warm up on the clip's first second, then time the whole clip once."""

from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from stt_core.model import embedded_model_dir

from harness.speech import wer

from .clips import Clip


@dataclass(frozen=True)
class Baseline:
    decode_s: dict[str, float]
    text: dict[str, str]
    wer: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def measure(clips: list[Clip]) -> Baseline:
    from faster_whisper import WhisperModel

    model = WhisperModel(str(embedded_model_dir()), device="cpu", compute_type="int8")
    decode_s: dict[str, float] = {}
    text: dict[str, str] = {}
    for c in clips:
        audio = c.pcm.astype(np.float32) / 32768.0
        list(model.transcribe(audio[:16000], beam_size=5, language="en")[0])
        t0 = time.perf_counter()
        segments, _ = model.transcribe(audio, beam_size=5, language="en")
        text[c.id] = " ".join(s.text.strip() for s in segments)
        decode_s[c.id] = time.perf_counter() - t0
    del model
    gc.collect()
    return Baseline(decode_s, text, wer([(c.ref, text[c.id]) for c in clips]))
