"""Finals of several sessions through Whisper's encoder as one batch (``FINAL_BATCH``).

On a GPU the encoder's pass over a window is one large matrix product per layer, and a batch of N
windows costs far less than N passes: the GPU is mostly idle on one. Finals of a house's rooms tend to
end together (a TV, two people talking over each other), so the finals pool lets each final's
encoder call wait up to ``window_s`` for others, runs the encoder once on the stacked features, and
hands each decode its own slice of the output; the text is then generated for each final on its own,
with its own prompt and options, exactly as without batching. On a CPU batching buys nothing (the
cost is per frame whatever the batch; bench/RESULTS.md, section 6), so there it is off unless forced.

Only windows of the same shape go into one batch: stacking needs it, and padding a shorter window with
silence would change what the model hears, so a batched final is the same text as an unbatched one
(checked on the CPU: the encoder's output is bit-identical, tests/core/test_final_batch.py).

faster-whisper calls the encoder through ``WhisperModel.encode`` inside ``transcribe`` (offline
finals) as the decoder does for its short-context finals; ``install`` puts the batching ``encode`` on
the model instance, and only threads inside ``joining()`` (a final's decode) take part: partials on
the same model encode at once, never waiting for a batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_WINDOW_MS = 5.0
DEFAULT_MAX = 4


@dataclass(eq=False)
class _Request:
    features: np.ndarray  # [n_mels, frames]
    wake: threading.Event = field(default_factory=threading.Event)
    lead: bool = False  # this request's thread gathers and runs the next batch
    done: bool = False
    result: Any = None
    error: BaseException | None = None


class EncoderBatcher:
    """A rendezvous of decode threads at the encoder. The first to arrive leads: it waits up to
    ``window_s`` (or until ``max_batch`` have come), runs the batch and wakes the others; whoever
    arrives meanwhile forms the next batch. Thread-safe; blocking, like the decodes it serves."""

    def __init__(self, *, window_s: float = DEFAULT_WINDOW_MS / 1000, max_batch: int = DEFAULT_MAX) -> None:
        if max_batch < 1 or window_s < 0:
            raise ValueError("max_batch >= 1 and window_s >= 0")
        self.window_s = window_s
        self.max_batch = max_batch
        # told the size of every encoder call made for finals (1: it ran alone), for /metrics
        self.on_batch: Callable[[int], None] | None = None
        self._cond = threading.Condition()
        self._waiting: list[_Request] = []
        self._leader: _Request | None = None
        self._member = threading.local()
        self._plain: Callable[[np.ndarray], Any] | None = None
        self._ct2: Any = None

    def install(self, model: Any) -> None:
        """Route ``model.encode`` (a faster-whisper ``WhisperModel``) through this batcher for the
        threads that joined; once per model."""
        if self._plain is not None:
            raise RuntimeError("an EncoderBatcher serves one model")
        self._plain, self._ct2 = model.encode, model.model

        def encode(features: np.ndarray) -> Any:
            if getattr(self._member, "on", False):
                return self.encode(features)
            assert self._plain is not None
            return self._plain(features)

        model.encode = encode

    @contextmanager
    def joining(self) -> Iterator[None]:
        """The encoder calls of this thread, meanwhile, go into batches."""
        self._member.on = True
        try:
            yield
        finally:
            self._member.on = False

    def encode(self, features: np.ndarray) -> Any:
        """The encoder's output for one window (a CTranslate2 ``StorageView``), computed in a batch
        with whatever other windows of the same shape arrive within the window."""
        assert self._plain is not None, "install() first"
        if features.ndim == 3 and features.shape[0] == 1:
            features = features[0]
        if features.ndim != 2:  # already a batch of its own: nothing to join
            return self._plain(features)
        req = _Request(features)
        with self._cond:
            self._waiting.append(req)
            if self._leader is None:
                self._leader, req.lead = req, True
            self._cond.notify_all()
        if not req.lead:
            req.wake.wait()
        if not req.done:  # woken to lead (or leading from the start): it is first in the queue
            self._lead()
        if req.error is not None:
            raise req.error
        return req.result

    def _lead(self) -> None:
        deadline = time.monotonic() + self.window_s
        with self._cond:
            while len(self._waiting) < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch, self._waiting = self._waiting[:self.max_batch], self._waiting[self.max_batch:]
            # more came than one batch holds: the first of the rest leads the next one
            self._leader = self._waiting[0] if self._waiting else None
            if self._leader is not None:
                self._leader.lead = True
                self._leader.wake.set()
        groups: dict[tuple[tuple[int, ...], str], list[_Request]] = {}
        for r in batch:
            groups.setdefault((r.features.shape, r.features.dtype.str), []).append(r)
        for group in groups.values():
            self._run(group)

    def _run(self, group: list[_Request]) -> None:
        import ctranslate2

        assert self._plain is not None
        try:
            if len(group) == 1:  # alone: exactly the unbatched call
                outputs = [self._plain(group[0].features)]
            else:
                stacked = np.ascontiguousarray(np.stack([r.features for r in group]))
                # on the CPU to be sliced; generate() moves each slice back to the model's device, as
                # faster-whisper's own multi-GPU path does with the encoder output
                out = np.array(self._ct2.encode(ctranslate2.StorageView.from_array(stacked), to_cpu=True))
                outputs = [ctranslate2.StorageView.from_array(np.ascontiguousarray(out[i:i + 1]))
                           for i in range(len(group))]
            for r, o in zip(group, outputs, strict=True):
                r.result = o
        except BaseException as exc:  # every member of the batch gets the failure, none hangs
            for r in group:
                r.error = exc
        finally:
            for r in group:
                r.done = True
                r.wake.set()
        if self.on_batch is not None:
            self.on_batch(len(group))
