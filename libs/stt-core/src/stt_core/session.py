"""The ``/stt`` session as a plain state machine: frames in, actions out (no sockets, no clock).

The server's WebSocket handler feeds it every frame and carries out the actions it returns; the
tests feed it lists of frames. States, and what moves between them::

    AWAITING_INIT --init--> IDLE --pcm--> IN_SEGMENT --end--> IDLE ... --(fatal error)--> CLOSED

After a final, the next binary frame starts the next segment of the same connection.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field

from . import protocol as p
from .engine import FinalResult, PartialResult
from .errors import PeerError
from .options import SpeechOptions, check_options

# the session speaks in these (re-exported: s.CloseCode), the client reads them from protocol
from .protocol import CloseCode as CloseCode  # noqa: PLC0414


class State(enum.Enum):
    AWAITING_INIT = "awaiting_init"
    IDLE = "idle"
    IN_SEGMENT = "in_segment"
    CLOSED = "closed"


@dataclass(frozen=True)
class Send:
    """A JSON message for the peer: ``/stt``'s, or another dialect's (any ``protocol.Message``)."""

    message: p.Message


@dataclass(frozen=True)
class OpenSegment:
    index: int
    sample_rate: int
    options: SpeechOptions
    enable_partials: bool


@dataclass(frozen=True)
class Audio:
    pcm: bytes


@dataclass(frozen=True)
class EndSegment:
    reason: p.FinalReason


@dataclass(frozen=True)
class Close:
    code: CloseCode
    reason: str


@dataclass(frozen=True)
class HealthWanted:
    """The client asked for a health message; the adapter knows the live figures."""


@dataclass(frozen=True)
class PauseSegment:
    """The client heard trailing silence: the final's decode may start now."""


@dataclass(frozen=True)
class ResumeSegment:
    """Speech again: a decode started at the pause is stale."""


@dataclass(frozen=True)
class CancelSegment:
    """Drop the open segment without a final (a server-side gate heard too little to be speech)."""


# what every dialect's session machine returns: the engine's actions, and messages for its peer
Action = (Send | OpenSegment | Audio | EndSegment | Close | HealthWanted | PauseSegment | ResumeSegment
          | CancelSegment)


@dataclass(frozen=True)
class Limits:
    max_frame_bytes: int = 64 * 1024
    max_segment_s: float = 60.0
    # A flood of tiny frames costs per-message work without carrying audio: 20 ms frames are 50/s.
    max_frames_per_s: int = 400


def answer(exc: PeerError, close: CloseCode, in_segment: bool) -> list[Action]:
    """Every dialect's reply to bad input: its ``error``; for a fatal one, the open segment's final
    first (what was heard is not lost, marked as cut short) and the close after it. The machine
    calling it marks itself closed when ``exc.fatal``."""
    actions: list[Action] = [Send(p.Error(code=exc.code, message=exc.message))]
    if exc.fatal:
        if in_segment:
            actions.insert(0, EndSegment("error"))
        actions.append(Close(close, exc.code))
    return actions


def going_away(in_segment: bool) -> list[Action]:
    """Every dialect's shutdown: the open segment's final, then close 1001."""
    ending: list[Action] = [EndSegment("shutdown")] if in_segment else []
    return [*ending, Close(CloseCode.GOING_AWAY, "server shutting down")]


@dataclass
class RateWindow:
    """Messages counted per one-second window: true once a window holds more than ``limit``."""

    limit: int
    _start: float = 0.0
    _count: int = 0

    def over(self, now: float) -> bool:
        if now - self._start >= 1.0:
            self._start, self._count = now, 0
        self._count += 1
        return self._count > self.limit


@dataclass
class SessionMachine:
    """One connection's protocol state. ``model`` and ``partial_interval_ms`` only fill ``ready``;
    ``languages`` are the model's, against which ``init``'s options are checked."""

    limits: Limits = field(default_factory=Limits)
    model: str = ""
    draft_model: str | None = None  # the partials' model, when not ``model``
    partial_interval_ms: int = 300
    languages: tuple[str, ...] = ("en",)
    state: State = State.AWAITING_INIT
    session_id: str = ""
    sample_rate: int = 16_000
    options: SpeechOptions = field(default_factory=SpeechOptions)
    enable_partials: bool = True
    segment: int = 0
    _segment_bytes: int = 0
    _rate: RateWindow | None = None
    # messages that carried audio: only these keep a session from its idle timeout
    audio_messages: int = 0

    # ---- inputs -----------------------------------------------------------------------------

    def opened(self) -> list[Action]:
        """The connection is up; ``/stt`` waits for the client's init."""
        return []

    def receive_text(self, text: str, now: float = 0.0) -> list[Action]:
        if self.state is State.CLOSED:
            return []
        try:
            if self._flooding(now):  # text frames count too: a flood of health requests costs as much
                raise PeerError("flood", f"more than {self.limits.max_frames_per_s} frames per second",
                                fatal=True)
            msg = p.decode_client_message(text)
        except PeerError as exc:
            return self._error(exc)
        if isinstance(msg, p.Init):
            return self._on_init(msg)
        if isinstance(msg, p.End):
            return self._on_end()
        if isinstance(msg, p.Pause | p.Resume):
            return self._on_hint(msg)
        return [HealthWanted()]

    def _on_hint(self, msg: p.Pause | p.Resume) -> list[Action]:
        # only meaningful inside a segment; elsewhere a harmless hint, ignored
        if self.state is not State.IN_SEGMENT:
            return []
        return [PauseSegment() if isinstance(msg, p.Pause) else ResumeSegment()]

    def receive_bytes(self, data: bytes, now: float) -> list[Action]:
        if self.state is State.CLOSED:
            return []
        refused = self._refusal(data, now)
        if refused is not None:
            exc, close = refused
            return self._error(exc, close=close)
        if not data:
            return []
        self.audio_messages += 1
        actions: list[Action] = []
        if self.state is State.IDLE:
            self.segment += 1
            self._segment_bytes = 0
            self.state = State.IN_SEGMENT
            actions.append(OpenSegment(self.segment, self.sample_rate, self.options, self.enable_partials))
        self._segment_bytes += len(data)
        actions.append(Audio(data))
        if self._segment_bytes / 2 / self.sample_rate >= self.limits.max_segment_s:
            # A runaway segment is closed with a final rather than refused: nothing said is lost.
            self.state = State.IDLE
            actions.append(EndSegment("max_segment"))
        return actions

    def partial(self, r: PartialResult) -> list[Action]:
        """A partial of the open segment, for the client."""
        return [Send(p.Partial(text=r.text, confidence=r.confidence, t_ms=r.t_ms, session_id=self.session_id,
                               segment=self.segment))]

    def final(self, r: FinalResult, reason: p.FinalReason, segment: int) -> list[Action]:
        """The final of the segment that ended, numbered ``segment``."""
        return [Send(p.Final(text=r.text, confidence=r.confidence, t_ms=r.t_ms, session_id=self.session_id,
                             segment=segment, language=r.language, decode_ms=r.decode_ms,
                             model=self.model or None, reason=reason, speculative=r.speculative))]

    def idle_timeout(self) -> list[Action]:
        """The adapter calls this when nothing arrived for IDLE_TIMEOUT_S."""
        if self.state is State.CLOSED:
            return []
        actions: list[Action] = []
        if self.state is State.IN_SEGMENT:
            actions.append(EndSegment("end"))
        self.state = State.CLOSED
        actions += [Send(p.Error(code="idle_timeout", message="nothing received for too long")),
                    Close(CloseCode.IDLE, "idle timeout")]
        return actions

    def shutdown(self) -> list[Action]:
        """The server is stopping: finish the open segment's final, then close with 1001."""
        if self.state is State.CLOSED:
            return []
        actions = going_away(self.state is State.IN_SEGMENT)
        self.state = State.CLOSED
        return actions

    # ---- transitions ------------------------------------------------------------------------

    def _on_init(self, msg: p.Init) -> list[Action]:
        if self.state is not State.AWAITING_INIT:
            return self._error(PeerError("already_initialized", "init may be sent once per connection"))
        try:
            self.options = check_options(languages=self.languages, language=msg.lang, task=msg.task,
                                         prompt=msg.prompt, hotwords=msg.hotwords)
        except PeerError as exc:
            return self._error(PeerError(exc.code, f"init: {exc.message}", fatal=True))
        self.session_id = msg.session_id or uuid.uuid4().hex[:12]
        self.sample_rate = msg.sample_rate
        self.enable_partials = msg.enable_partials
        self.state = State.IDLE
        return [Send(p.Ready(session_id=self.session_id, sample_rate=self.sample_rate, model=self.model,
                             partial_interval_ms=self.partial_interval_ms, draft_model=self.draft_model))]

    def _on_end(self) -> list[Action]:
        if self.state is State.AWAITING_INIT:
            return self._error(PeerError("end_before_init", "send an init message first"))
        if self.state is State.IDLE:
            return self._error(PeerError("empty_segment", "end received with no audio since the last final"))
        self.state = State.IDLE
        return [EndSegment("end")]

    def _refusal(self, data: bytes, now: float) -> tuple[PeerError, CloseCode] | None:
        """Why a binary frame is refused, if it is. The order matters: only frames past init and the
        size limit count towards the flood limit, and an empty frame counts but is not refused."""
        if self.state is State.AWAITING_INIT:
            return PeerError(
                "audio_before_init", "send an init message before audio", fatal=True), CloseCode.POLICY
        if len(data) > self.limits.max_frame_bytes:
            return PeerError(
                "frame_too_large",
                f"binary frame of {len(data)} bytes is over the limit of {self.limits.max_frame_bytes}",
                fatal=True), CloseCode.TOO_BIG
        if self._flooding(now):
            return PeerError(
                "flood", f"more than {self.limits.max_frames_per_s} frames per second; send 20-40 ms frames",
                fatal=True), CloseCode.POLICY
        if len(data) % 2:
            # Alignment of the rest is unknown, so the frame is refused whole and said so.
            return PeerError(
                "odd_length", f"PCM S16LE frames hold whole samples; got {len(data)} bytes"), CloseCode.POLICY
        return None

    def _flooding(self, now: float) -> bool:
        if self._rate is None:
            self._rate = RateWindow(self.limits.max_frames_per_s)
        return self._rate.over(now)

    def _error(self, exc: PeerError, close: CloseCode = CloseCode.POLICY) -> list[Action]:
        actions = answer(exc, close, self.state is State.IN_SEGMENT)
        if exc.fatal:
            self.state = State.CLOSED
        return actions
