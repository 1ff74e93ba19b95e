"""Transcript subscribers that are not the speaker: every session's finals (and, with MQTT_PARTIALS,
its partials), whatever its dialect, handed to the sinks the operator configured: MQTT in the
worker's topic layout (``mqtt_out``) and a webhook (``webhook``). Handing over never blocks a session:
each sink queues, and a sink that is down costs its own backlog, never a client's final."""

from __future__ import annotations

from typing import Protocol

import structlog
from stt_core.engine import FinalResult, PartialResult

from .metrics import Metrics
from .settings import ServerSettings
from .transcript import Transcript, site_of

log = structlog.get_logger(__name__)
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
