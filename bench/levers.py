"""``python -m bench.levers [capacity] [greedy] [tail] [--repeats N]``: the capacity levers of issue 13, each
measured alone against a baseline of the same run (the machine is shared: ratios, not absolutes).

* ``capacity``: the capacity rig (bench/capacity.py: real-time /stt streams into one real stt-server) at 1, 8
  and 16 streams, once per variant and repeat, variants interleaved: today's engine (``PARTIAL_ORDER=fifo``,
  one partial worker), fair partials (``PARTIAL_ORDER=fair``), two partial workers (``PARTIAL_WORKERS=2``),
  greedy finals first (``FINAL_GREEDY_LOGPROB=-0.2``).
* ``greedy``: a greedy final first and beam 5 only where greedy is unsure (``WhisperDecoder``'s
  ``greedy_final_logprob``) against beam 5 alone: cost on one core (best of a few repeats) and WER on every
  clip of ../shared/speech, as bench/final_cost.py measures.
* ``tail``: how much of each clip the partials committed by the time it ends (``partial_window_s``): the
  most a final decoding only the uncommitted tail could skip, and what skipping it saves where it applies.

Figures go to bench/results/levers.json; ``bench.report`` renders them under section 3.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .clips import Clip, load_all, spread
from .plan import preset

RESULTS = Path(__file__).resolve().parent / "results" / "levers.json"
LEVELS = (1, 8, 16)
VARIANTS: dict[str, dict[str, str]] = {
    "baseline": {"PARTIAL_ORDER": "fifo", "PARTIAL_WORKERS": "1"},
    "fair": {"PARTIAL_ORDER": "fair", "PARTIAL_WORKERS": "1"},
    "workers2": {"PARTIAL_ORDER": "fifo", "PARTIAL_WORKERS": "2"},
    "greedy": {"PARTIAL_ORDER": "fifo", "PARTIAL_WORKERS": "1", "FINAL_GREEDY_LOGPROB": "-0.2"},
}
THRESHOLDS = (-0.2, -0.3, -0.5)


def log(msg: str) -> None:
    print(f"levers: {msg}", flush=True)


# ---- (a), (b): the capacity rig -----------------------------------------------------------------


def per_segment_gap(level: dict[str, Any]) -> dict[str, Any]:
    """Each segment's median partial gap, then their spread: how evenly the partials were shared."""
    medians = [statistics.median(o["partial_gaps_s"]) for o in level["outcomes"] if o["partial_gaps_s"]]
    return spread(medians)


def capacity_once(variant: str, env: dict[str, str], clips: list[Clip]) -> dict[str, Any]:
    from harness.procs import start_server

    from . import capacity
    from .rig import BENCH_SESSIONS_PER_IP

    plan = replace(preset("full"), levels=LEVELS, extra_level=None)
    proc, port = start_server({"MAX_SESSIONS_PER_IP": str(BENCH_SESSIONS_PER_IP), **env})
    try:
        fn = capacity.ours(f"ws://127.0.0.1:{port}/stt")
        out = capacity.run_levels(fn, plan, clips, None, probe=lambda: capacity.decode_metrics(port))
    finally:
        proc.stop()
    levels = []
    for lv in out["levels"]:
        levels.append({k: lv[k] for k in ("streams", "segments", "errors", "latency_s", "first_text_s",
                                          "partial_gap_s", "partials_per_segment", "wer", "decodes")}
                      | {"segment_gap_s": per_segment_gap(lv)})
    return {"variant": variant, "env": env, "held": out["held"], "levels": levels}


def capacity_runs(repeats: int, variants: list[str]) -> list[dict[str, Any]]:
    clips = load_all(preset("full").capacity_clips)
    runs = []
    for r in range(repeats):
        for v in variants:
            log(f"capacity, repeat {r + 1}/{repeats}: {v} {VARIANTS[v]}")
            runs.append(capacity_once(v, VARIANTS[v], clips) | {"repeat": r})
    return runs


def final_time(decoder: Any, audio: Any, opts: Any, repeats: int = 3) -> float:
    from .final_cost import best_of

    return best_of(lambda: decoder.final(audio, opts), repeats)


# ---- (d): greedy final first ----------------------------------------------------------------------


def greedy(clips: list[Clip], repeats: int = 3) -> dict[str, Any]:
    from faster_whisper import WhisperModel
    from stt_core.decoder import SHORT_FINAL_CONTEXT_S, WhisperDecoder
    from stt_core.model import EMBEDDED_NAME, embedded_model_dir
    from stt_core.options import SpeechOptions

    from harness.speech import wer

    model = WhisperModel(str(embedded_model_dir()), device="cpu", compute_type="int8", cpu_threads=1)
    opts = SpeechOptions(language="en")
    variants: dict[str, WhisperDecoder] = {"beam5": WhisperDecoder(model, EMBEDDED_NAME,
                                                                   final_context_s=SHORT_FINAL_CONTEXT_S)}
    for t in THRESHOLDS:
        variants[f"greedy>={t:g}"] = WhisperDecoder(
            model, EMBEDDED_NAME, final_context_s=SHORT_FINAL_CONTEXT_S, greedy_final_logprob=t)
    for d in variants.values():
        d.final(np.zeros(8000, dtype=np.float32), opts)  # Silero, tokenizer: loaded once
    out: dict[str, Any] = {}
    for name, d in variants.items():
        kept: list[str] = []
        original = d._checked_final
        texts: dict[str, str] = {}
        times: dict[str, float] = {}
        for c in clips:
            audio = c.pcm.astype(np.float32) / 32768.0

            def counting(*a: Any, original: Any = original, cid: str = c.id, kept: list[str] = kept) -> Any:
                result = original(*a)
                if result is not None and a[3] == 1:
                    kept.append(cid)  # the greedy decode was kept: no beam search ran
                return result

            d._checked_final = counting  # type: ignore[method-assign,assignment]
            texts[c.id] = d.final(audio, opts).text
            d._checked_final = original  # type: ignore[method-assign]
            times[c.id] = final_time(d, audio, opts, repeats)
        out[name] = {
            "total_s": sum(times.values()),
            "per_clip_s": times,
            "wer": wer([(c.ref, texts[c.id]) for c in clips]),
            "greedy_kept": kept,
            "texts": texts,
        }
    return {"clips": len(clips), "repeats": repeats, "variants": out}


# ---- (c): the final's tail after the committed prefix -----------------------------------------------


def tail(clips: list[Clip], step_ms: int = 300) -> dict[str, Any]:
    """Each clip fed as the partial loop sees it (a partial every ``step_ms`` of audio, the engine's own
    ``_partial_once`` and its commit), then how much was committed at the end."""
    from stt_core.build import build_engine
    from stt_core.options import SpeechOptions

    engine, _ = build_engine(whisper_model=None, device="cpu", compute_type=None, cpu_threads=1,
                             partial_interval_ms=step_ms, final_batch="off")
    opts = SpeechOptions(language="en")
    rows: dict[str, Any] = {}

    async def one(audio: Any) -> tuple[int, int]:
        seg = engine.open_segment(options=opts)
        step = 16 * step_ms
        for i in range(0, audio.size, step):
            seg.feed(audio[i:i + step])
            if seg.samples >= 16 * engine.config.first_partial_ms:
                await seg._partial_once()
        committed = seg._committed_samples
        seg.cancel()
        return committed, audio.size

    try:
        for c in clips:
            audio = c.pcm.astype(np.float32) / 32768.0
            committed, n = asyncio.run(one(audio))
            row: dict[str, Any] = {"audio_s": n / 16000, "committed_s": committed / 16000}
            if committed:
                row |= {"final_whole_s": final_time(engine.decoder, audio, opts),
                        "final_tail_s": final_time(engine.decoder, audio[committed:], opts)}
            rows[c.id] = row
    finally:
        engine.close()
    return {"partial_window_s": engine.config.partial_window_s, "clips": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.levers", description=__doc__.split("\n\n")[0])
    ap.add_argument("what", nargs="*", default=["capacity", "greedy", "tail"])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args(argv)
    data: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    from . import meta

    clips = load_all(preset("full").capacity_clips)
    t0 = time.monotonic()
    if "greedy" in args.what:
        log("greedy final first against beam 5, one core")
        data["greedy"] = greedy(clips)
    if "tail" in args.what:
        log("committed prefix at the end of each clip")
        data["tail"] = tail(clips)
    if "capacity" in args.what:
        data["capacity"] = capacity_runs(args.repeats, args.variants.split(","))
    data.setdefault("meta", {})[",".join(args.what)] = {
        **meta.collect(f".venv/bin/python -m bench.levers {' '.join(argv or [])}".strip()),
        "duration_s": time.monotonic() - t0, "load_at_end": meta.load_average()}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=1))
    log(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
