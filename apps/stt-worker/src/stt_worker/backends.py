"""The one registry of backends: what each ``STT_BACKEND`` value is, how it is built, what it falls
back to. Settings, control and discovery read the names from ``backend.py``; the worker builds and
starts backends only through ``Backends`` here.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from stt_core.daemon import memory

from .backend import BACKEND_NAMES, Backend, BackendName, Emit
from .settings import WorkerSettings

log = structlog.get_logger(__name__)


def _local(settings: WorkerSettings, emit: Emit) -> Backend:
    from .backend_local import LocalBackend  # faster-whisper is loaded only by a worker that uses it

    return LocalBackend(settings, emit)


def _ws(settings: WorkerSettings, emit: Emit) -> Backend:
    from .backend_ws import WsBackend

    return WsBackend(settings, emit)


@dataclass(frozen=True)
class Kind:
    name: BackendName
    # over a network: a final later than WS_FINAL_TIMEOUT_S after the end counts as a failure
    remote: bool
    build: Callable[[WorkerSettings, Emit], Backend]


def _wyoming(settings: WorkerSettings, emit: Emit) -> Backend:
    from .backend_wyoming import WyomingBackend

    return WyomingBackend(settings, emit)


KINDS: dict[BackendName, Kind] = {
    "local": Kind("local", remote=False, build=_local),
    "ws": Kind("ws", remote=True, build=_ws),
    "wyoming": Kind("wyoming", remote=True, build=_wyoming),
}
assert tuple(KINDS) == BACKEND_NAMES, "every backend name has exactly one kind, in the same order"

REMOTE: frozenset[BackendName] = frozenset(k.name for k in KINDS.values() if k.remote)


def fallback_of(settings: WorkerSettings) -> BackendName | None:
    """Where an utterance goes when its backend fails it: the local engine, unless STT_FALLBACK=none.
    The local backend itself has nowhere further to go."""
    return "local" if settings.stt_fallback == "local" else None


class Backends:
    """Every backend this worker has built, by name: built on first use and kept, so switching back
    and forth reloads nothing, and the local engine is one whether it is chosen or the fallback."""

    def __init__(self, settings: WorkerSettings, emit: Emit) -> None:
        self.settings = settings
        self.emit = emit
        self._built: dict[BackendName, Backend] = {}
        self._started: dict[BackendName, asyncio.Task[None]] = {}

    def get(self, name: BackendName) -> Backend:
        if name not in self._built:
            self._built[name] = KINDS[name].build(self.settings, self.emit)
        return self._built[name]

    def built(self, name: BackendName) -> Backend | None:
        return self._built.get(name)

    async def start(self, name: BackendName) -> Backend:
        """Started once; ``ConfigError`` (a model that cannot load) propagates, and a later call
        tries again."""
        backend = self.get(name)
        task = self._started.get(name)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = self._started[name] = asyncio.get_running_loop().create_task(backend.start())
        try:
            await asyncio.shield(task)
        except Exception:
            self._built.pop(name, None)
            self._started.pop(name, None)
            raise
        return backend

    def prewarm(self, name: BackendName) -> None:
        """Start in the background (the fallback, when the chosen server is away): its first
        utterance then waits less or not at all."""
        if name in self._started:
            return
        task = self._started[name] = asyncio.get_running_loop().create_task(self.get(name).start())
        task.add_done_callback(self._prewarmed(name))

    def _prewarmed(self, name: BackendName) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None:
                log.error("backend_start_failed", backend=name, error=str(task.exception()))
                self._started.pop(name, None)
        return done

    def release(self, name: BackendName) -> asyncio.Task[None] | None:
        """Forget a backend at once (the local engine once it is only the fallback again: the next
        ``get`` builds a fresh one), and stop it in the background, giving its memory back to the system.
        The model and its decode buffers are freed with the last reference, and glibc returns the freed
        pages on the trim (stt_core/daemon/memory.py): a heap never reset keeps every outage's fragments."""
        backend = self._built.pop(name, None)
        task = self._started.pop(name, None)
        if backend is None:
            return None
        if task is not None and not task.done():
            task.cancel()
        return asyncio.get_running_loop().create_task(_dispose(backend))

    async def stop(self) -> None:
        for backend in self._built.values():
            await backend.stop()


async def _dispose(backend: Backend) -> None:
    await backend.stop()
    del backend
    await asyncio.to_thread(_collect_and_trim)


def _collect_and_trim() -> None:
    gc.collect()
    memory.trim()
