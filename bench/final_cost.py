"""What a final costs on one core, and where that cost goes: the measurement behind FINAL_CONTEXT_S.

For every clip, single-threaded (as the server's final workers run on a CPU), in this process:
* the baseline: faster-whisper's offline ``transcribe`` (beam 5, Whisper's 30 s window);
* the encoder's pass over that 30 s window alone, and per clip when four windows are encoded as one
  batch (what batching finals that end together would save);
* our final (``WhisperDecoder.final`` with the configured ``final_context_s``), and how many of the
  clips fell back to the offline decode because the short-context result failed a check.
Each timing is the best of a few repeats, so the machine's noise inflates neither side.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from stt_core.decoder import FULL_CONTEXT_S, SHORT_FINAL_CONTEXT_S, WhisperDecoder
from stt_core.model import EMBEDDED_NAME, embedded_model_dir
from stt_core.options import SpeechOptions

from harness.speech import wer

from .clips import Clip

REPEATS = 3
BATCH = 4


def best_of(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(clips: list[Clip], context_s: float = SHORT_FINAL_CONTEXT_S,
            repeats: int = REPEATS) -> dict[str, Any]:
    import ctranslate2
    from faster_whisper import WhisperModel

    model = WhisperModel(str(embedded_model_dir()), device="cpu", compute_type="int8", cpu_threads=1)
    ours = WhisperDecoder(model, EMBEDDED_NAME, final_context_s=context_s)
    fell_back = 0
    short_path = ours._short_context_final

    def counting(audio: Any, lang: str) -> Any:
        nonlocal fell_back
        result = short_path(audio, lang)
        fell_back += result is None
        return result

    ours._short_context_final = counting  # type: ignore[method-assign]
    ours.final(np.zeros(8000, dtype=np.float32), SpeechOptions())  # Silero and the tokenizer, loaded once
    rows: dict[str, dict[str, Any]] = {}
    windows = []
    for c in clips:
        audio = c.pcm.astype(np.float32) / 32768.0
        texts: dict[str, str] = {}

        def offline(audio: Any = audio, texts: dict[str, str] = texts) -> None:
            segments, _ = model.transcribe(audio, beam_size=5, language="en")
            texts["offline"] = " ".join(s.text.strip() for s in segments)

        def final(audio: Any = audio, texts: dict[str, str] = texts) -> None:
            texts["ours"] = ours.final(audio, SpeechOptions()).text

        window = np.zeros((80, 3000), dtype=np.float32)
        features = model.feature_extractor(audio)[:, :3000]
        window[:, : features.shape[1]] = features
        windows.append(window)
        fell_back_before = fell_back
        rows[c.id] = {
            "audio_s": c.duration_s,
            "offline_s": best_of(offline, repeats),
            "encoder_30s_s": best_of(lambda w=window: model.encode(w), repeats),
            "ours_s": best_of(final, repeats),
            "fell_back": fell_back > fell_back_before,
            "offline_text": texts["offline"],
            "ours_text": texts["ours"],
        }
    batch = np.stack((windows * BATCH)[:BATCH])
    batched = best_of(lambda: model.model.encode(ctranslate2.StorageView.from_array(batch)), repeats) / BATCH
    single = float(np.median([r["encoder_30s_s"] for r in rows.values()]))
    total = {k: sum(r[k] for r in rows.values()) for k in ("offline_s", "encoder_30s_s", "ours_s")}
    by_id = {c.id: c for c in clips}
    return {
        "context_s": context_s,
        "full_context_s": FULL_CONTEXT_S,
        "clips": rows,
        "total": total,
        "encoder_share": total["encoder_30s_s"] / total["offline_s"],
        "speedup": total["offline_s"] / total["ours_s"],
        "encoder_batched_per_item_s": batched,
        "encoder_single_s": single,
        "batch": BATCH,
        "fallbacks": sum(r["fell_back"] for r in rows.values()),
        "wer_offline": wer([(by_id[i].ref, r["offline_text"]) for i, r in rows.items()]),
        "wer_ours": wer([(by_id[i].ref, r["ours_text"]) for i, r in rows.items()]),
    }
