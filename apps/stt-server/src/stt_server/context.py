"""What every listener and connection of the server shares: settings, the one engine, metrics, the
count of sessions, and whether the server is stopping.

Each dialect's connection (``/stt`` in ``connection.py``, Wyoming in ``wyoming_server.py``) takes a
``Context``; none of them imports the others or ``app.py``, which builds the context and serves.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

from stt_core import __version__
from stt_core import protocol as p
from stt_core.build import EngineInfo
from stt_core.engine import Engine, FinalResult, PartialResult, Segment
from stt_core.options import SpeechOptions

from .metrics import Metrics
from .settings import ServerSettings
from .transcripts import Transcripts

Dialect = Literal["stt", "wyoming", "handy", "nemo", "hybrid", "socketio"]


class Session(Protocol):
    """A connection of any dialect, as the server sees it: it can be told to finish and close."""

    async def shutdown(self) -> None: ...


class Context:
    def __init__(self, settings: ServerSettings, engine: Engine, info: EngineInfo) -> None:
        self.settings = settings
        self.engine = engine
        self.info = info
        self.metrics = Metrics()
        engine.on_decode = self.metrics.observe_decode
        self.transcripts = Transcripts(settings, self.metrics)
        self.sessions: set[Session] = set()
        self.stopping = asyncio.Event()
        # seed 002's API key: STT_TOKEN, or in its single-user mode one made at start-up and logged
        self.api_key = (settings.stt_token.get_secret_value() if settings.stt_token is not None
                        else secrets.token_urlsafe(18))

    @property
    def languages(self) -> tuple[str, ...]:
        return self.engine.decoder.languages

    def refusal(self) -> str | None:
        """Why a new session cannot be taken now (the same limit for every dialect), or None."""
        if self.stopping.is_set():
            return "shutting_down"
        if len(self.sessions) >= self.settings.max_sessions:
            return "server_busy"
        return None

    def health_fields(self) -> dict[str, Any]:
        return {"ok": not self.stopping.is_set(), "model": self.info.model, "device": self.info.device,
                "compute_type": self.info.compute_type, "active_sessions": len(self.sessions)}

    def health(self) -> dict[str, object]:
        return {**self.health_fields(), "version": __version__, "protocol": p.PROTOCOL_VERSION,
                "partial_interval_ms": self.settings.partial_interval_ms}

    def metrics_text(self) -> str:
        return self.metrics.render(active_sessions=len(self.sessions),
                                   active_segments=self.engine.active_segments)


class SegmentRunner:
    """One dialect session's segment on the shared engine: the engine actions every session machine
    returns (open, audio, pause, resume, end), carried out the same way for each, with its metrics,
    and each final (and partial) handed to the transcript subscribers under the session's ``site``."""

    def __init__(self, ctx: Context, dialect: Dialect, site: str | None = None) -> None:
        self.ctx = ctx
        self.dialect: Dialect = dialect
        # the session's id for subscribers: /stt's session_id or a seed 004 clientId once known
        self.site = site or f"{dialect}-{uuid.uuid4().hex[:8]}"
        self.segment: Segment | None = None
        self.index = 0
        self._rate = 16_000

    @property
    def open(self) -> bool:
        return self.segment is not None

    def start(self, sample_rate: int, options: SpeechOptions,
              on_partial: Callable[[PartialResult], Awaitable[None]] | None,
              index: int | None = None) -> None:
        if self.segment is not None:
            self.segment.cancel()
        self._rate = sample_rate
        self.index = self.index + 1 if index is None else index
        self.segment = self.ctx.engine.open_segment(sample_rate=sample_rate, options=options,
                                                    on_partial=self._partials(on_partial))

    def _partials(self, on_partial: Callable[[PartialResult], Awaitable[None]] | None
                  ) -> Callable[[PartialResult], Awaitable[None]] | None:
        """The session's partials, with a copy for the subscribers that want them."""
        transcripts, index = self.ctx.transcripts, self.index
        if on_partial is None or not transcripts.partials:
            return on_partial

        async def both(r: PartialResult) -> None:
            transcripts.partial(self.dialect, self.site, r, index)
            await on_partial(r)

        return both

    def feed(self, pcm16: bytes) -> None:
        if self.segment is not None:
            self.segment.feed_pcm16(pcm16)
            self.ctx.metrics.count("audio_seconds_total", len(pcm16) / 2 / self._rate, dialect=self.dialect)

    def pause(self) -> None:
        if self.segment is not None:
            self.segment.pause()

    def resume(self) -> None:
        if self.segment is not None:
            self.segment.resume()

    async def finish(self, reason: str = "end") -> FinalResult | None:
        segment, self.segment = self.segment, None
        if segment is None:
            return None
        result = await segment.finish()
        self.ctx.metrics.count("segments_total", dialect=self.dialect)
        self.ctx.transcripts.final(self.dialect, self.site, result, self.index, reason)
        return result

    def cancel(self) -> None:
        segment, self.segment = self.segment, None
        if segment is not None:
            segment.cancel()
