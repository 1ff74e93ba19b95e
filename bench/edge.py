"""Edge cost: the worker's CPU (% of one core) and resident memory (psutil), listening to silence and
while transcribing, in ws and local modes.

Idle: both workers play a WAV of silence in real time (AUDIO_REALTIME=1) side by side; each is measured
over ``idle_s`` starting 1 s after its ``worker_started`` line (start-up, and the local model's load, are
not idling). Transcribing: the same figures over the latency run of that mode (``latency.py``), from the
worker's start to the last final.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from harness.speech import write_wav

from .rig import Rig, Sampler, start_worker, wait_event

MODES = ("ws", "local")
SETTLE_S = 1.0


def memory_by_owner(pid: int, top: int = 6) -> list[tuple[str, float]]:
    """Resident MB per owner of the mapped memory: a site-packages distribution, a system library, or the
    heap (anonymous memory: Python objects and native allocations)."""
    owners: dict[str, float] = {}
    try:
        maps = psutil.Process(pid).memory_maps(grouped=True)
    except psutil.Error:
        return []
    for m in maps:
        path = m.path
        if "site-packages/" in path:
            owner = path.split("site-packages/", 1)[1].split("/", 1)[0].split(".libs")[0]
        elif path.startswith("[") or not path:
            owner = "heap"
        else:
            owner = Path(path).name.split(".so")[0]
        owners[owner] = owners.get(owner, 0.0) + m.rss / 2**20
    return sorted(((k, round(v, 1)) for k, v in owners.items()), key=lambda kv: -kv[1])[:top]


def idle(rig: Rig, idle_s: float, out_dir: Path) -> dict[str, Any]:
    wav = write_wav(out_dir / "silence.wav", np.zeros(int((idle_s + SETTLE_S + 2) * 16000), dtype=np.int16))
    _ = rig.server_port
    workers = {m: start_worker(rig, wav, f"bench-idle-{m}", m) for m in MODES}
    samplers = {m: Sampler(w.p.pid, interval=0.5) for m, w in workers.items()}
    out: dict[str, Any] = {}
    try:
        started = {m: wait_event(w, "worker_started", 120) for m, w in workers.items()}
        time.sleep(max(0.0, started["ws"] + SETTLE_S + idle_s - 0.5 - time.time()))
        memory = {m: memory_by_owner(w.p.pid) for m, w in workers.items()}
        for m, w in workers.items():
            try:
                w.wait(idle_s + SETTLE_S + 30)
            except Exception:  # reported below, beside the figures
                out[m] = {"error": "worker did not exit by itself after its WAV"}
    finally:
        for m, w in workers.items():
            samplers[m].stop()
            w.stop()
    for m in MODES:
        t0 = started[m] + SETTLE_S
        rss, peak = samplers[m].rss_mb(t0, t0 + idle_s)
        out.setdefault(m, {}).update(
            {
                "cpu_percent": samplers[m].cpu_percent(t0, t0 + idle_s),
                "rss_mb": rss,
                "rss_peak_mb": peak,
                "seconds": idle_s,
                "memory_by_owner": memory[m],
            }
        )
    return out


def summarize(idle_figures: dict[str, Any] | None, latency: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "idle": idle_figures or {},
        "transcribing": {
            m: {"cpu_percent": s["cpu_percent"], "rss_mb": s["rss_mb"], "rss_peak_mb": s["rss_peak_mb"]}
            for m, s in latency.items()
        },
    }
