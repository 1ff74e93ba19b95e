"""Seed 001's dialect (the "Handy" realtime server, ``/ws``) as a plain state machine.

What its clients send and get, to the letter of the seed document::

    -> {"language": "en", "task": "transcribe", "beam_size": 1}   optional, first, no "type"
    -> binary int16 PCM, 16 kHz mono, any chunk size
    -> {"type": "stop"}
    <- {"type": "partial", "text": "..."}   while speaking
    <- {"type": "final", "text": "..."}     for each utterance

The client never says where an utterance ends, so the server does: the same voice gate the worker
runs (``Endpointer``: pre-roll, hangover, minimum speech) opens a segment when speech starts and ends
it after the hangover; ``stop`` ends the one being spoken. The segment actions and the messages are
``/stt``'s (``session.OpenSegment`` ..., ``protocol.Partial``/``Final``/``Error``), so partials and
finals carry ``/stt``'s extra fields (``confidence``, ``t_ms``, ``segment``...) beside ``type`` and
``text``, which a seed client ignores. ``beam_size`` is accepted and not used: finals are decoded with
beam 5 and partials greedily, whatever a client asks (the same for every session on the engine).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from stt_core import jsonwire
from stt_core import protocol as p
from stt_core import session as s
from stt_core import vad as v
from stt_core.endpointing import AutoSegmenter
from stt_core.engine import FinalResult, PartialResult
from stt_core.errors import PeerError
from stt_core.options import SpeechOptions, check_options

MAX_TEXT_BYTES = 4096  # a config or a stop is a few dozen bytes
EXPECTED = 'JSON objects: a config, or {"type": "stop"}'
NOT_JSON = f"text messages are {EXPECTED}"


Action = s.Action


class HandyConfig(BaseModel):
    """The optional first message; unknown fields are ignored, as the seed's server does."""

    model_config = ConfigDict(extra="ignore")

    language: str | None = Field(default="en", max_length=16)
    task: str = Field(default="transcribe", max_length=16)
    beam_size: int | None = Field(default=None, ge=1, le=20)


class State(enum.Enum):
    OPEN = "open"  # config not (yet) sent: the first text message may still be one
    STREAMING = "streaming"
    CLOSED = "closed"


@dataclass
class HandySession:
    languages: tuple[str, ...]
    limits: s.Limits = field(default_factory=s.Limits)
    vad: v.VadConfig = field(default_factory=v.VadConfig)
    state: State = State.OPEN
    _auto: AutoSegmenter = field(init=False)
    _rate: s.RateWindow = field(init=False)
    audio_messages: int = 0  # only these keep the session from its idle timeout

    def __post_init__(self) -> None:
        self._auto = AutoSegmenter(self.vad)
        self._rate = s.RateWindow(self.limits.max_frames_per_s)

    @property
    def in_segment(self) -> bool:
        return self._auto.speaking

    @property
    def segment(self) -> int:
        return self._auto.segment

    @property
    def options(self) -> SpeechOptions:
        return self._auto.options

    # ---- from the client --------------------------------------------------------------------

    def opened(self) -> list[Action]:
        return []

    def receive_text(self, text: str, now: float) -> list[Action]:
        if self.state is State.CLOSED:
            return []
        try:
            return self._text(text, now)
        except PeerError as exc:
            return self._error(exc)

    def _text(self, text: str, now: float) -> list[Action]:
        if self._rate.over(now):
            raise PeerError("flood", f"over {self.limits.max_frames_per_s} messages a second", fatal=True)
        if len(text.encode()) > MAX_TEXT_BYTES:
            raise PeerError("message_too_large", f"text messages are at most {MAX_TEXT_BYTES} bytes")
        raw: Any = jsonwire.loads(text, EXPECTED)
        if not isinstance(raw, dict):
            raise PeerError("not_json", NOT_JSON)
        kind = raw.get("type")
        if kind == "stop":
            return self._stop()
        if kind is not None:
            raise PeerError("unknown_type", f"unknown message type {jsonwire.shown(kind)}; expected stop")
        if self.state is not State.OPEN:
            raise PeerError("config_after_audio", "the config message comes first, before any audio")
        try:
            cfg = HandyConfig.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"]) or "config"
            raise PeerError("invalid_message", f"config: {where}: {err['msg']}", fatal=True) from None
        try:
            self._auto.options = check_options(languages=self.languages, language=cfg.language, task=cfg.task)
        except PeerError as exc:
            raise PeerError(exc.code, f"config: {exc.message}", fatal=True) from None
        self.state = State.STREAMING
        return []

    def receive_bytes(self, data: bytes, now: float) -> list[Action]:
        if self.state is State.CLOSED:
            return []
        try:
            return self._bytes(data, now)
        except PeerError as exc:
            close = s.CloseCode.TOO_BIG if exc.code == "frame_too_large" else s.CloseCode.POLICY
            return self._error(exc, close)

    def _bytes(self, data: bytes, now: float) -> list[Action]:
        if len(data) > self.limits.max_frame_bytes:
            raise PeerError("frame_too_large", f"binary message of {len(data)} bytes is over the limit of "
                                               f"{self.limits.max_frame_bytes}", fatal=True)
        if self._rate.over(now):
            raise PeerError("flood", f"over {self.limits.max_frames_per_s} messages a second", fatal=True)
        if len(data) % 2:
            raise PeerError("odd_length", f"int16 PCM holds whole samples; got {len(data)} bytes")
        self.state = State.STREAMING  # no config: the seed's defaults (English, transcribe)
        self.audio_messages += 1
        return self._auto.feed(data)

    def _stop(self) -> list[Action]:
        """The client is done: the utterance being spoken ends with what was heard."""
        self.state = State.STREAMING
        return self._auto.flush()

    # ---- from the engine --------------------------------------------------------------------

    def partial(self, r: PartialResult) -> list[Action]:
        if not r.text or self.state is State.CLOSED:
            return []
        return [s.Send(p.Partial(text=r.text, confidence=r.confidence, t_ms=r.t_ms, segment=self.segment))]

    def final(self, r: FinalResult, reason: p.FinalReason, segment: int) -> list[Action]:
        """A final with no words (the gate opened on noise) is not sent: a seed client shows every
        final it gets."""
        if not r.text:
            return []
        return [s.Send(p.Final(text=r.text, confidence=r.confidence, t_ms=r.t_ms, segment=segment,
                               language=r.language, decode_ms=r.decode_ms, reason=reason,
                               speculative=r.speculative))]

    # ---- from the adapter -------------------------------------------------------------------

    def idle_timeout(self) -> list[Action]:
        if self.state is State.CLOSED:
            return []
        actions: list[Action] = [s.EndSegment("end")] if self.in_segment else []
        self.state = State.CLOSED
        return [*actions, s.Send(p.Error(code="idle_timeout", message="nothing received for too long")),
                s.Close(s.CloseCode.IDLE, "idle timeout")]

    def shutdown(self) -> list[Action]:
        if self.state is State.CLOSED:
            return []
        actions = s.going_away(self.in_segment)
        self.state = State.CLOSED
        return actions

    def _error(self, exc: PeerError, close: s.CloseCode = s.CloseCode.POLICY) -> list[Action]:
        actions = s.answer(exc, close, self.in_segment)
        if exc.fatal:
            self.state = State.CLOSED
        return actions
