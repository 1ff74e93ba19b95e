"""Seed 002's dialect (NeMo streaming, ``/api/v1/audio/stream/transcribe?token=...``) as a plain state
machine. What its clients send and get, to the letter of the seed document::

    -> {"type": "config", "model", "variant", "sample_rate", "language", "chunk_duration",
        "enable_partial"}                                        required, first
    <- {"type": "status", "state": "ready", "model"}
    -> {"type": "audio", "data": "<base64 float32 mono PCM at sample_rate>"}
    <- {"type": "partial", "text", "timestamp", "is_final": false, "model"}   while audio streams
    -> {"type": "commit"}
    <- {"type": "final", ..., "is_final": true}   the audio since the last commit, if it held words
    <- {"type": "full_transcript", "text", "timestamp"}   every final since the start (or the last reset)
    -> {"type": "reset"}      <- {"type": "status", "state": "reset"}
    -> {"type": "stop"}       the audio since the last commit gets its final, then close 1000
    <- {"type": "error", "message"}   (with our ``code`` beside it)

The token is checked after the upgrade, as the seed's server does: none is close 4401, a wrong one
4403, each after an ``error``. Of the config, Whisper uses ``sample_rate`` (8-48 kHz, converted to
16 kHz here), ``language`` and ``enable_partial``; ``model``, ``variant`` and ``chunk_duration`` name
NeMo's machinery and are ignored, and ``status`` lists them under ``ignored``. Our extensions:
``"vad": true`` ends utterances at pauses by the server's voice gate (a ``final`` each, no commit
needed), and ``task``/``prompt``/``hotwords`` as on ``/stt``. Without ``vad`` one segment runs from
the first audio to the commit; past ``MAX_SEGMENT_S`` it is finalised and the next one begins, so
nothing said is lost.
"""

from __future__ import annotations

import base64
import binascii
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError
from stt_core import jsonwire
from stt_core import protocol as p
from stt_core import session as s
from stt_core import vad as v
from stt_core.audio import MAX_RATE, MIN_RATE, TARGET_RATE, PcmConverter, float_to_pcm16
from stt_core.endpointing import AutoSegmenter
from stt_core.engine import FinalResult, PartialResult
from stt_core.errors import PeerError
from stt_core.options import SpeechOptions, check_options

Action = s.Action
Auth = Literal["ok", "missing", "wrong"]
MAX_CONTROL_BYTES = 4096  # config, commit, reset and stop are a few dozen bytes
IGNORED = ("model", "variant", "chunk_duration", "overlap_duration", "max_buffer_duration",
           "partial_interval")
KINDS = "config, audio, commit, reset or stop"


class NemoConfig(BaseModel):
    """The config message; unknown fields are ignored, as the seed's server does."""

    model_config = ConfigDict(extra="allow")

    type: Literal["config"]
    sample_rate: int = Field(default=TARGET_RATE, ge=MIN_RATE, le=MAX_RATE)
    language: str | None = Field(default=None, max_length=16)
    enable_partial: StrictBool = True
    # ours, not the seed's
    vad: StrictBool = False
    task: str = Field(default="transcribe", max_length=16)
    prompt: str | None = None
    hotwords: str | None = None


class Status(p.Message):
    type: Literal["status"] = "status"
    state: Literal["ready", "configured", "reset", "error"]
    model: str
    sample_rate: int | None = None
    language: str | None = None
    vad: bool | None = None
    ignored: tuple[str, ...] | None = None


class Result(p.Message):
    type: Literal["partial", "final"]
    text: str
    timestamp: float
    is_final: bool
    model: str
    segment: int
    confidence: float
    t_ms: int
    reason: p.FinalReason | None = None


class FullTranscript(p.Message):
    type: Literal["full_transcript"] = "full_transcript"
    text: str
    timestamp: float


class State(enum.Enum):
    AWAITING_CONFIG = "awaiting_config"
    STREAMING = "streaming"
    CLOSED = "closed"


@dataclass
class NemoSession:
    languages: tuple[str, ...]
    model: str  # the engine's model, named in status and in every result
    auth: Auth = "ok"
    limits: s.Limits = field(default_factory=s.Limits)
    vad: v.VadConfig = field(default_factory=v.VadConfig)
    clock: Callable[[], float] = time.time  # the wall clock of the ``timestamp`` fields
    state: State = State.AWAITING_CONFIG
    history: list[str] = field(default_factory=list)
    _auto: AutoSegmenter | None = None  # the server's gate, when the config asked for "vad"
    _converter: PcmConverter = field(default_factory=lambda: PcmConverter(TARGET_RATE))
    _segment: int = 0
    _segment_bytes: int = 0
    _open: bool = False  # a segment without the gate is open
    _commit_waiting: bool = False
    _options: SpeechOptions = field(default_factory=SpeechOptions)
    _enable_partials: bool = True
    _rate: s.RateWindow = field(init=False)
    audio_messages: int = 0  # only these keep the session from its idle timeout

    def __post_init__(self) -> None:
        self._rate = s.RateWindow(self.limits.max_frames_per_s)

    @property
    def in_segment(self) -> bool:
        return self._auto.speaking if self._auto is not None else self._open

    @property
    def segment(self) -> int:
        return self._auto.segment if self._auto is not None else self._segment

    # ---- from the client --------------------------------------------------------------------

    def opened(self) -> list[Action]:
        """The upgrade is done: the token is checked now (the seed's order)."""
        if self.auth == "ok":
            return []
        self.state = State.CLOSED
        if self.auth == "missing":
            return [s.Send(p.Error(code="unauthorized", message="add ?token=<API key> to the URL")),
                    s.Close(s.CloseCode.UNAUTHORIZED, "unauthorized")]
        return [s.Send(p.Error(code="forbidden", message="that token is not valid here")),
                s.Close(s.CloseCode.FORBIDDEN, "forbidden")]

    def receive_text(self, text: str, now: float) -> list[Action]:
        if self.state is State.CLOSED:
            return []
        try:
            return self._text(text, now)
        except PeerError as exc:
            close = s.CloseCode.TOO_BIG if exc.code == "message_too_large" else s.CloseCode.POLICY
            return self._error(exc, close)

    def receive_bytes(self, data: bytes, now: float) -> list[Action]:
        if self.state is State.CLOSED:
            return []
        return self._error(PeerError("binary_not_expected", 'audio is sent as JSON text: {"type": "audio", '
                                                            '"data": "<base64 float32>"}'))

    def _text(self, text: str, now: float) -> list[Action]:
        if self._rate.over(now):
            raise PeerError("flood", f"over {self.limits.max_frames_per_s} messages a second", fatal=True)
        # base64 of float32 is 8/3 the bytes of the same audio as int16, MAX_FRAME_BYTES' unit
        limit = max(MAX_CONTROL_BYTES, self.limits.max_frame_bytes * 8 // 3 + 64)
        if len(text) > limit:
            raise PeerError("message_too_large", f"messages are at most {limit} bytes; send shorter "
                                                 "audio chunks", fatal=True)
        raw: Any = jsonwire.loads(text, f"JSON objects with a type: {KINDS}")
        kind = raw.get("type") if isinstance(raw, dict) else None
        if kind == "audio":
            return self._audio(raw)
        if len(text) > MAX_CONTROL_BYTES:
            raise PeerError("message_too_large", f"a {jsonwire.shown(kind, 16)} message is at most "
                                                 f"{MAX_CONTROL_BYTES} bytes")
        if kind == "config":
            return self._config(raw)
        if self.state is State.AWAITING_CONFIG:
            raise PeerError("config_required", "send a config message first", fatal=True)
        if kind == "commit":
            return self._commit()
        if kind == "reset":
            return self._reset()
        if kind == "stop":
            return self._stop()
        raise PeerError("unknown_type", f"unknown message type {jsonwire.shown(kind)}; expected {KINDS}")

    def _config(self, raw: dict[str, Any]) -> list[Action]:
        if self.in_segment:
            raise PeerError("config_mid_segment", "commit or reset before sending a new config")
        try:
            cfg = NemoConfig.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"]) or "config"
            raise PeerError("invalid_message", f"config: {where}: {err['msg']}",
                            fatal=self.state is State.AWAITING_CONFIG) from None
        try:
            options = check_options(languages=self.languages, language=cfg.language, task=cfg.task,
                                    prompt=cfg.prompt, hotwords=cfg.hotwords)
        except PeerError as exc:
            raise PeerError(exc.code, f"config: {exc.message}",
                            fatal=self.state is State.AWAITING_CONFIG) from None
        again = self.state is State.STREAMING
        self._converter = PcmConverter(cfg.sample_rate)
        self._enable_partials = cfg.enable_partial
        self._auto = AutoSegmenter(self.vad, options, cfg.enable_partial) if cfg.vad else None
        self._options = options
        self.state = State.STREAMING
        ignored = tuple(k for k in IGNORED if k in raw)
        return [s.Send(Status(state="configured" if again else "ready", model=self.model,
                              sample_rate=cfg.sample_rate, language=options.language, vad=cfg.vad,
                              ignored=ignored or None))]

    def _audio(self, raw: dict[str, Any]) -> list[Action]:
        if self.state is State.AWAITING_CONFIG:
            raise PeerError("config_required", "send a config message before audio", fatal=True)
        data = raw.get("data")
        if not isinstance(data, str):
            raise PeerError("bad_audio", "audio.data is a base64 string of float32 samples")
        try:
            decoded = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise PeerError("bad_base64", "audio.data is not valid base64; the message was dropped") from None
        if len(decoded) % 4:
            raise PeerError("odd_length", f"float32 PCM holds whole 4-byte samples; got {len(decoded)} bytes")
        self.audio_messages += 1
        samples = np.frombuffer(decoded, dtype="<f4")
        if not np.isfinite(samples).all():
            raise PeerError("bad_audio", "samples must be finite numbers (NaN or infinity found); this "
                                         "message was dropped")
        pcm = self._converter.push(float_to_pcm16(np.clip(samples, -1.0, 1.0)))
        if not pcm:
            return []
        if self._auto is not None:
            return self._auto.feed(pcm)
        actions: list[Action] = []
        if not self._open:
            self._segment += 1
            self._open, self._segment_bytes = True, 0
            actions.append(s.OpenSegment(self._segment, TARGET_RATE, self._options, self._enable_partials))
        self._segment_bytes += len(pcm)
        actions.append(s.Audio(pcm))
        if self._segment_bytes / 2 / TARGET_RATE >= self.limits.max_segment_s:
            self._open = False  # finalised, not refused: nothing said is lost
            actions.append(s.EndSegment("max_segment"))
        return actions

    def _end_open(self) -> list[Action]:
        """End the utterance being spoken, so that its final is in the history."""
        if self._auto is not None:
            return self._auto.flush()
        if not self._open:
            return []
        self._open = False
        return [s.EndSegment("end")]

    def _commit(self) -> list[Action]:
        ending = self._end_open()
        if any(isinstance(a, s.EndSegment) for a in ending):
            self._commit_waiting = True  # the full transcript follows the final
            return ending
        return [*ending, s.Send(self._full())]

    def _reset(self) -> list[Action]:
        actions: list[Action] = []
        if self._auto is not None:
            actions += self._auto.cancel()
        elif self._open:
            self._open = False
            actions.append(s.CancelSegment())
        self.history.clear()
        return [*actions, s.Send(Status(state="reset", model=self.model))]

    def _stop(self) -> list[Action]:
        actions = self._end_open()
        self.state = State.CLOSED
        return [*actions, s.Close(s.CloseCode.NORMAL, "stop")]

    def _full(self) -> FullTranscript:
        return FullTranscript(text=" ".join(self.history), timestamp=self.clock())

    # ---- from the engine --------------------------------------------------------------------

    def partial(self, r: PartialResult) -> list[Action]:
        if not r.text or self.state is not State.STREAMING:
            return []
        return [s.Send(Result(type="partial", text=r.text, timestamp=self.clock(), is_final=False,
                              model=self.model, segment=self.segment, confidence=r.confidence,
                              t_ms=r.t_ms))]

    def final(self, r: FinalResult, reason: p.FinalReason, segment: int) -> list[Action]:
        """A final with no words (silence committed) is not sent, nor kept in the history."""
        actions: list[Action] = []
        if r.text:
            self.history.append(r.text)
            actions.append(s.Send(Result(type="final", text=r.text, timestamp=self.clock(), is_final=True,
                                         model=self.model, segment=segment, confidence=r.confidence,
                                         t_ms=r.t_ms, reason=reason)))
        if self._commit_waiting:
            self._commit_waiting = False
            actions.append(s.Send(self._full()))
        return actions

    # ---- from the adapter -------------------------------------------------------------------

    def idle_timeout(self) -> list[Action]:
        if self.state is State.CLOSED:
            return []
        actions = self._end_open()
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
