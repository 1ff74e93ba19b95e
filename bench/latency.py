"""Latency, end to end: clips with pauses between them, played in real time into the real stt-worker,
finals and partials timed by an MQTT subscriber.

The WAV's time is mapped to wall time from the worker's ``worker_started`` log line: the WAV source starts
pacing right after it, frame by frame against the clock, so wav second ``t`` reaches the voice gate at
``worker_started + t`` (to within one 30 ms frame), as it would from a microphone. For each clip:

* latency: the subscriber's receive time of the clip's last final minus the wall time of the end of its
  speech (``clips.speech_bounds``: the file's trailing silence is not speech), beside the final's own
  ``latency_ms`` (the worker's clock, from the last voiced frame the gate saw);
* first partial: the subscriber's receive time of the first partial minus the wall time of speech onset.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stt_worker.settings import WorkerSettings

from harness.speech import concat

from .baseline import Baseline
from .clips import Clip, load_all, spread
from .rig import BASE_TOPIC, Message, Rig, Sampler, Subscriber, log_events, start_worker, wait_event, wall


def configured_ms(name: str) -> int:
    """A worker setting as the worker will see it: the environment, else its default."""
    default = WorkerSettings.model_fields[name].default
    return int(os.environ.get(name.upper(), default))


@dataclass
class Utterance:
    clip: str
    finals: int = 0
    text: str = ""
    latency_s: float | None = None  # subscriber: last final - end of speech
    worker_latency_s: float | None = None  # the last final's latency_ms
    first_partial_s: float | None = None  # subscriber: first partial - speech onset
    worker_first_partial_s: float | None = None  # the worker's log: from the gate's start, pre-roll included
    decode_ms: int | None = None  # the worker's log (when it says): gate closed -> decoder's result
    speculative: bool | None = None  # the worker's log: the final's decode began during the hangover
    partial_gaps_s: list[float] = field(default_factory=list)


@dataclass
class LatencyRun:
    mode: str
    hangover_ms: int
    partial_interval_ms: int
    utterances: list[Utterance]
    cpu_percent: float | None
    rss_mb: float | None
    rss_peak_mb: float | None
    fallback_finals: int
    wall_s: float
    errors: list[str]


def run(rig: Rig, ids: tuple[str, ...], mode: str, gap_s: float, out_dir: Path) -> LatencyRun:
    clips = load_all(ids)
    wav, spans = concat(list(ids), out_dir / f"latency-{mode}.wav", gap_s=gap_s)
    total_s = spans[-1][1] + gap_s
    site = f"bench-latency-{mode}"
    if mode == "ws":
        _ = rig.server_port  # up before the worker, so its first utterance goes to the server
    sub = Subscriber(rig.broker_port, f"{BASE_TOPIC}/{site}/#")
    worker = start_worker(rig, wav, site, mode)
    sampler = Sampler(worker.p.pid)
    errors: list[str] = []
    try:
        anchor = wait_event(worker, "worker_started", 120)
        try:
            code = worker.wait(total_s + 60)
            if code != 0:
                errors.append(f"worker exit status {code}: {worker.output()[-500:]}")
        except Exception:  # a hung worker is a figure of the run, not its end
            errors.append("worker did not exit by itself after its WAV")
        time.sleep(0.3)  # the last QoS 1 final is acknowledged before the worker exits; let it land
    finally:
        sampler.stop()
        worker.stop()
        sub.close()
    finals = sub.on("/transcript/final")
    utterances = match(clips, spans, anchor, finals, sub.on("/transcript/partial"), log_events(worker))
    t_end = max((m.t for m in finals), default=anchor + total_s)
    rss, rss_peak = sampler.rss_mb(anchor, t_end)
    return LatencyRun(
        mode,
        configured_ms("vad_hangover_ms"),
        configured_ms("partial_interval_ms"),
        utterances,
        sampler.cpu_percent(anchor, t_end),
        rss,
        rss_peak,
        sum(1 for m in finals if m.json().get("fallback")),
        total_s,
        errors,
    )


def match(
    clips: list[Clip],
    spans: list[tuple[float, float]],
    anchor: float,
    finals: list[Message],
    partials: list[Message],
    log: list[dict[str, Any]],
) -> list[Utterance]:
    """Each clip's finals (a long pause may honestly split a sentence in two) and partials."""
    out = [Utterance(c.id) for c in clips]

    def index(wav_t: float) -> int:
        # the clip that was playing, or whose trailing pause was: the last one started by then
        return max([0, *(i for i, (start, _) in enumerate(spans) if start - 0.25 <= wav_t)])

    owner: dict[str, int] = {}
    for m in finals:
        f = m.json()
        i = index(wall(f["ended_at"]) - anchor) if f.get("ended_at") else index(m.t - anchor)
        owner[f["utterance_id"]] = i
        u, c = out[i], clips[i]
        u.finals += 1
        u.text = f"{u.text} {f['text']}".strip()
        u.latency_s = m.t - (anchor + spans[i][0] + c.end_s)
        u.worker_latency_s = f["latency_ms"] / 1000 if f.get("latency_ms") is not None else None
    by_utterance: dict[str, list[float]] = {}
    for m in partials:
        p = m.json()
        uid = p.get("utterance_id", "")
        i = owner.get(uid, index(m.t - anchor))
        u, c = out[i], clips[i]
        since_onset = m.t - (anchor + spans[i][0] + c.onset_s)
        if u.first_partial_s is None or since_onset < u.first_partial_s:
            u.first_partial_s = since_onset
        by_utterance.setdefault(uid, []).append(m.t)
    for uid, times in by_utterance.items():
        if uid in owner:
            out[owner[uid]].partial_gaps_s += [b - a for a, b in itertools.pairwise(times)]
    for e in log:
        uid = e.get("utterance_id")
        if e.get("event") != "utterance" or uid not in owner:
            continue
        u = out[owner[uid]]
        if u.worker_first_partial_s is None and e.get("first_partial_ms") is not None:
            u.worker_first_partial_s = e["first_partial_ms"] / 1000
        # the clip's last utterance is the one whose final ended it
        u.decode_ms = e.get("decode_ms", u.decode_ms)
        u.speculative = e.get("speculative", u.speculative)
    return out


def summarize(r: LatencyRun, base: Baseline | None) -> dict[str, Any]:
    hang = r.hangover_ms / 1000
    rows = []
    for u in r.utterances:
        b = base.decode_s.get(u.clip) if base else None
        row = asdict(u)
        row["baseline_s"] = b
        row["ratio"] = (u.latency_s - hang) / b if b and u.latency_s is not None else None
        row["worker_ratio"] = (
            (u.worker_latency_s - hang) / b if b and u.worker_latency_s is not None else None
        )
        rows.append(row)
    return {
        "mode": r.mode,
        "hangover_ms": r.hangover_ms,
        "partial_interval_ms": r.partial_interval_ms,
        "latency_s": spread(u.latency_s for u in r.utterances),
        "worker_latency_s": spread(u.worker_latency_s for u in r.utterances),
        "minus_hangover_s": spread(u.latency_s - hang for u in r.utterances if u.latency_s is not None),
        "ratio": spread(row["ratio"] for row in rows),
        "worker_ratio": spread(row["worker_ratio"] for row in rows),
        "first_partial_s": spread(u.first_partial_s for u in r.utterances),
        "worker_first_partial_s": spread(u.worker_first_partial_s for u in r.utterances),
        "partial_gap_s": spread(g for u in r.utterances for g in u.partial_gaps_s),
        "decode_ms": spread(u.decode_ms for u in r.utterances),
        "speculative": sum(1 for u in r.utterances if u.speculative),
        "clips": len(r.utterances),
        "missed": sum(1 for u in r.utterances if not u.finals),
        "finals": sum(u.finals for u in r.utterances),
        "fallback_finals": r.fallback_finals,
        "cpu_percent": r.cpu_percent,
        "rss_mb": r.rss_mb,
        "rss_peak_mb": r.rss_peak_mb,
        "audio_s": r.wall_s,
        "errors": r.errors,
        "utterances": rows,
    }
