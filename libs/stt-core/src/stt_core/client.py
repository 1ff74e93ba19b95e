"""The client half of the ``/stt`` protocol as a plain state machine (the server's is ``session.py``).

No sockets, no asyncio, no clock: the adapter (the worker's ws backend) calls a method for everything
that happens (connected, a stream's audio, a text frame from the server, the connection lost) and
carries out what it returns, in order: ``SendText`` / ``SendBytes`` for the socket, and events for
the rest of the program.

One connection carries many segments, one after another; this machine maps them to *streams*,
identified by keys the caller chooses (the worker uses its utterance ids). What it keeps in step with
the server:

* Segment numbers. The server numbers the segments of a connection 1, 2, 3 ... in the order their first
  audio arrives; so does this machine, so ``partial`` and ``final`` messages (which carry ``segment``)
  go to the right stream however late they come.
* One segment open at a time. A stream's first audio while another stream's segment is still open
  ends that segment first (the worker's gate has already ended that utterance; its ``finish`` may come
  later, behind a slower one).
* No ``end`` for a segment that has no audio (the server would answer ``empty_segment``).
* Runaway segments. The server ends a segment at ``MAX_SEGMENT_S`` by itself (a final with
  ``reason="max_segment"``) and puts the audio after it into a new segment. The client learns of the
  cut only when that final arrives, and cannot tell whether audio it had already sent went into the
  next segment: it waits for the server to say. A message naming the next segment means it exists (it
  is the same stream's); ``empty_segment`` in answer to the stream's ``end`` means it does not. Until
  then no message of a later stream can arrive (the server answers in order), so the later streams'
  numbers are corrected before they are needed. The text of every cut piece is kept and put in front
  of the stream's final and partials, so nothing said is lost.

Every stream ends in exactly one ``FinalFor`` or ``Failed`` event, unless it was cancelled (then in
none). Calls naming a key that is not open (never opened, already finished, failed or cancelled) are
ignored, so an adapter may pass on whatever its callers do.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import protocol as p
from .errors import PeerError
from .options import SpeechOptions

# ``error`` codes after which the server will not serve this connection: everything fails at once
FATAL_SERVER_ERRORS = frozenset({"server_busy", "shutting_down", "unauthorized"})


# ---- what the machine returns ---------------------------------------------------------------


@dataclass(frozen=True)
class SendText:
    """A text frame to send, in order with the others."""

    text: str


@dataclass(frozen=True)
class SendBytes:
    """A binary frame (PCM S16LE) to send. The adapter may merge adjacent ones into one frame."""

    data: bytes


@dataclass(frozen=True)
class PartialFor:
    key: str
    text: str  # with the text of any pieces the server cut off before it
    t_ms: int  # audio covered, from the start of the stream (not of the server's segment)


@dataclass(frozen=True)
class FinalFor:
    """The stream's final. After a ``max_segment`` cut, the pieces joined: text, ``t_ms`` summed,
    confidence weighted by duration; the rest is the last piece's."""

    key: str
    final: p.Final


@dataclass(frozen=True)
class Failed:
    """The server will not give this stream a final (a reason for people, not a code)."""

    key: str
    reason: str


@dataclass(frozen=True)
class ServerModel:
    """The server named a model different from the one known so far (``ready``, or a final), or another
    draft model (``ready``'s ``draft_model``: the partials' model, None when ``model`` does both)."""

    model: str
    draft_model: str | None = None


@dataclass(frozen=True)
class ServerProblem:
    """A server message that was not understood or an ``error`` message. ``fatal``: the server will
    not serve this connection (every stream has failed with it); the adapter should drop it."""

    code: str
    message: str
    fatal: bool = False


Out = SendText | SendBytes
ClientEvent = PartialFor | FinalFor | Failed | ServerModel | ServerProblem
Action = Out | ClientEvent


# ---- streams --------------------------------------------------------------------------------


class _Phase(enum.Enum):
    OPENED = "opened"  # no audio sent yet: no segment
    STREAMING = "streaming"  # audio sent into `segment`, no `end` yet
    CUT = "cut"  # the server cut `segment` at max_segment; whether the next segment exists is not known
    AWAITING = "awaiting"  # `end` sent: the final of `segment` is due
    AWAITING_CUT = "awaiting_cut"  # `end` sent after a cut of `segment` not yet resolved (see the top)


_OPEN_SEGMENT = (_Phase.STREAMING, _Phase.CUT)  # the stream whose segment a new stream's audio ends
_UNRESOLVED = (_Phase.CUT, _Phase.AWAITING_CUT)
_FINAL_DUE = (_Phase.STREAMING, _Phase.AWAITING)


@dataclass
class _Stream:
    key: str
    phase: _Phase = _Phase.OPENED
    segment: int = 0
    cancelled: bool = False  # its segment is still ended and its final still awaited, then dropped
    pieces: list[p.Final] = field(default_factory=list)  # finals of segments cut at max_segment
    # ``empty_segment`` answered its ``end`` before the final of the cut that fell on its last audio
    # came (the answer is at once, the final is decoded first): that final is the stream's last
    cut_at_end: bool = False


def _joined(pieces: Sequence[p.Final], last: p.Final) -> p.Final:
    if not pieces:
        return last
    parts = [*pieces, last]
    t_ms = sum(f.t_ms for f in parts)
    # the weights bounded: a float times a server's 400-digit t_ms is an OverflowError, not a number
    ms = [min(max(f.t_ms, 0), 2**53) for f in parts]
    confidence = sum(f.confidence * m for f, m in zip(parts, ms, strict=True)) / sum(ms) if sum(ms) > 0 \
        else last.confidence
    return last.model_copy(update={
        "text": " ".join(t for f in parts if (t := f.text.strip())),
        "t_ms": t_ms, "confidence": confidence,
        "language": last.language or next((f.language for f in pieces if f.language), None)})


def _prefix(pieces: Sequence[p.Final], text: str) -> str:
    return " ".join(t for t in [*(f.text.strip() for f in pieces), text.strip()] if t)


# ---- the machine ----------------------------------------------------------------------------


class ClientSession:
    """One client's side of ``/stt``, across connections: ``connected()`` after each connection is
    made, ``lost()`` after each one ends (or the adapter gave up on it)."""

    def __init__(self, session_id: str | None, options: SpeechOptions, sample_rate: int = 16_000) -> None:
        # built once: a bad id or rate is a programming error, found at start, not on the wire. No
        # language (detect it) goes out as "": ``encode`` leaves out None, and the server's default is "en"
        self._init = p.Init(type="init", session_id=session_id, sample_rate=sample_rate,
                            lang=options.language if options.language is not None else "",
                            task=options.task, prompt=options.prompt, hotwords=options.hotwords)
        self._connected = False
        self._ready = False
        self._protocol = 1
        self._model: str | None = None
        self._draft_model: str | None = None
        self._segments = 0  # the server's segment counter, as far as known (provisional after a cut)
        self._streams: dict[str, _Stream] = {}

    # ---- state, for adapters and tests ------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        """Between ``connected()`` and ``lost()`` (or an error after which the server serves no more)."""
        return self._connected

    @property
    def ready(self) -> bool:
        """The server's ``ready`` has arrived on this connection: it is serving the session (a busy
        server accepts the connection, then refuses it with an error)."""
        return self._ready

    @property
    def protocol(self) -> int:
        """From the server's ``ready``; 1 until it comes (2 understands pause/resume)."""
        return self._protocol

    @property
    def model(self) -> str | None:
        return self._model

    @property
    def draft_model(self) -> str | None:
        """The partials' model as ``ready`` named it (DRAFT_MODEL on the server); None: ``model``'s."""
        return self._draft_model

    def segment_of(self, key: str) -> int | None:
        """The server segment the stream's audio went to last (None: not open or no audio yet)."""
        s = self._streams.get(key)
        return s.segment if s is not None and s.segment > 0 else None

    # ---- the connection ---------------------------------------------------------------------

    def connected(self) -> list[Action]:
        """A connection is up: the ``init`` to send first. Streams left from an earlier connection
        (``lost()`` not called) fail."""
        actions: list[Action] = [*self.lost("reconnected")] if self._streams else []
        self._connected = True
        self._ready = False
        self._protocol = 1
        self._segments = 0
        return [*actions, SendText(p.encode(self._init))]

    def lost(self, why: str) -> list[ClientEvent]:
        """The connection is gone: every stream still open or awaiting its final fails with ``why``."""
        self._connected = self._ready = False
        failed: list[ClientEvent] = [Failed(s.key, why) for s in self._streams.values() if not s.cancelled]
        self._streams.clear()
        return failed

    # ---- streams ----------------------------------------------------------------------------

    def open(self, key: str) -> list[ClientEvent]:
        """A new stream. Fails at once while not connected (an open key is left as it is)."""
        if not self._connected:
            return [Failed(key, "not connected to the server")]
        self._streams.setdefault(key, _Stream(key))
        return []

    def audio(self, key: str, pcm: bytes) -> list[Out]:
        """PCM S16LE at the session's rate, whole samples. The first of a stream opens its segment."""
        s = self._streams.get(key)
        if s is None or s.cancelled or not pcm or s.phase in (_Phase.AWAITING, _Phase.AWAITING_CUT):
            return []
        out: list[Out] = []
        if s.phase is _Phase.OPENED:
            current = self._open_segment_stream()
            if current is not None:
                out += self._send_end(current)
            self._segments += 1
            s.segment, s.phase = self._segments, _Phase.STREAMING
        elif s.phase is _Phase.CUT:
            # whatever was in flight, from this audio on the next segment is there and is this stream's
            self._continues(s)
        out.append(SendBytes(pcm))
        return out

    def pause(self, key: str) -> list[Out]:
        """Trailing silence: ``pause`` to a protocol 2 server, inside a segment with audio."""
        return self._hint(key, p.Pause(type="pause"))

    def resume(self, key: str) -> list[Out]:
        return self._hint(key, p.Resume(type="resume"))

    def end(self, key: str) -> list[Action]:
        """The stream's audio is complete: its final follows (``FinalFor`` or ``Failed``). A stream
        that sent no audio fails at once (no ``end``: the server would answer ``empty_segment``)."""
        s = self._streams.get(key)
        if s is None or s.cancelled:
            return []
        if s.phase is _Phase.OPENED:
            del self._streams[key]
            return [Failed(key, "no audio was sent for this utterance")]
        return list(self._send_end(s)) if s.phase in _OPEN_SEGMENT else []

    def cancel(self, key: str) -> list[Out]:
        """Drop the stream: no event for it follows. A segment with audio is still ended (or the next
        stream's audio would be added to it) and its final dropped when it comes."""
        s = self._streams.get(key)
        if s is None:
            return []
        if s.phase is _Phase.OPENED:
            del self._streams[key]
            return []
        s.cancelled = True
        return self._send_end(s) if s.phase in _OPEN_SEGMENT else []

    # ---- the server -------------------------------------------------------------------------

    def receive_text(self, text: str) -> list[ClientEvent]:
        """One text frame from the server, decoded once. Never raises: what is not understood is a
        ``ServerProblem``."""
        if not self._connected:
            return []
        try:
            msg = p.decode_server_message(text)
        except PeerError as exc:
            return [ServerProblem(exc.code, exc.message)]
        return self._on_message(msg)

    def receive_bytes(self, data: bytes) -> list[ClientEvent]:
        """The server sends no binary frames; one is reported, not acted on."""
        if not self._connected:
            return []
        return [ServerProblem("bad_server_message", f"unexpected binary frame of {len(data)} bytes")]

    # ---- internals --------------------------------------------------------------------------

    def _on_message(self, msg: p.Ready | p.Partial | p.Final | p.Health | p.Error) -> list[ClientEvent]:
        if isinstance(msg, p.Ready):
            self._ready = True
            self._protocol = msg.protocol
            return self._learned_model(msg.model, msg.draft_model)
        if isinstance(msg, p.Partial):
            return self._on_partial(msg)
        if isinstance(msg, p.Final):
            return self._on_final(msg)
        if isinstance(msg, p.Error):
            return self._on_error(msg)
        return []  # health: nothing to do

    def _open_segment_stream(self) -> _Stream | None:
        return next((s for s in self._streams.values() if s.phase in _OPEN_SEGMENT), None)

    def _send_end(self, s: _Stream) -> list[Out]:
        s.phase = _Phase.AWAITING if s.phase is _Phase.STREAMING else _Phase.AWAITING_CUT
        return [SendText(p.encode(p.End(type="end")))]

    def _hint(self, key: str, msg: p.Pause | p.Resume) -> list[Out]:
        s = self._streams.get(key)
        if self._protocol < 2 or s is None or s.cancelled or s.phase is not _Phase.STREAMING:
            return []
        return [SendText(p.encode(msg))]

    def _continues(self, s: _Stream) -> None:
        """The segment after ``s``'s cut exists and holds the rest of ``s``'s audio."""
        cut = s.segment
        if s.phase is _Phase.AWAITING_CUT:
            # streams begun after this one's `end` were numbered without the continuation: one more
            for other in self._streams.values():
                if other.segment > cut:
                    other.segment += 1
            s.phase = _Phase.AWAITING
        else:
            s.phase = _Phase.STREAMING
        self._segments += 1
        s.segment = cut + 1

    def _resolve_by_segment(self, segment: int) -> None:
        """A message naming ``segment``: if it is the one after an unresolved cut, it exists."""
        for s in self._streams.values():
            if s.phase in _UNRESOLVED and s.segment + 1 == segment:
                self._continues(s)
                return

    def _learned_model(self, model: str | None, draft_model: str | None = None, *,
                       from_ready: bool = True) -> list[ClientEvent]:
        """A final names only its own model: the draft known from ``ready`` stands until the next one."""
        draft = draft_model if from_ready else self._draft_model
        if not model or (model == self._model and draft == self._draft_model):
            return []
        self._model, self._draft_model = model, draft
        return [ServerModel(model, draft)]

    def _on_partial(self, msg: p.Partial) -> list[ClientEvent]:
        if msg.segment:
            self._resolve_by_segment(msg.segment)
            s = next((s for s in self._streams.values()
                      if s.phase is _Phase.STREAMING and s.segment == msg.segment), None)
        else:  # a server that does not number segments: the open one
            s = next((s for s in self._streams.values() if s.phase is _Phase.STREAMING), None)
        if s is None or s.cancelled:
            return []  # a late partial of a segment already ended, or of a cancelled stream
        offset = sum(f.t_ms for f in s.pieces)
        return [PartialFor(s.key, _prefix(s.pieces, msg.text), offset + msg.t_ms)]

    def _on_final(self, msg: p.Final) -> list[ClientEvent]:
        events = self._learned_model(msg.model, from_ready=False)
        if msg.segment:
            self._resolve_by_segment(msg.segment)
        due = [s for s in self._streams.values() if s.phase in _FINAL_DUE]
        if msg.segment:
            s = next((s for s in due if s.segment == msg.segment), None)
        else:  # a server that does not number segments: finals come in the order of the segments
            s = min(due, key=lambda s: s.segment, default=None)
        if s is None:
            return [*events, ServerProblem(
                "unexpected_final", f"a final for segment {msg.segment}, which no stream is waiting for")]
        ended = s.phase is _Phase.AWAITING
        if msg.reason == "max_segment" and ended and s.cut_at_end:
            msg = msg.model_copy(update={"reason": "end"})
        elif msg.reason == "max_segment":
            # the server closed a runaway segment itself; the rest of the stream's audio goes to the next
            s.pieces.append(msg)
            s.phase = _Phase.AWAITING_CUT if ended else _Phase.CUT
            return events
        del self._streams[s.key]
        if s.cancelled:
            return events
        if msg.reason == "error":
            return [*events, Failed(s.key, "the server cut the segment short on an error")]
        if not ended:
            # ended by the server (shutdown, idle) while the utterance went on: the rest would be lost
            return [*events, Failed(s.key, f"the server ended the segment before the utterance ended "
                                           f"({msg.reason})")]
        return [*events, FinalFor(s.key, _joined(s.pieces, msg))]

    def _on_error(self, msg: p.Error) -> list[ClientEvent]:
        if msg.code in FATAL_SERVER_ERRORS:
            self._connected = self._ready = False
            failed = [Failed(s.key, f"the server said {msg.code}: {msg.message}")
                      for s in self._streams.values() if not s.cancelled]
            self._streams.clear()
            return [ServerProblem(msg.code, msg.message, fatal=True), *failed]
        if msg.code == "empty_segment":
            s = next((s for s in self._streams.values() if s.phase is _Phase.AWAITING_CUT), None)
            if s is not None:
                # the stream's audio ended exactly at a cut: its pieces are the whole of it
                del self._streams[s.key]
                if s.cancelled:
                    return []
                last = s.pieces.pop()
                return [FinalFor(s.key, _joined(s.pieces, last).model_copy(update={"reason": "end"}))]
            waiting = [s for s in self._streams.values() if s.phase is _Phase.AWAITING]
            if waiting:  # the answer to the last `end` sent, whose cut's final is still being decoded
                max(waiting, key=lambda s: s.segment).cut_at_end = True
                return []
        return [ServerProblem(msg.code, msg.message)]
