"""Prometheus text exposition without a dependency: a few counters, gauges and one histogram."""

from __future__ import annotations

import bisect
import threading
from collections import Counter, defaultdict

DECODE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0)


class Histogram:
    def __init__(self, buckets: tuple[float, ...] = DECODE_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1


# the counters, each labelled by the dialect a session speaks (stt, wyoming, ...)
COUNTERS = {
    "sessions_total": "Sessions accepted since start.",
    "segments_total": "Segments finalised since start.",
    "audio_seconds_total": "Seconds of audio received.",
    "pauses_ignored_total": "Pause hints that started no early final (one already decoding for the "
                            "segment, or its budget spent).",
}


class Metrics:
    """Thread-safe: decode times are observed from the decode pools' threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, defaultdict[str, float]] = {name: defaultdict(float) for name in COUNTERS}
        self.errors: Counter[tuple[str, str]] = Counter()  # (dialect, code)
        # speculative: a final's decode begun at a pause, before the end (it may come to nothing)
        self.decode = {"final": Histogram(), "partial": Histogram(), "speculative": Histogram()}
        # decodes by kind and model: with DRAFT_MODEL, partials are the draft's and finals the other's
        self.decodes: Counter[tuple[str, str]] = Counter()
        # finals' encoder passes (FINAL_BATCH) by how many finals each served
        self.final_batches: Counter[int] = Counter()

    def observe_decode(self, kind: str, seconds: float, model: str = "") -> None:
        with self._lock:
            self.decode[kind].observe(seconds)
            self.decodes[(kind, model)] += 1

    def observe_final_batch(self, size: int) -> None:
        with self._lock:
            self.final_batches[size] += 1

    def count(self, name: str, by: float = 1, *, dialect: str) -> None:
        with self._lock:
            self.counters[name][dialect] += by

    def error(self, code: str, *, dialect: str) -> None:
        with self._lock:
            self.errors[(dialect, code)] += 1

    def render(self, *, active_sessions: int, active_segments: int) -> str:
        with self._lock:
            lines = [
                "# HELP stt_active_sessions WebSocket sessions open now.",
                "# TYPE stt_active_sessions gauge",
                f"stt_active_sessions {active_sessions}",
                "# HELP stt_active_segments Segments being streamed or decoded now.",
                "# TYPE stt_active_segments gauge",
                f"stt_active_segments {active_segments}",
            ]
            for name, help_text in COUNTERS.items():
                lines += [f"# HELP stt_{name} {help_text}", f"# TYPE stt_{name} counter"]
                lines += [f'stt_{name}{{dialect="{d}"}} {_number(v)}'
                          for d, v in sorted(self.counters[name].items())]
            lines += ["# HELP stt_errors_total Error messages sent to clients, by dialect and code.",
                      "# TYPE stt_errors_total counter"]
            lines += [f'stt_errors_total{{dialect="{d}",code="{code}"}} {n}'
                      for (d, code), n in sorted(self.errors.items())]
            lines += ["# HELP stt_decode_seconds Time spent in one decode, by kind.",
                      "# TYPE stt_decode_seconds histogram"]
            for kind, h in self.decode.items():
                acc = 0
                for bound, n in zip(h.buckets, h.counts, strict=False):
                    acc += n
                    lines.append(f'stt_decode_seconds_bucket{{kind="{kind}",le="{bound}"}} {acc}')
                lines.append(f'stt_decode_seconds_bucket{{kind="{kind}",le="+Inf"}} {h.n}')
                lines.append(f'stt_decode_seconds_sum{{kind="{kind}"}} {h.total:.6f}')
                lines.append(f'stt_decode_seconds_count{{kind="{kind}"}} {h.n}')
            lines += ["# HELP stt_decodes_total Decodes by kind and by the model that made them.",
                      "# TYPE stt_decodes_total counter"]
            lines += [f'stt_decodes_total{{kind="{kind}",model="{_label(model)}"}} {n}'
                      for (kind, model), n in sorted(self.decodes.items())]
            lines += ["# HELP stt_final_encoder_batches_total Encoder passes of finals (FINAL_BATCH), by "
                      "how many finals each served.", "# TYPE stt_final_encoder_batches_total counter"]
            lines += [f'stt_final_encoder_batches_total{{size="{size}"}} {n}'
                      for size, n in sorted(self.final_batches.items())]
        return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    """A Prometheus label value: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"
