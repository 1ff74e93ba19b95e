"""Server capacity: N concurrent real-time streams into one server, each a client that streams a clip in
20 ms frames paced in real time, then ends it and waits for the final (one connection per clip, several
clips one after another per stream). Streams start spread over ``stagger_s`` so their ends do not all
coincide by construction.

Per stream count: end -> final latency (p50/p90), speech onset -> first text, the median gap between
partials, WER, errors. A count *holds* when no stream failed and its p90 stays within 2x of one stream's;
the capacity is the largest count up to which every count held. The same runner drives the peers
(``peers.py``): only the ``StreamFn`` differs.
"""

from __future__ import annotations

import itertools
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.speech import wer
from harness.stt_client import health, http_get, stream

from .baseline import Baseline
from .clips import Clip, load_all, spread
from .plan import Plan
from .rig import Rig

HOLD_FACTOR = 2.0
# past this factor (or any failed stream) higher counts are not tried: they only take longer to fail
GIVE_UP_FACTOR = 4.0
METRIC_RE = re.compile(
    r'stt_decode_seconds_(?P<what>sum|count)\{kind="(?P<kind>\w+)"\} (?P<value>[0-9.e+-]+)'
)


@dataclass
class Outcome:
    clip: str
    text: str = ""
    latency_s: float | None = None  # last audio frame sent -> final received
    first_text_s: float | None = None  # speech onset -> first text (a partial, or the final)
    partial_gaps_s: list[float] = field(default_factory=list)
    partials: int = 0
    committed_s: float | None = None  # a peer's own notion of final, when it differs (WhisperLive)
    error: str | None = None


StreamFn = Callable[[Clip, float], Outcome]  # (clip, final timeout) -> what the client saw


def ours(url: str) -> StreamFn:
    """Our ``/stt`` protocol through harness.stt_client, partials on."""

    def one(c: Clip, timeout: float) -> Outcome:
        r = stream(url, c.pcm, 16000, timeout=timeout)
        times = r.partial_times
        first = (times[0] if times else r.end_at + r.latency_s) - c.onset_s
        return Outcome(
            c.id,
            str(r.final.get("text", "")),
            r.latency_s,
            first,
            [b - a for a, b in itertools.pairwise(times)],
            len(times),
        )

    return one


Probe = Callable[[], dict[str, tuple[float, int]]]  # a server's decode time so far, by kind: (sum s, count)


def decode_metrics(port: int) -> dict[str, tuple[float, int]]:
    """stt-server's ``stt_decode_seconds`` sum and count per kind (final, partial), from /metrics."""
    _, _, body = http_get(port, "/metrics")
    out: dict[str, list[float]] = {}
    for m in METRIC_RE.finditer(body):
        out.setdefault(m["kind"], [0.0, 0.0])[0 if m["what"] == "sum" else 1] = float(m["value"])
    return {k: (v[0], int(v[1])) for k, v in out.items()}


def decodes_between(
    before: dict[str, tuple[float, int]], after: dict[str, tuple[float, int]]
) -> dict[str, Any]:
    out = {}
    for kind, (total, n) in after.items():
        t0, n0 = before.get(kind, (0.0, 0))
        out[kind] = {"n": n - n0, "mean_s": (total - t0) / (n - n0) if n > n0 else None}
    return out


@dataclass(frozen=True)
class Level:
    """How one stream count is driven: N clients, each ``segments`` clips in a row."""

    streams: int
    segments: int
    stagger_s: float
    timeout: float
    seed: int = 7


def _drive(level: Level, fn: StreamFn, clips: list[Clip]) -> list[list[Outcome]]:
    rng = random.Random(level.seed * 1000 + level.streams)
    offsets = [0.0, *sorted(rng.uniform(0, level.stagger_s) for _ in range(level.streams - 1))]
    results: list[list[Outcome]] = [[] for _ in range(level.streams)]

    def client(i: int) -> None:
        time.sleep(offsets[i])
        for k in range(level.segments):
            c = clips[(i + k) % len(clips)]
            try:
                results[i].append(fn(c, level.timeout))
            except Exception as exc:  # a failed stream is a figure of this level, not a crash of the run
                results[i].append(Outcome(c.id, error=f"{type(exc).__name__}: {exc}"[:300]))
            time.sleep(0.3)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(level.streams)]
    for t in threads:
        t.start()
    longest = max(c.duration_s for c in clips)
    for t in threads:
        t.join(level.stagger_s + level.segments * (longest + level.timeout + 15))
    return results


def run_level(
    level: Level, fn: StreamFn, clips: list[Clip], base: Baseline | None = None, probe: Probe | None = None
) -> dict[str, Any]:
    before = probe() if probe else {}
    t0 = time.monotonic()
    results = _drive(level, fn, clips)
    wall_s = time.monotonic() - t0
    outcomes = [o for per in results for o in per]
    ok = [o for o in outcomes if o.error is None]
    by_id = {c.id: c for c in clips}
    ratios = [
        o.latency_s / base.decode_s[o.clip]
        for o in ok
        if base and o.latency_s is not None and base.decode_s.get(o.clip)
    ]
    return {
        "streams": level.streams,
        "segments": len(outcomes),
        "errors": len(outcomes) - len(ok),
        "unfinished_streams": sum(1 for per in results if len(per) < level.segments),
        "latency_s": spread(o.latency_s for o in ok),
        "ratio_to_baseline": spread(ratios),
        "committed_s": spread(o.committed_s for o in ok),
        "first_text_s": spread(o.first_text_s for o in ok),
        "partial_gap_s": spread(g for o in ok for g in o.partial_gaps_s),
        "partials_per_segment": sum(o.partials for o in ok) / len(ok) if ok else None,
        "wer": wer([(by_id[o.clip].ref, o.text) for o in ok]) if ok else None,
        "decodes": decodes_between(before, probe()) if probe else {},
        "wall_s": wall_s,
        "error_samples": sorted({o.error for o in outcomes if o.error})[:3],
        "outcomes": [asdict(o) for o in outcomes],
    }


def holds(level: dict[str, Any], one: dict[str, Any], factor: float = HOLD_FACTOR) -> bool:
    p90, p90_one = level["latency_s"]["p90"], one["latency_s"]["p90"]
    if level["errors"] or level["unfinished_streams"] or p90 is None or p90_one is None:
        return False
    return bool(p90 <= factor * max(p90_one, 1e-3))


def run_levels(
    fn: StreamFn, plan: Plan, clips: list[Clip], base: Baseline | None, probe: Probe | None = None
) -> dict[str, Any]:
    fn(clips[0], plan.final_timeout_s)  # warm-up: a server's lazy loading is no stream's latency

    def level(n: int) -> dict[str, Any]:
        spec = Level(n, plan.segments_per_stream, plan.stagger_s, plan.final_timeout_s)
        return run_level(spec, fn, clips, base, probe)

    levels: list[dict[str, Any]] = []
    for n in plan.levels:
        levels.append(level(n))
        if not holds(levels[-1], levels[0], GIVE_UP_FACTOR):
            break
    else:
        if plan.extra_level and holds(levels[-1], levels[0]):
            levels.append(level(plan.extra_level))
    held = 0
    for lv in levels:
        if not holds(lv, levels[0]):
            break
        held = lv["streams"]
    return {
        "levels": levels,
        "held": held,
        "hold_factor": HOLD_FACTOR,
        "one_stream_p90_s": levels[0]["latency_s"]["p90"] if levels else None,
    }


def run(rig: Rig, plan: Plan, base: Baseline | None) -> dict[str, Any]:
    port = rig.server_port
    figures = run_levels(
        ours(rig.server_url), plan, load_all(plan.capacity_clips), base, probe=lambda: decode_metrics(port)
    )
    return {**figures, "partial_interval_ms": health(port).get("partial_interval_ms")}
