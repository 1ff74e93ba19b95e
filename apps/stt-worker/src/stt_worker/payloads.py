"""Every MQTT message the worker publishes, built in one place: topic (through ``Topics``), JSON and
how it is to be delivered. Pure: the worker hands the result to ``MqttLink.publish``.

Delivery follows zigbee2mqtt: state that a newcomer needs (availability, state, speech, the last
transcript, discovery) is retained; what must not be lost (finals, events, errors) is QoS 1 and queued
while the broker is away; partials are QoS 0 and dropped while it is away (a stale one helps nobody).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from stt_core import __version__

from . import discovery, hermes
from .backend import BackendName
from .settings import WorkerSettings
from .topics import HERMES_PARTIAL_TEXT_CAPTURED, HERMES_TEXT_CAPTURED
from .utterances import HeardFinal, HeardPartial, Lost

# reliable: QoS 1, kept on disk while the broker is away; retained: QoS 1, retained, re-published after
# every reconnect; ephemeral: QoS 0, dropped while away; reliable_retained: reliable, and retained by the
# broker but not re-published by us (an empty payload that deletes a retained one); control_error: QoS 1,
# a few kept in memory while away, dropped first (a flood of bad commands must not push finals out)
Delivery = Literal["reliable", "retained", "ephemeral", "reliable_retained", "control_error"]


@dataclass(frozen=True)
class Message:
    topic: str
    payload: str
    delivery: Delivery


@dataclass(frozen=True)
class WorkerState:
    """What ``<base>/<site>/state`` says (Home Assistant's switch, select and server sensor read it)."""

    backend: BackendName  # the one chosen
    active_backend: BackendName  # the one an utterance opened now would use
    backend_connected: bool
    server_connected: bool | None  # None: no server backend has been built
    listening: bool
    muted: bool
    model: str  # the finals' model
    # the partials' model when another one makes them (DRAFT_MODEL, here or on the server); None: ``model``
    draft_model: str | None = None
    # the server in use (WS_URL or WYOMING_URI may list several), without any query (a ?token=); None:
    # no server backend has been built
    server_url: str | None = None


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data)


class Payloads:
    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.topics = settings.topics
        self.site_id = settings.site_id

    def speech(self, on: bool) -> Message:
        return Message(self.topics.speech, "ON" if on else "OFF", "retained")

    def state(self, s: WorkerState) -> Message:
        return Message(self.topics.state, _json({
            "backend": s.backend, "active_backend": s.active_backend,
            "backend_connected": s.backend_connected, "server_connected": s.server_connected,
            "listening": s.listening and not s.muted, "muted": s.muted, "model": s.model,
            "draft_model": s.draft_model, "server_url": s.server_url, "version": __version__,
            "site_id": self.site_id}), "retained")

    def partial(self, p: HeardPartial) -> list[Message]:
        fields = {"utterance_id": p.utterance_id, "text": p.text, "t_ms": p.t_ms, "backend": p.backend}
        out = [Message(self.topics.partial, _json(fields), "ephemeral")]
        if self.settings.hermes:
            # the likelihood of text that may still change is not known: 0, as Rhasspy's partials say
            out.append(Message(HERMES_PARTIAL_TEXT_CAPTURED, _json(hermes.partial_text_captured(
                text=p.text, likelihood=0.0, seconds=round(p.audio_ms / 1000, 3), site_id=self.site_id,
                session_id=p.session_id, lang=self.settings.whisper_lang)), "ephemeral"))
        return out

    def final_fields(self, f: HeardFinal) -> dict[str, Any]:
        """The JSON of ``transcript/final`` (documented in the README; consumers key on these names)."""
        return {
            "site_id": self.site_id, "utterance_id": f.utterance_id, "text": f.text,
            "confidence": f.confidence, "language": f.language, "backend": f.backend, "model": f.model,
            "audio_s": round(f.audio_ms / 1000, 3), "latency_ms": f.latency_ms,
            "started_at": iso(f.started_at), "ended_at": iso(f.voiced_end_at), "fallback": f.fallback,
            # a long utterance comes in pieces, cut at VAD_MAX_UTTERANCE_S: "end" is "max_length" on
            # every piece but the last, and each later piece names the one it continues
            "end": f.end, "continues": f.continues, "part": f.part,
        }

    def final(self, f: HeardFinal) -> list[Message]:
        """``transcript/final``, and beside it Home Assistant's event (fires on every utterance, the same
        words twice included), the retained last transcript (sensor state and attributes), Hermes."""
        fields = self.final_fields(f)
        out = [
            Message(self.topics.final, _json(fields), "reliable"),
            Message(self.topics.event, _json({"event_type": discovery.EVENT_TYPE, **fields}), "reliable"),
            Message(self.topics.last, _json(fields), "retained"),
        ]
        if self.settings.hermes:
            out.append(Message(HERMES_TEXT_CAPTURED, _json(hermes.text_captured(
                text=f.text, likelihood=f.confidence, seconds=fields["audio_s"], site_id=self.site_id,
                session_id=f.session_id, lang=f.language)), "reliable"))
        return out

    def lost(self, lost: Lost) -> Message:
        return Message(self.topics.error, _json({
            "site_id": self.site_id, "utterance_id": lost.utterance_id, "code": lost.code,
            "message": lost.message, "audio_s": round(lost.audio_ms / 1000, 3),
            "started_at": iso(lost.started_at), "ended_at": iso(lost.voiced_end_at)}), "reliable")

    def refused(self, topic: str, payload: bytes, code: str, message: str) -> Message:
        """The answer to a command the worker cannot act on: enough to find the sender's mistake."""
        return Message(self.topics.error, _json({
            "site_id": self.site_id, "code": code, "message": message, "topic": topic,
            "payload": payload[:200].decode("utf-8", errors="replace")}), "control_error")

    def diagnostics(self, queue: dict[str, Any]) -> Message:
        """The retained diagnostics: the queue of finals waiting for the broker (depth, bytes, age, and
        how many utterances its bound has ever dropped)."""
        return Message(self.topics.diagnostics, _json({"site_id": self.site_id, "queue": queue}), "retained")

    def discovery(self) -> list[Message]:
        return [Message(topic, _json(config), "retained")
                for topic, config in discovery.configs(self.settings).items()]

    def undiscovery(self) -> list[Message]:
        """An empty retained payload on each discovery topic deletes the entity (``--remove-discovery``).
        Sent reliably: the command exits 0 only once the broker has them all."""
        return [Message(topic, "", "reliable_retained") for topic in discovery.configs(self.settings)]
