"""From settings to a ready engine: resolve the model and device, load once, warm up."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import structlog

from .decoder import WhisperDecoder
from .engine import Engine, EngineConfig
from .model import default_compute_type, load_whisper, resolve_device, resolve_model

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class EngineInfo:
    model: str
    device: str
    compute_type: str


def build_engine(*, whisper_model: str | None, device: str, compute_type: str | None, cpu_threads: int,
                 partial_interval_ms: int, final_workers: int = 1, partial_workers: int = 1,
                 partials: bool = True) -> tuple[Engine, EngineInfo]:
    """Raises ``ConfigError`` for a model, device or compute type that cannot work."""
    spec = resolve_model(whisper_model)
    dev = resolve_device(device)
    ctype = compute_type or default_compute_type(dev)
    t0 = time.perf_counter()
    workers = final_workers + (partial_workers if partials else 0)
    model = load_whisper(spec, device=dev, compute_type=ctype, cpu_threads=cpu_threads, num_workers=workers)
    config = EngineConfig(partial_interval_ms=partial_interval_ms, final_workers=final_workers,
                          partial_workers=partial_workers)
    # short-context partials up to the partial window; past it the engine commits a prefix, which
    # needs the timestamped decode
    decoder = WhisperDecoder(model, spec.display_name, fast_partial_max_s=config.partial_window_s)
    # One throwaway decode so the first user's utterance does not pay for lazy initialisation.
    decoder.has_speech(np.zeros(8000, dtype=np.float32))
    list(model.transcribe(np.zeros(8000, dtype=np.float32), language="en", beam_size=1)[0])
    log.info("model_loaded", model=spec.display_name, device=dev, compute_type=ctype,
             seconds=round(time.perf_counter() - t0, 2))
    engine = Engine(decoder, EngineConfig(partial_interval_ms=partial_interval_ms,
                                          final_workers=final_workers, partial_workers=partial_workers))
    return engine, EngineInfo(spec.display_name, dev, ctype)
