"""stt_core/daemon/memory.py: the allocator settings a long-running daemon needs (glibc)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from stt_core.daemon import memory


def test_arenas_capped_unless_the_operator_chose() -> None:
    """A fresh process: cap_arenas() calls glibc's mallopt (which answers 1 for success); with
    MALLOC_ARENA_MAX in the environment it does nothing."""
    probe = ("import ctypes, stt_core.daemon.memory as m; calls = []\n"
             "libc = m._libc(); assert libc is not None, 'not glibc'\n"
             "real = libc.mallopt\n"
             "class Spy:\n"
             "    def mallopt(self, *a): calls.append(a); return real(*a)\n"
             "m._libc = lambda: Spy()\n"
             "m.cap_arenas(); print(calls)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"[({memory.M_ARENA_MAX}, {memory.ARENAS})]"
    env = {"MALLOC_ARENA_MAX": "4", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "[]"


async def test_trim_soon_runs_off_the_loop_one_at_a_time() -> None:
    memory.trim_soon()
    memory.trim_soon()  # coalesced with the one in flight
    assert len(memory._pending) == 1
    await asyncio.gather(*memory._pending)
    assert not memory._pending
