"""``STT_FALLBACK=local``: nothing the user said is lost when the server is not there.

Every utterance's audio is kept while it streams to the server. If the server is unreachable when
the utterance starts, drops mid-utterance, refuses, or sends no final within ``WS_FINAL_TIMEOUT_S``
after ``end``, the kept audio goes to the local engine, which then also carries the partials. The
next utterance tries the server again (it reconnects in the background), so the worker goes back to
it as soon as it returns.
"""

from __future__ import annotations

import structlog

from .backend import BackendUnavailable, PartialSink, Transcript
from .backend_local import LocalBackend, LocalStream
from .backend_ws import WsBackend, WsStream

log = structlog.get_logger(__name__)


class FailoverBackend:
    name = "ws"

    def __init__(self, primary: WsBackend, fallback: LocalBackend) -> None:
        self.primary = primary
        self.fallback = fallback

    @property
    def model(self) -> str:
        return self.primary.model

    @property
    def connected(self) -> bool:
        return self.primary.connected

    async def start(self) -> None:
        await self.primary.start()
        if not self.primary.connected:
            self.fallback.prewarm()

    async def stop(self) -> None:
        await self.primary.stop()
        await self.fallback.stop()

    def open(self, on_partial: PartialSink | None) -> FailoverStream:
        return FailoverStream(self, on_partial)


class FailoverStream:
    def __init__(self, backend: FailoverBackend, on_partial: PartialSink | None) -> None:
        self.backend = backend
        self.on_partial = on_partial
        self.audio: list[bytes] = []
        self.local: LocalStream | None = None
        self.paused = False
        self.primary: WsStream = backend.primary.open(on_partial)
        self.primary.on_failure(self._primary_failed)

    def _primary_failed(self, why: str) -> None:
        if why == "cancelled" or self.local is not None:
            return
        log.warning("failover", reason=why, audio_ms=sum(len(a) for a in self.audio) // 32)
        self.backend.fallback.prewarm()
        self.local = self.backend.fallback.open(self.on_partial)
        for pcm in self.audio:
            self.local.feed(pcm)
        if self.paused:
            self.local.pause()

    def feed(self, pcm16: bytes) -> None:
        self.audio.append(pcm16)
        if self.local is not None:
            self.local.feed(pcm16)
        else:
            self.primary.feed(pcm16)

    def pause(self) -> None:
        self.paused = True
        if self.local is not None:
            self.local.pause()
        else:
            self.primary.pause()

    def resume(self) -> None:
        self.paused = False
        if self.local is not None:
            self.local.resume()
        else:
            self.primary.resume()

    async def finish(self) -> Transcript:
        if self.local is None:
            try:
                return await self.primary.finish()
            except BackendUnavailable:
                pass  # _primary_failed has opened the local stream with all the audio
        assert self.local is not None
        t = await self.local.finish()
        return Transcript(text=t.text, confidence=t.confidence, language=t.language, backend="local",
                          model=t.model, fallback=True, decode_ms=t.decode_ms, speculative=t.speculative)

    def cancel(self) -> None:
        self.primary.cancel()
        if self.local is not None:
            self.local.cancel()
