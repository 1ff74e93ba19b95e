"""What every listener and connection of the server shares: settings, the one engine, metrics, the
count of sessions, and whether the server is stopping.

Each dialect's connection (``/stt`` in ``connection.py``, Wyoming in ``wyoming_server.py``) takes a
``Context``; none of them imports the others or ``app.py``, which builds the context and serves.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

from stt_core import __version__
from stt_core import protocol as p
from stt_core.build import EngineInfo
from stt_core.daemon import memory
from stt_core.engine import Engine, FinalResult, PartialResult, Segment
from stt_core.options import SpeechOptions

from .metrics import Metrics
from .settings import ServerSettings
from .transcripts import Transcripts

Dialect = Literal["stt", "wyoming", "handy", "nemo", "hybrid", "socketio"]
# what a refused connection is told, by the refusal's error code
REFUSALS = {
    "shutting_down": "the server is shutting down; retry later",
    "server_busy": "too many sessions; retry later",
    "ip_busy": "too many sessions from your address (MAX_SESSIONS_PER_IP); close one or retry later",
}


def peer_address(peer: object) -> str | None:
    """The address a socket's peer name (or a WSGI REMOTE_ADDR) counts under: an IPv4 address
    mapped into IPv6 (``::ffff:192.0.2.7``, from a dual-stack listener) is the IPv4 one."""
    host = peer[0] if isinstance(peer, tuple | list) and peer else peer
    if not isinstance(host, str) or not host:
        return None
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return host
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return str(mapped or ip)


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
        batcher = getattr(engine.decoder, "batcher", None)  # FINAL_BATCH: the finals' encoder batches
        if batcher is not None:
            batcher.on_batch = self.metrics.observe_final_batch
        self.transcripts = Transcripts(settings, self.metrics)
        self.sessions: set[Session] = set()
        # the open sessions of each client address, for MAX_SESSIONS_PER_IP
        self._peer_of: dict[Session, str] = {}
        self._per_peer: Counter[str] = Counter()
        self.stopping = asyncio.Event()
        # seed 002's API key: STT_TOKEN, or in its single-user mode one made at start-up and logged
        self.api_key = (settings.stt_token.get_secret_value() if settings.stt_token is not None
                        else secrets.token_urlsafe(18))

    @property
    def languages(self) -> tuple[str, ...]:
        return self.engine.decoder.languages

    def refusal(self, peer: str | None = None) -> str | None:
        """Why a new session from ``peer`` (an address from ``peer_address``) cannot be taken now (the
        same limits for every dialect), or None. A key of ``REFUSALS``."""
        if self.stopping.is_set():
            return "shutting_down"
        if len(self.sessions) >= self.settings.max_sessions:
            return "server_busy"
        if peer is not None and self._per_peer[peer] >= self.settings.max_sessions_per_ip:
            # one machine (or one hostile page's loop) must not take every MAX_SESSIONS slot
            return "ip_busy"
        return None

    def admit(self, session: Session, peer: str | None) -> None:
        """A session taken (after ``refusal`` said None): counted until ``leave``."""
        self.sessions.add(session)
        if peer is not None and session not in self._peer_of:
            self._peer_of[session] = peer
            self._per_peer[peer] += 1

    def leave(self, session: Session) -> None:
        self.sessions.discard(session)
        peer = self._peer_of.pop(session, None)
        if peer is not None:
            self._per_peer[peer] -= 1
            if self._per_peer[peer] <= 0:
                del self._per_peer[peer]

    def liveness(self) -> dict[str, object]:
        """What ``/health`` tells a client without the token when STT_TOKEN is set: up or not."""
        ok = not self.stopping.is_set()
        return {"ok": ok, "status": "ok" if ok else "stopping"}

    def health_fields(self) -> dict[str, Any]:
        """``model`` is the finals' model; ``draft_model`` the partials' one (DRAFT_MODEL), present
        only when there is one."""
        fields: dict[str, Any] = {"ok": not self.stopping.is_set(), "model": self.info.model}
        if self.info.draft_model is not None:
            fields["draft_model"] = self.info.draft_model
        return {**fields, "device": self.info.device, "compute_type": self.info.compute_type,
                "active_sessions": len(self.sessions)}

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
        # the decode's native buffers back to the system, off the loop (stt_core/daemon/memory.py)
        memory.trim_soon()
        self.ctx.metrics.count("segments_total", dialect=self.dialect)
        self.ctx.transcripts.final(self.dialect, self.site, result, self.index, reason)
        return result

    def cancel(self) -> None:
        segment, self.segment = self.segment, None
        if segment is not None:
            segment.cancel()
