"""Seed 003's dialect (the hybrid gateway, ``/ws/transcribe``) as a plain state machine.

What its clients send and get, to the letter of the seed document::

    -> binary: [int32 LE n][n bytes of JSON metadata {"sampleRate": 48000}][int16 LE PCM, mono]
       (the seed's ``sendAudioChunk``: a Blob of header, metadata and ``pcmData.buffer``), at the
       browser's own rate, as often as its audio callback runs
    <- {"type": "realtime", "text": "..."}       while the user speaks (our partials)
    <- {"type": "fullSentence", "text": "..."}   when the user pauses (our final)

The client never says where a sentence ends, so the server's voice gate does (pre-roll, hangover,
minimum speech, ``VAD_*``). Audio is converted to 16 kHz on arrival; a packet whose ``sampleRate``
differs from the one before starts a new conversion (the sentence being spoken goes on). Text frames
are not part of the dialect ("Do not send text/JSON directly"): each gets an ``error`` and is
dropped. Bad packets get ``{"type": "error", "code", "message"}`` (the seed is silent on errors; the
shape is ``/stt``'s) and are dropped; the connection goes on, except for a flood or an oversized
frame. The seed's draft/heavy model split is one engine here: ``realtime`` comes from the partial
decodes, ``fullSentence`` from the final decode of the whole sentence.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import Any, Literal

from stt_core import jsonwire
from stt_core import protocol as p
from stt_core import session as s
from stt_core import vad as v
from stt_core.audio import MAX_RATE, MIN_RATE, PcmConverter
from stt_core.endpointing import AutoSegmenter
from stt_core.engine import FinalResult, PartialResult
from stt_core.errors import PeerError

Action = s.Action
MAX_METADATA_BYTES = 1024  # {"sampleRate":48000} is 20


class Realtime(p.Message):
    type: Literal["realtime"] = "realtime"
    text: str


class FullSentence(p.Message):
    type: Literal["fullSentence"] = "fullSentence"
    text: str


class State(enum.Enum):
    STREAMING = "streaming"
    CLOSED = "closed"


def unpack(packet: bytes) -> tuple[int, bytes]:
    """One packet as the seed's JavaScript builds it: its ``sampleRate`` and its int16 PCM, or a
    ``PeerError`` saying what is wrong with it."""
    if len(packet) < 4:
        raise PeerError("bad_packet", f"a packet starts with a 4-byte length; got {len(packet)} bytes")
    (n,) = struct.unpack_from("<i", packet)
    if n <= 0 or n > MAX_METADATA_BYTES:
        raise PeerError("bad_packet", f"the metadata length is {n}; it is 1-{MAX_METADATA_BYTES} bytes")
    if 4 + n > len(packet):
        raise PeerError("bad_packet", f"the header says {n} bytes of metadata; the packet holds "
                                      f"{len(packet) - 4} after it")
    try:
        meta: Any = jsonwire.loads(packet[4:4 + n])
    except PeerError:
        raise PeerError("bad_metadata", 'the metadata is not JSON: {"sampleRate": <Hz>}') from None
    rate = meta.get("sampleRate") if isinstance(meta, dict) else None
    if isinstance(rate, float) and rate.is_integer():
        rate = int(rate)
    if not isinstance(rate, int) or isinstance(rate, bool) or not MIN_RATE <= rate <= MAX_RATE:
        raise PeerError("bad_sample_rate", f"metadata.sampleRate must be a whole number of Hz from "
                                           f"{MIN_RATE} to {MAX_RATE}; got {str(rate)[:20]}")
    pcm = packet[4 + n:]
    if len(pcm) % 2:
        raise PeerError("odd_length", f"int16 PCM holds whole 2-byte samples; got {len(pcm)} bytes")
    return rate, pcm


@dataclass
class HybridSession:
    languages: tuple[str, ...]
    limits: s.Limits = field(default_factory=s.Limits)
    vad: v.VadConfig = field(default_factory=v.VadConfig)
    state: State = State.STREAMING
    _auto: AutoSegmenter = field(init=False)
    _rate: s.RateWindow = field(init=False)
    audio_messages: int = 0  # only these keep the session from its idle timeout
    _converter: PcmConverter | None = None

    def __post_init__(self) -> None:
        self._auto = AutoSegmenter(self.vad)
        self._rate = s.RateWindow(self.limits.max_frames_per_s)

    @property
    def in_segment(self) -> bool:
        return self._auto.speaking

    @property
    def sample_rate(self) -> int | None:
        return self._converter.rate if self._converter is not None else None

    # ---- from the client --------------------------------------------------------------------

    def opened(self) -> list[Action]:
        return []

    def receive_text(self, text: str, now: float) -> list[Action]:
        if self.state is State.CLOSED:
            return []
        if self._rate.over(now):
            return self._error(PeerError("flood", f"over {self.limits.max_frames_per_s} messages a "
                                                  "second", fatal=True))
        return self._error(PeerError("binary_only", "send binary packets: [int32 LE length][JSON "
                                                    "metadata][int16 PCM]; text is not read"))

    def receive_bytes(self, data: bytes, now: float) -> list[Action]:
        if self.state is State.CLOSED:
            return []
        try:
            if len(data) > self.limits.max_frame_bytes:
                raise PeerError("frame_too_large", f"a packet of {len(data)} bytes is over the limit of "
                                                   f"{self.limits.max_frame_bytes}", fatal=True)
            if self._rate.over(now):
                raise PeerError("flood", f"over {self.limits.max_frames_per_s} messages a second",
                                fatal=True)
            rate, pcm = unpack(data)
        except PeerError as exc:
            close = s.CloseCode.TOO_BIG if exc.code == "frame_too_large" else s.CloseCode.POLICY
            return self._error(exc, close)
        self.audio_messages += 1
        tail = b""
        if self._converter is None or self._converter.rate != rate:
            # what the old rate's resampler still holds is audio too: flush it, or the switch drops it
            tail = self._converter.flush() if self._converter is not None else b""
            self._converter = PcmConverter(rate)
        audio = tail + self._converter.push(pcm)
        return self._auto.feed(audio) if audio else []

    # ---- from the engine --------------------------------------------------------------------

    def partial(self, r: PartialResult) -> list[Action]:
        if not r.text or self.state is State.CLOSED:
            return []
        return [s.Send(Realtime(text=r.text))]

    def final(self, r: FinalResult, reason: p.FinalReason, segment: int) -> list[Action]:
        """A sentence with no words (the gate opened on noise) is not sent."""
        return [s.Send(FullSentence(text=r.text))] if r.text else []

    # ---- from the adapter -------------------------------------------------------------------

    def idle_timeout(self) -> list[Action]:
        if self.state is State.CLOSED:
            return []
        actions = self._auto.flush()
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
