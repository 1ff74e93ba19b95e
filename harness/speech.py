"""The speech set in ../shared/speech (16 kHz mono WAVs with refs.tsv), and word error rate."""

from __future__ import annotations

import os
import re
import wave
from functools import cache
from pathlib import Path

import jiwer
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPEECH_DIR = Path(os.environ.get("SPEECH_DIR", ROOT.parent / "shared" / "speech")).resolve()


@cache
def refs() -> dict[str, str]:
    out = {}
    for line in (SPEECH_DIR / "refs.tsv").read_text().splitlines():
        if line.strip():
            key, text = line.split("\t", 1)
            out[key] = text
    return out


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        if w.getnchannels() > 1:
            pcm = pcm.reshape(-1, w.getnchannels())[:, 0].copy()
        return pcm, w.getframerate()


def clip(name: str) -> np.ndarray:
    pcm, rate = read_wav(SPEECH_DIR / f"{name}.wav")
    assert rate == 16000
    return pcm


def duration(name: str) -> float:
    with wave.open(str(SPEECH_DIR / f"{name}.wav")) as w:
        return float(w.getnframes() / w.getframerate())


def pick(n: int, lo: float, hi: float) -> list[str]:
    """The first n clips by id whose duration lies in [lo, hi] seconds."""
    ids = [i for i in sorted(refs()) if lo <= duration(i) <= hi][:n]
    assert len(ids) == n, f"fewer than {n} clips of {lo}-{hi} s in {SPEECH_DIR}"
    return ids


def write_wav(path: Path, pcm: np.ndarray, rate: int = 16000, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return path


def concat(ids: list[str], path: Path, gap_s: float = 1.5,
           lead_s: float = 1.0) -> tuple[Path, list[tuple[float, float]]]:
    """One WAV of several clips separated by silence; returns it and each clip's (start, end) in s."""
    parts = [np.zeros(int(lead_s * 16000), dtype=np.int16)]
    spans, t = [], lead_s
    for i in ids:
        pcm = clip(i)
        spans.append((t, t + len(pcm) / 16000))
        t += len(pcm) / 16000 + gap_s
        parts += [pcm, np.zeros(int(gap_s * 16000), dtype=np.int16)]
    return write_wav(path, np.concatenate(parts)), spans


_punct = re.compile(r"[^a-z0-9' ]+")
_numbers = {"15th": "fifteenth", "42": "forty two", "1455": "fourteen fifty five"}


def normalise(text: str) -> str:
    words = _punct.sub(" ", text.lower().replace("-", " ")).split()
    return " ".join(_numbers.get(w, w) for w in words)


def wer(pairs: list[tuple[str, str]]) -> float:
    """Corpus word error rate over (reference, hypothesis) pairs, on normalised words."""
    refs_n = [normalise(r) for r, _ in pairs]
    hyps_n = [normalise(h) for _, h in pairs]
    return float(jiwer.wer(refs_n, hyps_n)) if any(refs_n) else 0.0


def offline(names: list[str]) -> list[str]:
    """The recordings decoded offline (faster-whisper's transcribe, beam 5, the embedded model): the
    baseline a streaming dialect's finals are held to."""
    from faster_whisper import WhisperModel
    from stt_core.model import embedded_model_dir

    model = WhisperModel(str(embedded_model_dir()), device="cpu", compute_type="int8")
    out = []
    for n in names:
        segments, _ = model.transcribe(clip(n).astype(np.float32) / 32768, language="en", beam_size=5)
        out.append(" ".join(seg.text.strip() for seg in segments))
    return out
