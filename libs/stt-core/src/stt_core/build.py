"""From settings to a ready engine: resolve the model and device, load once, warm up."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import structlog

from .decoder import FULL_CONTEXT_S, SHORT_FINAL_CONTEXT_S, WhisperDecoder
from .engine import Engine, EngineConfig
from .model import ModelSpec, default_compute_type, load_whisper, resolve_device, resolve_model

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class EngineInfo:
    model: str
    device: str
    compute_type: str


def build_engine(*, whisper_model: str | None, device: str, compute_type: str | None, cpu_threads: int,
                 partial_interval_ms: int, final_workers: int = 1, partial_workers: int = 1,
                 partials: bool = True, final_context_s: float | None = None) -> tuple[Engine, EngineInfo]:
    """Raises ``ConfigError`` for a model, device or compute type that cannot work."""
    spec = resolve_model(whisper_model)
    dev = resolve_device(device)
    ctype = compute_type or default_compute_type(dev)
    final_workers, cpu_threads = decode_parallelism(dev, final_workers, cpu_threads)
    t0 = time.perf_counter()
    workers = final_workers + (partial_workers if partials else 0)
    model = load_whisper(spec, device=dev, compute_type=ctype, cpu_threads=cpu_threads, num_workers=workers)
    config = EngineConfig(partial_interval_ms=partial_interval_ms, final_workers=final_workers,
                          partial_workers=partial_workers)
    # short-context partials up to the partial window; past it the engine commits a prefix, which
    # needs the timestamped decode
    decoder = WhisperDecoder(model, spec.display_name, fast_partial_max_s=config.partial_window_s,
                             final_context_s=final_context_for(spec, final_context_s))
    # One throwaway decode so the first user's utterance does not pay for lazy initialisation.
    decoder.has_speech(np.zeros(8000, dtype=np.float32))
    list(model.transcribe(np.zeros(8000, dtype=np.float32), language="en", beam_size=1)[0])
    log.info("model_loaded", model=spec.display_name, device=dev, compute_type=ctype,
             seconds=round(time.perf_counter() - t0, 2), final_context_s=decoder.final_context_s)
    engine = Engine(decoder, config)
    log.info("decode_pools", final_workers=final_workers, partial_workers=partial_workers,
             cpu_threads=cpu_threads or "auto")
    return engine, EngineInfo(spec.display_name, dev, ctype)


def decode_parallelism(device: str, final_workers: int, cpu_threads: int) -> tuple[int, int]:
    """``final_workers=0`` (auto): on the CPU, one single-threaded final decode per core; on a GPU, one.

    Measured on 2 cores with tiny.en (bench/RESULTS.md): one final decode is no faster with two
    threads than with one (0.44 s against 0.47 s), but two decodes side by side, one thread each,
    halve the queue when several sessions end at once (8 real-time streams kept their p90
    end->final within 2x of one stream's, against 4 with a single two-threaded worker).
    """
    if final_workers > 0:
        return final_workers, cpu_threads
    if device != "cpu":
        return 1, cpu_threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = max(1, min(cores, 8))
    return workers, cpu_threads or (1 if workers > 1 else 0)


def final_context_for(spec: ModelSpec, asked: float | None) -> float:
    """FINAL_CONTEXT_S, or its default: 15 s for the embedded tiny.en, 30 s (offline-exact) otherwise.

    15 s is what was checked on the embedded model (bench/RESULTS.md, section 6, "Cost of a final"):
    over the recordings in ../shared/speech its finals take 2.5x less time than offline ones, at a WER
    of 1.4% against 3.2%. Other models have not been checked, so they decode exactly as offline until
    an operator opts in.
    """
    if asked is not None:
        return asked
    return SHORT_FINAL_CONTEXT_S if spec.is_embedded else FULL_CONTEXT_S
