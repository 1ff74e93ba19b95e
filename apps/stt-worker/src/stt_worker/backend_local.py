"""``STT_BACKEND=local``: the shared streaming engine in-process, on the board's CPU."""

from __future__ import annotations

import asyncio

import structlog
from stt_core.build import build_engine
from stt_core.daemon import memory
from stt_core.engine import Engine, PartialResult, Segment
from stt_core.errors import ConfigError, PeerError
from stt_core.model import EMBEDDED_NAME
from stt_core.options import SpeechOptions, check_options

from .backend import BackendName, Emit, FinalText, PartialText, StreamFailed
from .settings import WorkerSettings

log = structlog.get_logger(__name__)


def _check(options: SpeechOptions, languages: tuple[str, ...]) -> None:
    """WHISPER_LANG and WHISPER_TASK against what the loaded model can do: a configuration error."""
    try:
        check_options(languages=languages, language=options.language, task=options.task)
    except PeerError as exc:
        variable = "WHISPER_TASK" if "task" in exc.message.split(" ")[:2] else "WHISPER_LANG"
        raise ConfigError(variable, exc.message) from None


class LocalBackend:
    name: BackendName = "local"

    def __init__(self, settings: WorkerSettings, emit: Emit) -> None:
        self.settings = settings
        self.emit = emit
        self.engine: Engine | None = None
        self._model = settings.whisper_model or EMBEDDED_NAME
        self._draft_model: str | None = settings.draft_model
        self._loading: asyncio.Task[Engine] | None = None
        # the decodes under way, kept so that none is collected before it reports
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def model(self) -> str:
        """The finals' model: the one every final names."""
        return self._model

    @property
    def draft_model(self) -> str | None:
        """The partials' model (DRAFT_MODEL), or None when ``model`` decodes them too."""
        return self._draft_model

    @property
    def connected(self) -> bool:
        return True

    async def start(self) -> None:
        await self.loaded()

    async def loaded(self) -> Engine:
        """The engine, loading it first if need be (once, however many ask at the same time).
        ``ConfigError`` propagates: a model that cannot load is the operator's to fix."""
        if self.engine is not None:
            return self.engine
        if self._loading is None or self._loading.done():
            self._loading = asyncio.get_running_loop().create_task(self._load())
        return await asyncio.shield(self._loading)

    async def _load(self) -> Engine:
        s = self.settings
        engine, info = await asyncio.to_thread(
            build_engine, whisper_model=s.whisper_model, device=s.device, compute_type=s.compute_type,
            cpu_threads=s.cpu_threads, partial_interval_ms=s.partial_interval_ms,
            final_context_s=s.final_context_s, draft_model=s.draft_model)
        _check(s.speech_options(), engine.decoder.languages)
        self.engine, self._model, self._draft_model = engine, info.model, info.draft_model
        log.info("local_models", model=info.model, draft_model=info.draft_model,
                 partials_by=engine.partial_decoder(s.speech_options()).model_name)
        return engine

    async def stop(self) -> None:
        """Stop decoding and drop the engine (the model is freed with its last reference: released as a
        fallback, nothing else holds it)."""
        engine, self.engine, self._loading = self.engine, None, None
        if engine is not None:
            await asyncio.to_thread(engine.close)

    def open(self, utterance_id: str, options: SpeechOptions) -> LocalStream:
        return LocalStream(self, utterance_id, options)

    def keep(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class LocalStream:
    """Feeds a segment of the engine. While the engine is still loading (a fallback right after the
    server vanished), the audio is kept and handed over once it is ready."""

    def __init__(self, backend: LocalBackend, utterance_id: str, options: SpeechOptions) -> None:
        self.backend = backend
        self.id = utterance_id
        self.options = options
        self.segment: Segment | None = None
        self._pending: list[bytes] = []
        self._paused = False
        self._cancelled = False  # nothing more is reported
        if backend.engine is not None:
            self._open(backend.engine)
        else:
            backend.keep(asyncio.get_running_loop().create_task(self._when_loaded()))

    async def _when_loaded(self) -> None:
        try:
            engine = await self.backend.loaded()
        except Exception as exc:  # the model cannot load: this utterance has nowhere to go
            self._fail(f"the local model did not load: {exc}")
            return
        if not self._cancelled and self.segment is None:
            self._open(engine)

    def _open(self, engine: Engine) -> None:
        self.segment = engine.open_segment(options=self.options, on_partial=self._partial)
        for pcm in self._pending:
            self.segment.feed_pcm16(pcm)
        self._pending.clear()
        if self._paused:
            self.segment.pause()

    async def _partial(self, p: PartialResult) -> None:
        if not self._cancelled:
            self.backend.emit(PartialText(self.id, "local", p.text, p.t_ms))

    def feed(self, pcm16: bytes) -> None:
        if self.segment is None:
            self._pending.append(pcm16)
        else:
            self.segment.feed_pcm16(pcm16)

    def pause(self) -> None:
        self._paused = True
        if self.segment is not None:
            self.segment.pause()

    def resume(self) -> None:
        self._paused = False
        if self.segment is not None:
            self.segment.resume()

    def finish(self) -> None:
        if not self._cancelled:
            self.backend.keep(asyncio.get_running_loop().create_task(self._finish()))

    async def _finish(self) -> None:
        try:
            engine = await self.backend.loaded()
            if self._cancelled:
                return
            if self.segment is None:
                self._open(engine)
            assert self.segment is not None
            r = await self.segment.finish()
        except Exception as exc:  # one bad utterance must not stop the rest
            log.exception("final_failed", utterance_id=self.id)
            self._fail(f"decode failed: {exc!r}")
            return
        # the decode's native buffers back to the system, off the loop (stt_core/daemon/memory.py)
        memory.trim_soon()
        if self._cancelled:
            return
        self.backend.emit(FinalText(self.id, "local", r.text, r.confidence, r.language, self.backend.model,
                                    decode_ms=r.decode_ms, speculative=r.speculative))

    def _fail(self, why: str) -> None:
        if not self._cancelled:
            self._cancelled = True
            self.backend.emit(StreamFailed(self.id, "local", why))

    def cancel(self) -> None:
        self._cancelled = True
        if self.segment is not None:
            self.segment.cancel()
