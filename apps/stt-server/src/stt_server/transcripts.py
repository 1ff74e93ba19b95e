"""Transcript subscribers that are not the speaker: every session's finals (and, with MQTT_PARTIALS,
its partials), whatever its dialect, handed to the sinks the operator configured: MQTT in the
worker's topic layout (``mqtt_out``) and a webhook (``webhook``). Handing over never blocks a session:
each sink queues, and a sink that is down costs its own backlog, never a client's final."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from stt_core.engine import FinalResult, PartialResult

from .metrics import Metrics
from .settings import ServerSettings

log = structlog.get_logger(__name__)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def site_of(name: str) -> str:
    """A session or client id as one MQTT topic level: no wildcards, no slashes, at most 64 chars."""
    return _UNSAFE.sub("_", name)[:64] or "_"


@dataclass(frozen=True)
class Transcript:
    final: bool
    dialect: str
    site: str  # the session or client id, topic-safe
    text: str
    segment: int
    t_ms: int
    confidence: float
    language: str | None = None
    reason: str | None = None
    ts: float = field(default_factory=time.time)

    def fields(self) -> dict[str, Any]:
        """The JSON both sinks send (the README documents it; consumers key on these names)."""
        out: dict[str, Any] = {"site_id": self.site, "dialect": self.dialect, "segment": self.segment,
                               "text": self.text, "confidence": round(self.confidence, 3),
                               "audio_s": round(self.t_ms / 1000, 3),
                               "at": datetime.fromtimestamp(self.ts, UTC).isoformat(timespec="milliseconds")}
        if self.final:
            out |= {"language": self.language, "reason": self.reason}
        return out


class Sink(Protocol):
    def put(self, t: Transcript) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class Transcripts:
    """The fan-out every dialect's connection calls; with no sink configured it does nothing."""

    def __init__(self, settings: ServerSettings, metrics: Metrics) -> None:
        self.partials = settings.mqtt_partials
        self.sinks: list[Sink] = []
        if settings.mqtt_host is not None:
            from .mqtt_out import MqttSink  # paho only when it is used

            self.sinks.append(MqttSink(settings, metrics))
        if settings.webhook_url is not None:
            from .webhook import WebhookSink

            self.sinks.append(WebhookSink(settings, metrics))

    async def start(self) -> None:
        for sink in self.sinks:
            await sink.start()

    async def close(self) -> None:
        """After the sessions' last finals: each sink delivers what it still holds, within its bound."""
        for sink in self.sinks:
            try:
                await sink.close()
            except Exception as exc:  # one sink's trouble must not stop the server's shutdown
                log.warning("transcript_sink_close_failed", sink=type(sink).__name__, error=str(exc))

    def final(self, dialect: str, site: str, r: FinalResult, segment: int, reason: str) -> None:
        if self.sinks and r.text:
            self._put(Transcript(True, dialect, site_of(site), r.text, segment, r.t_ms, r.confidence,
                                 r.language, reason))

    def partial(self, dialect: str, site: str, r: PartialResult, segment: int) -> None:
        if self.sinks and self.partials and r.text:
            self._put(Transcript(False, dialect, site_of(site), r.text, segment, r.t_ms, r.confidence))

    def _put(self, t: Transcript) -> None:
        for sink in self.sinks:
            sink.put(t)
