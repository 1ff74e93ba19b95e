"""Sending things at the pace of the audio they carry, as a microphone would."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def paced(items: Iterable[T], period_s: float, speed: float | None = 1.0,
          stop: threading.Event | None = None) -> Iterator[T]:
    """Each item when its time comes: item k at ``k * period_s / speed`` after the first, by the clock
    (no drift over a long clip). ``speed`` None: as fast as the consumer takes them. Ends early once
    ``stop`` is set."""
    t0 = time.monotonic()
    for k, item in enumerate(items):
        if stop is not None and stop.is_set():
            return
        if speed is not None:
            delay = t0 + k * period_s / speed - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield item
