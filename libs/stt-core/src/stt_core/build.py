"""From settings to a ready engine: resolve the models and device, load each once, warm up."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import structlog

from .decoder import FULL_CONTEXT_S, SHORT_FINAL_CONTEXT_S, WhisperDecoder
from .engine import Engine, EngineConfig
from .final_batch import DEFAULT_MAX, DEFAULT_WINDOW_MS, EncoderBatcher
from .model import ModelSpec, default_compute_type, load_whisper, resolve_device, resolve_model

log = structlog.get_logger(__name__)

FinalBatch = Literal["auto", "on", "off"]


@dataclass(frozen=True)
class EngineInfo:
    model: str  # the finals' model
    device: str
    compute_type: str
    draft_model: str | None = None  # the partials' model (DRAFT_MODEL); None: ``model`` does both
    final_batch: bool = False  # finals of several sessions share the encoder (FINAL_BATCH)


def build_engine(*, whisper_model: str | None, device: str, compute_type: str | None, cpu_threads: int,
                 partial_interval_ms: int, final_workers: int = 1, partial_workers: int = 1,
                 partial_order: Literal["fair", "fifo"] = "fair", final_greedy_logprob: float | None = None,
                 partials: bool = True, final_context_s: float | None = None,
                 draft_model: str | None = None, final_batch: FinalBatch = "off",
                 final_batch_window_ms: float = DEFAULT_WINDOW_MS,
                 final_batch_max: int = DEFAULT_MAX) -> tuple[Engine, EngineInfo]:
    """Raises ``ConfigError`` for a model, device or compute type that cannot work.

    ``draft_model`` (DRAFT_MODEL; None: none) is loaded beside the finals' model and decodes only the
    partials; a draft that resolves to the finals' own model is not loaded twice. ``final_batch``:
    ``auto`` batches finals' encoder passes on CUDA only, ``on`` everywhere (the tests' CPU), ``off``.
    """
    spec = resolve_model(whisper_model)
    draft_spec = resolve_model(draft_model, "DRAFT_MODEL") if draft_model and draft_model.strip() else None
    if draft_spec is not None and draft_spec.source == spec.source:
        log.info("draft_is_final_model", model=spec.display_name, detail="one model decodes both")
        draft_spec = None
    dev = resolve_device(device)
    ctype = compute_type or default_compute_type(dev)
    final_workers, cpu_threads = decode_parallelism(dev, final_workers, cpu_threads)
    batching = final_batch == "on" or (final_batch == "auto" and dev == "cuda")
    t0 = time.perf_counter()
    # CTranslate2 workers (model replicas on a GPU): the finals' model serves partials only without a draft
    serves_partials = partials and draft_spec is None
    model = load_whisper(spec, device=dev, compute_type=ctype, cpu_threads=cpu_threads,
                         num_workers=final_workers + (partial_workers if serves_partials else 0))
    config = EngineConfig(partial_interval_ms=partial_interval_ms,
                          # finals meet at the encoder only if that many can be decoding at once
                          final_workers=max(final_workers, final_batch_max) if batching else final_workers,
                          partial_workers=partial_workers, partial_order=partial_order)
    batcher = (EncoderBatcher(window_s=final_batch_window_ms / 1000, max_batch=final_batch_max)
               if batching else None)
    # short-context partials up to the partial window; past it the engine commits a prefix, which
    # needs the timestamped decode
    decoder = WhisperDecoder(model, spec.display_name, fast_partial_max_s=config.partial_window_s,
                             final_context_s=final_context_for(spec, final_context_s), batcher=batcher,
                             greedy_final_logprob=final_greedy_logprob)
    _warm_up(decoder, model)
    draft: WhisperDecoder | None = None
    if draft_spec is not None:
        draft_whisper = load_whisper(draft_spec, device=dev, compute_type=ctype, cpu_threads=cpu_threads,
                                     num_workers=partial_workers if partials else 1, variable="DRAFT_MODEL")
        draft = WhisperDecoder(draft_whisper, _distinct(draft_spec, spec),
                               fast_partial_max_s=config.partial_window_s)
        _warm_up(draft, draft_whisper)
        if not set(decoder.languages) <= set(draft.languages):
            log.warning("draft_english_only", draft_model=draft.model_name, model=decoder.model_name,
                        detail="partials in other languages come from the final model")
    log.info("model_loaded", model=spec.display_name, draft_model=draft.model_name if draft else None,
             device=dev, compute_type=ctype, seconds=round(time.perf_counter() - t0, 2),
             final_context_s=decoder.final_context_s)
    engine = Engine(decoder, config, draft=draft)
    log.info("decode_pools", final_workers=config.final_workers, partial_workers=partial_workers,
             cpu_threads=cpu_threads or "auto",
             final_batch=(f"up to {final_batch_max} within {final_batch_window_ms:g} ms" if batching
                          else "off"))
    return engine, EngineInfo(spec.display_name, dev, ctype, draft_model=engine.draft_model_name,
                              final_batch=batching)


def _warm_up(decoder: WhisperDecoder, model: Any) -> None:
    # One throwaway decode so the first user's utterance does not pay for lazy initialisation.
    decoder.has_speech(np.zeros(8000, dtype=np.float32))
    list(model.transcribe(np.zeros(8000, dtype=np.float32), language="en", beam_size=1)[0])


def _distinct(draft: ModelSpec, final: ModelSpec) -> str:
    """The draft's name as reported, never the same string as the finals' (two directories named
    alike): /health, ``ready`` and /metrics must tell them apart."""
    if draft.display_name != final.display_name:
        return draft.display_name
    return f"{draft.display_name} (draft)"


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
