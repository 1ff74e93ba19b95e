"""Seed 004's dialect (a Socket.IO server, ``SOCKETIO_PORT``): one ``clientId``'s transcriber as a
plain state machine, and the decoding of its ``audio_data`` payloads. ``socketio_server.py`` is the
shell: events in, these actions carried out on the engine, messages emitted to the room.

What its clients send and get, to the letter of the seed document::

    -> audio_data  PCM16 mono at 16 kHz, with an optional clientId: raw bytes, or
                   {"clientId": "...", "audio": <bytes>}
    <- transcription  {"text", "duration", "client_id", "ts"}   per utterance, to the clientId's room

Where the seed is silent: ``audio`` may also be ``data``/``pcm``, base64 text or a list of ints, and
``sampleRate`` (8-48 kHz) may say another rate (converted to 16 kHz). The server's voice gate ends
each utterance (the seed's Silero, or webrtcvad: ``VAD_ENGINE``). Ours beside the seed's: the event
``partial_transcription`` {"text", "client_id", "ts"} while the speaker speaks, and an ``error``
event {"code", "message"} answering bad input, which is dropped.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from stt_core import protocol as p
from stt_core import session as s
from stt_core import vad as v
from stt_core.audio import MAX_RATE, MIN_RATE, TARGET_RATE, PcmConverter
from stt_core.endpointing import AutoSegmenter
from stt_core.engine import FinalResult, PartialResult
from stt_core.errors import PeerError

Action = s.Action
MAX_CLIENT_ID = 128
SHAPE = "audio_data is PCM16 bytes, or {\"clientId\": \"...\", \"audio\": <bytes>}"


class Transcription(p.Message):
    text: str
    duration: float  # seconds of audio in the utterance
    client_id: str
    ts: float  # wall clock, when it was transcribed


class PartialTranscription(p.Message):
    text: str
    client_id: str
    ts: float


def client_id_of(data: Any, where: str = "clientId") -> str | None:
    """A payload's ``clientId``, if it names one; ``PeerError`` when it is not a short string."""
    if not isinstance(data, dict) or data.get("clientId") is None:
        return None
    cid = data["clientId"]
    if not isinstance(cid, str) or not 0 < len(cid) <= MAX_CLIENT_ID:
        raise PeerError("bad_client_id", f"{where} is a string of 1-{MAX_CLIENT_ID} characters")
    return cid


def audio_of(data: Any) -> tuple[str | None, bytes, int]:
    """One ``audio_data`` payload: (clientId or None, PCM16 bytes, sample rate)."""
    if isinstance(data, bytes | bytearray | memoryview):
        return None, bytes(data), TARGET_RATE
    if not isinstance(data, dict):
        raise PeerError("bad_audio", SHAPE)
    cid = client_id_of(data)
    raw = next((data[k] for k in ("audio", "data", "pcm") if data.get(k) is not None), None)
    if isinstance(raw, bytes | bytearray | memoryview):
        pcm = bytes(raw)
    elif isinstance(raw, str):
        try:
            pcm = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise PeerError("bad_audio", "audio as text is base64 of PCM16 bytes") from None
    elif isinstance(raw, list):
        if not all(isinstance(x, int) and not isinstance(x, bool) and -32768 <= x <= 32767 for x in raw):
            raise PeerError("bad_audio", "audio as a list holds int16 samples (-32768 to 32767)")
        pcm = np.asarray(raw, dtype="<i2").tobytes()
    else:
        raise PeerError("bad_audio", SHAPE)
    rate = data.get("sampleRate", TARGET_RATE)
    if isinstance(rate, float) and rate.is_integer():
        rate = int(rate)  # a browser's AudioContext.sampleRate is a JS number: 48000 may come as 48000.0
    if not isinstance(rate, int) or isinstance(rate, bool) or not MIN_RATE <= rate <= MAX_RATE:
        raise PeerError("bad_sample_rate", f"sampleRate is a whole number of Hz, {MIN_RATE} to {MAX_RATE}")
    return cid, pcm, rate


@dataclass
class SocketIoSession:
    """One clientId's transcriber (the seed's ``_ClientTranscriber``)."""

    client_id: str
    limits: s.Limits = field(default_factory=s.Limits)
    vad: v.VadConfig = field(default_factory=v.VadConfig)
    clock: Callable[[], float] = time.time
    closed: bool = False
    _auto: AutoSegmenter = field(init=False)
    _rate: s.RateWindow = field(init=False)
    _converter: PcmConverter | None = None

    def __post_init__(self) -> None:
        self._auto = AutoSegmenter(self.vad)
        self._rate = s.RateWindow(self.limits.max_frames_per_s)

    @property
    def in_segment(self) -> bool:
        return self._auto.speaking

    def audio(self, pcm: bytes, rate: int, now: float) -> list[Action]:
        """Decoded audio (``audio_of``); a bad chunk is answered with an ``error`` and dropped."""
        if self.closed:
            return []
        try:
            if len(pcm) > self.limits.max_frame_bytes:
                raise PeerError("frame_too_large", f"audio_data of {len(pcm)} bytes is over the limit of "
                                                   f"{self.limits.max_frame_bytes}")
            if self._rate.over(now):
                raise PeerError("flood", f"over {self.limits.max_frames_per_s} audio_data a second; "
                                         "this one was dropped")
            if len(pcm) % 2:
                raise PeerError("odd_length", f"PCM16 holds whole 2-byte samples; got {len(pcm)} bytes")
        except PeerError as exc:
            return [s.Send(p.Error(code=exc.code, message=exc.message))]
        if self._converter is None or self._converter.rate != rate:
            self._converter = PcmConverter(rate)
        converted = self._converter.push(pcm)
        return self._auto.feed(converted) if converted else []

    def partial(self, r: PartialResult) -> list[Action]:
        if not r.text or self.closed:
            return []
        return [s.Send(PartialTranscription(text=r.text, client_id=self.client_id, ts=self.clock()))]

    def final(self, r: FinalResult, reason: p.FinalReason, segment: int) -> list[Action]:
        """An utterance with no words (the gate opened on noise) is not emitted."""
        if not r.text:
            return []
        return [s.Send(Transcription(text=r.text, duration=round(r.t_ms / 1000, 3), client_id=self.client_id,
                                     ts=self.clock()))]

    def finish(self, reason: p.FinalReason = "end") -> list[Action]:
        """The speaker is gone (disconnect) or the server stops: what is being said still gets its
        transcription, for the room's other members."""
        if self.closed:  # finished or cancelled already: its segment has had its end
            return []
        actions: list[Action] = [s.EndSegment(reason)] if self.in_segment else []
        self.closed = True
        return actions

    def cancel(self) -> list[Action]:
        """``cleanup_client``: the transcriber's state is deleted, the open utterance with it."""
        if self.closed:
            return []
        self.closed = True
        return self._auto.cancel()
