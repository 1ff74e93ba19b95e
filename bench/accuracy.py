"""Accuracy: word error rate of the finals the worker published (all finals of a clip, in order, against
its line in refs.tsv), beside the baseline's WER on the same clips in the same run. Same normalisation
for both (harness.speech.wer)."""

from __future__ import annotations

from typing import Any

from harness.speech import refs, wer

from .baseline import Baseline
from .latency import LatencyRun


def summarize(runs: list[LatencyRun], base: Baseline | None) -> dict[str, Any]:
    ref = refs()
    out: dict[str, Any] = {"modes": {}}
    ids: list[str] = []
    for r in runs:
        ids = [u.clip for u in r.utterances]
        out["modes"][r.mode] = {
            "wer": wer([(ref[u.clip], u.text) for u in r.utterances]),
            "clips": len(r.utterances),
            "per_clip": {u.clip: wer([(ref[u.clip], u.text)]) for u in r.utterances},
        }
    if base is not None and ids:
        out["baseline_wer"] = wer([(ref[i], base.text[i]) for i in ids if i in base.text])
        out["baseline_per_clip"] = {i: wer([(ref[i], base.text[i])]) for i in ids if i in base.text}
        for m in out["modes"].values():
            m["minus_baseline_points"] = 100 * (m["wer"] - out["baseline_wer"])
    return out
