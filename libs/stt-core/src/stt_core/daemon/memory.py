"""Native memory that a long-running daemon gives back.

Each decode runs in a pool thread, and glibc's allocator gives every thread an arena of its own (up to
8 per core). CTranslate2 and onnxruntime allocate tens of megabytes per decode in those arenas, and the
freed memory stays in each of them: measured in the soak (bench/RESULTS.md), the worker's RSS grew by
steps at every fallback decode, 326 -> 415 MB in an hour, though Python's own heap stayed flat
(tracemalloc). Two arenas and a trim after each final keep it flat at about 235 MB in the same
experiment (a decode loop of the speech set, 130 finals).

glibc only; elsewhere (musl, macOS) both are no-ops. ``MALLOC_ARENA_MAX`` in the environment, if set,
is the operator's choice and is left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
from functools import cache

M_ARENA_MAX = -8  # glibc's <malloc.h>
ARENAS = 2


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim  # noqa: B018 (glibc has it; musl and macOS do not)
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def cap_arenas(arenas: int = ARENAS) -> None:
    """Call before any thread starts (the arena count only binds threads that allocate later)."""
    libc = _libc()
    if libc is not None and "MALLOC_ARENA_MAX" not in os.environ:
        with contextlib.suppress(Exception):
            libc.mallopt(M_ARENA_MAX, arenas)


def trim() -> None:
    """Give the freed memory at the top of every arena back to the system (a few milliseconds; call it
    off the event loop)."""
    libc = _libc()
    if libc is not None:
        with contextlib.suppress(Exception):
            libc.malloc_trim(0)


_pending: set[asyncio.Future[None]] = set()


def trim_soon() -> None:
    """``trim`` on the default executor, from the event loop; one at a time (finals that end together
    share a trim), and nothing is awaited."""
    if _pending or _libc() is None:
        return
    fut = asyncio.get_running_loop().run_in_executor(None, trim)
    _pending.add(fut)
    fut.add_done_callback(_pending.discard)
