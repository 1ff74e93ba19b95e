"""What one run covers: which clips, how many streams, how long the silence. Three presets."""

from __future__ import annotations

from dataclasses import dataclass

from harness.speech import duration, refs

MEASUREMENTS = ("latency", "accuracy", "capacity", "edge", "final_cost", "dialects")


@dataclass(frozen=True)
class Plan:
    name: str  # "full" | "quick" | "smoke"
    latency_clips: tuple[str, ...]  # also every dialect's clips (dialects.py)
    capacity_clips: tuple[str, ...]
    levels: tuple[int, ...]  # stream counts, in order
    extra_level: int | None  # tried only when the last of ``levels`` holds
    segments_per_stream: int
    idle_s: float  # silence the idle worker listens to
    gap_s: float = 1.5  # silence between utterances in the latency WAV
    stagger_s: float = 1.0  # streams of one level start spread over this long
    final_timeout_s: float = 30.0


def _short(n: int, below_s: float = 3.0) -> tuple[str, ...]:
    return tuple(sorted((i for i in refs() if duration(i) < below_s), key=duration)[:n])


def preset(name: str) -> Plan:
    every = tuple(sorted(refs()))
    if name == "full":
        return Plan("full", every, every, (1, 2, 4, 8), 16, 2, 60.0)
    if name == "quick":
        short = _short(2)
        return Plan("quick", short, short, (1, 2), None, 1, 10.0, gap_s=1.2, stagger_s=0.3)
    if name == "smoke":
        one = _short(1)
        return Plan("smoke", one, one, (1,), None, 1, 2.0, gap_s=1.0, stagger_s=0.0, final_timeout_s=20.0)
    raise ValueError(f"unknown plan {name!r}")
