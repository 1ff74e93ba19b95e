"""Server-side endpointing: a session's 16 kHz audio, in whatever chunks it comes, in; the voice
gate's events out. The same gate the worker runs on its microphone (pre-roll, hangover, minimum
speech, pause/resume), for clients that never say where an utterance ends (seed 001's Handy client,
and the other seed dialects), and for the trailing-silence pause of a Wyoming request."""

from __future__ import annotations

from collections.abc import Callable

from .audio import Framer
from .vad import Event, VadConfig, VadGate


class Endpointer:
    def __init__(self, config: VadConfig, is_speech: Callable[[bytes], bool] | None = None) -> None:
        self.gate = VadGate(config, is_speech)
        self._framer = Framer(config.frame_bytes)

    @property
    def speaking(self) -> bool:
        return self.gate.is_open

    def feed(self, pcm16k: bytes) -> list[Event]:
        """S16LE mono 16 kHz audio, any length (whole samples): the events of every whole frame."""
        return [e for frame in self._framer.push(pcm16k) for e in self.gate.feed(frame)]

    def flush(self) -> list[Event]:
        """The end of the stream: the last part frame, then the utterance still open ends."""
        last = [e for frame in self._framer.flush() for e in self.gate.feed(frame)]
        return [*last, *self.gate.close("flush")]
