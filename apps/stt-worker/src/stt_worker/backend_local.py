"""``STT_BACKEND=local``: the shared streaming engine in-process, on the board's CPU."""

from __future__ import annotations

import asyncio

import structlog
from stt_core.build import build_engine
from stt_core.engine import Engine, PartialResult, Segment

from .backend import PartialSink, Transcript
from .settings import WorkerSettings

log = structlog.get_logger(__name__)


class LocalBackend:
    name = "local"

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.engine: Engine | None = None
        self._model = "tiny.en (embedded)" if not settings.whisper_model else settings.whisper_model
        self._loading: asyncio.Task[Engine] | None = None

    @property
    def model(self) -> str:
        return self._model

    @property
    def connected(self) -> bool:
        return True

    async def start(self) -> None:
        await self.ensure_loaded()

    def prewarm(self) -> None:
        """Begin loading in the background (the ws backend calls this when the server goes away)."""
        if self.engine is None and self._loading is None:
            self._loading = asyncio.get_running_loop().create_task(self._load())

    async def ensure_loaded(self) -> Engine:
        if self.engine is not None:
            return self.engine
        self.prewarm()
        assert self._loading is not None
        return await asyncio.shield(self._loading)

    async def _load(self) -> Engine:
        s = self.settings
        # ConfigError propagates: a model that cannot load is the operator's to fix
        engine, info = await asyncio.to_thread(
            build_engine, whisper_model=s.whisper_model, device=s.device, compute_type=s.compute_type,
            cpu_threads=s.cpu_threads, partial_interval_ms=s.partial_interval_ms,
            final_context_s=s.final_context_s)
        self.engine = engine
        self._model = info.model
        return engine

    async def stop(self) -> None:
        if self.engine is not None:
            await asyncio.to_thread(self.engine.close)

    def open(self, on_partial: PartialSink | None) -> LocalStream:
        return LocalStream(self, on_partial)


class LocalStream:
    """Feeds a segment of the engine. If the engine is still loading (a fallback right after the
    server vanished), audio is kept and handed over once it is ready."""

    def __init__(self, backend: LocalBackend, on_partial: PartialSink | None) -> None:
        self.backend = backend
        self.on_partial = on_partial
        self.segment: Segment | None = None
        self._pending: list[bytes] = []
        if backend.engine is not None:
            self._open(backend.engine)

    def _open(self, engine: Engine) -> None:
        sink = self.on_partial

        async def partial(p: PartialResult) -> None:
            if sink is not None:
                await sink(p.text, p.t_ms)

        self.segment = engine.open_segment(lang=self.backend.settings.whisper_lang,
                                           on_partial=partial if sink is not None else None)
        for pcm in self._pending:
            self.segment.feed_pcm16(pcm)
        self._pending.clear()

    def feed(self, pcm16: bytes) -> None:
        if self.segment is None and self.backend.engine is not None:
            self._open(self.backend.engine)
        if self.segment is None:
            self._pending.append(pcm16)
        else:
            self.segment.feed_pcm16(pcm16)

    def pause(self) -> None:
        if self.segment is not None:
            self.segment.pause()

    def resume(self) -> None:
        if self.segment is not None:
            self.segment.resume()

    async def finish(self) -> Transcript:
        if self.segment is None:
            self._open(await self.backend.ensure_loaded())
        assert self.segment is not None
        r = await self.segment.finish()
        return Transcript(text=r.text, confidence=r.confidence, language=r.language, backend="local",
                          model=self.backend.model, decode_ms=r.decode_ms, speculative=r.speculative)

    def cancel(self) -> None:
        if self.segment is not None:
            self.segment.cancel()
