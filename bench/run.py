"""``python -m bench.run [--quick | --smoke] [--only latency,accuracy,capacity,edge,final_cost,dialects,idle]
[--peers] [--out DIR]``

Runs the measurements in an order that keeps them apart on a small machine (the baseline first, on a quiet
machine; one worker at a time), then writes the figures, plots and RESULTS.md (``report.py``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import accuracy, baseline, capacity, dialects, edge, final_cost, idle, latency, meta, peers, report
from .clips import load_all
from .plan import MEASUREMENTS, preset
from .rig import Rig

OUT = Path(__file__).resolve().parent / "out"
# the idle worker against the capture floor (bench/idle.py, also `make bench-idle` alone)
ALL = (*MEASUREMENTS, "idle")
IDLE_ONSETS = {"full": 8, "quick": 3, "smoke": 1}


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[1])
    size = ap.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", action="store_true", help="two short clips, 1-2 streams, 10 s idle (< 1 min)"
    )
    size.add_argument("--smoke", action="store_true", help="one clip, one stream, 2 s idle (the test's run)")
    ap.add_argument("--only", default="", help=f"comma-separated subset of {','.join(ALL)}")
    ap.add_argument(
        "--peers",
        action="store_true",
        help="our server's capacity beside wyoming-faster-whisper and WhisperLive (make bench-peers)",
    )
    ap.add_argument("--out", type=Path, default=OUT, help="where figures and plots of an unpublished run go")
    args = ap.parse_args(argv)
    only = {m.strip() for m in args.only.split(",") if m.strip()}
    if unknown := only - set(ALL):
        ap.error(f"unknown measurement(s) {', '.join(sorted(unknown))}; choose from {', '.join(ALL)}")
    args.measurements = {"capacity"} if args.peers else (only or set(ALL))
    return args


def log(msg: str) -> None:
    print(f"bench: {msg}", flush=True)


def measure(args: argparse.Namespace, command: str) -> dict[str, Any]:
    plan = preset("smoke" if args.smoke else "quick" if args.quick else "full")
    todo: set[str] = args.measurements
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "meta": {
            **meta.collect(command),
            "plan": plan.name,
            "measurements": sorted(todo) + (["peers"] if args.peers else []),
        },
        "plan": asdict(plan),
    }
    t0 = time.monotonic()
    with Rig() as rig:
        if todo & {"idle"}:
            # first, on a machine no other measurement of this run has warmed: it needs no baseline
            log(f"idle: workers beside the capture floors, {plan.idle_s:g} s windows")
            t_idle = time.monotonic()
            figures = idle.run(rig, plan.idle_s, IDLE_ONSETS[plan.name], [60, 90], os.cpu_count() or 2,
                               after_timeout=plan.name == "full")
            took = {"duration_s": time.monotonic() - t_idle, "load_at_end": meta.load_average()}
            results["idle"] = {"meta": {**results["meta"], **took}, **figures}
        if not todo - {"idle"}:
            results["meta"]["duration_s"] = time.monotonic() - t0
            results["meta"]["load_at_end"] = meta.load_average()
            return results
        ids = sorted(set(plan.latency_clips) | set(plan.capacity_clips))
        log(f"{plan.name} plan: baseline decode of {len(ids)} clips")
        base = baseline.measure(load_all(ids))
        results["baseline"] = base.to_json()
        if "final_cost" in todo:
            log(f"final cost: {len(plan.latency_clips)} clips decoded offline and as our finals, one core")
            repeats = 1 if plan.name == "smoke" else final_cost.REPEATS
            results["final_cost"] = final_cost.measure(load_all(list(plan.latency_clips)), repeats=repeats)
        runs = []
        if todo & {"latency", "accuracy", "edge"}:
            for mode in ("local", "ws"):
                log(f"latency, {mode}: {len(plan.latency_clips)} clips in real time through stt-worker")
                runs.append(latency.run(rig, plan.latency_clips, mode, plan.gap_s, out_dir))
        summaries = {r.mode: latency.summarize(r, base) for r in runs}
        if "latency" in todo:
            results["latency"] = summaries
        if "accuracy" in todo:
            results["accuracy"] = accuracy.summarize(runs, base)
        if "capacity" in todo:
            log(f"capacity: {plan.levels} real-time streams into one stt-server")
            results["capacity"] = capacity.run(rig, plan, base)
        if "edge" in todo:
            log(f"edge: idle workers, {plan.idle_s:g} s of silence")
            results["edge"] = edge.summarize(edge.idle(rig, plan.idle_s, out_dir), summaries)
    if "dialects" in todo:
        # its own server (Wyoming and Socket.IO ports, STT_TOKEN), after the rig's is stopped
        log(f"dialects: {len(plan.latency_clips)} clips in real time into each dialect of one stt-server")
        results["dialects"] = dialects.run(plan, base, out_dir, log)
    if args.peers:
        results["peers"] = peers.run(plan, base)
    results["meta"]["duration_s"] = time.monotonic() - t0
    results["meta"]["load_at_end"] = meta.load_average()
    return results


MAKE_TARGETS = {(): "make bench", ("--quick",): "make bench-quick", ("--peers",): "make bench-peers"}


def command_line(argv: list[str]) -> str:
    exe = Path(sys.executable)
    shown = os.path.relpath(exe, meta.ROOT) if exe.is_relative_to(meta.ROOT) else str(exe)
    return shlex.join([shown, "-m", "bench.run", *argv])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    command = command_line(argv)
    results = measure(args, command)
    results["meta"]["make"] = MAKE_TARGETS.get(tuple(argv))
    kind = "peers" if args.peers else "bench"
    publish = (
        not (args.quick or args.smoke)
        and (args.peers or args.measurements == set(ALL))
        and args.out == OUT
        and not os.environ.get("BENCH_NO_PUBLISH")
    )
    target = report.write(kind, results, args.out, publish)
    log(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
