"""The speech set as the benchmark uses it: each clip with where its speech starts and ends, and the
percentile helpers every measurement shares."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

import numpy as np

from harness.speech import clip, refs

RATE = 16_000
# a 10 ms frame counts as speech when it is within this many dB of the clip's loudest frame
SPEECH_DB_BELOW_PEAK = 35.0


@dataclass(frozen=True)
class Clip:
    id: str
    pcm: np.ndarray  # int16, 16 kHz mono
    ref: str
    onset_s: float  # first frame of speech, from the start of the file
    end_s: float  # end of the last frame of speech (the file's trailing silence excluded)

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / RATE


def speech_bounds(pcm: np.ndarray) -> tuple[float, float]:
    """(onset, end) of speech in seconds, by frame energy relative to the clip's peak."""
    n = len(pcm) // 160
    if n == 0:
        return 0.0, len(pcm) / RATE
    frames = pcm[: n * 160].astype(np.float64).reshape(n, 160) / 32768.0
    db = 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) + 1e-9)
    loud = np.flatnonzero(db > db.max() - SPEECH_DB_BELOW_PEAK)
    return float(loud[0]) * 0.01, float(loud[-1] + 1) * 0.01


@cache
def load(clip_id: str) -> Clip:
    pcm = clip(clip_id)
    onset, end = speech_bounds(pcm)
    return Clip(clip_id, pcm, refs()[clip_id], onset, end)


def load_all(ids: Iterable[str]) -> list[Clip]:
    return [load(i) for i in ids]


def pct(values: Iterable[float | None], q: float) -> float | None:
    """The q-th percentile (0-100, linear interpolation) of the values that are not None/NaN."""
    xs = [float(v) for v in values if v is not None and not math.isnan(v)]
    return float(np.percentile(xs, q)) if xs else None


def spread(values: Iterable[float | None]) -> dict[str, float | int | None]:
    """p50, p90, max and count: how the figures of a table are given."""
    xs = [float(v) for v in values if v is not None and not math.isnan(v)]
    return {"p50": pct(xs, 50), "p90": pct(xs, 90), "max": max(xs) if xs else None, "n": len(xs)}
