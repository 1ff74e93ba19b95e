"""Server-side endpointing: a session's 16 kHz audio, in whatever chunks it comes, in; the voice
gate's events out. The same gate the worker runs on its microphone (pre-roll, hangover, minimum
speech, pause/resume), for clients that never say where an utterance ends (seed 001's Handy client,
and the other seed dialects), and for the trailing-silence pause of a Wyoming request."""

from __future__ import annotations

from collections.abc import Callable

from . import session as s
from .options import SpeechOptions
from .pcm import TARGET_RATE, Framer
from .vad import Event, Pause, Resume, SpeechAudio, SpeechEnd, SpeechStart, VadConfig, VadGate


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


class AutoSegmenter:
    """A session whose client never says where an utterance ends (seeds 001, 003, 004): its 16 kHz
    audio in, the engine's segment actions out. A segment opens when the gate hears speech (with the
    pre-roll), gets the speech, is paused and resumed with the trailing silence (a speculative final
    decode may start), and ends after the hangover; too little to be speech is cancelled. Each
    dialect only turns the partials and finals into its own messages."""

    def __init__(self, config: VadConfig, options: SpeechOptions | None = None,
                 enable_partials: bool = True, is_speech: Callable[[bytes], bool] | None = None) -> None:
        self.config = config
        self.options = options or SpeechOptions()
        self.enable_partials = enable_partials
        self.segment = 0  # the number of the last segment opened
        self._is_speech = is_speech
        self._endpointer = Endpointer(config, is_speech)

    @property
    def speaking(self) -> bool:
        return self._endpointer.speaking

    def feed(self, pcm16k: bytes) -> list[s.Action]:
        return self._actions(self._endpointer.feed(pcm16k))

    def flush(self) -> list[s.Action]:
        """The client is done for now: the utterance being spoken ends with what was heard, and
        whatever follows starts afresh."""
        actions = self._actions(self._endpointer.flush())
        self._endpointer = Endpointer(self.config, self._is_speech)
        return actions

    def cancel(self) -> list[s.Action]:
        """Drop the utterance being spoken without a final (the client reset its stream)."""
        actions: list[s.Action] = [s.CancelSegment()] if self.speaking else []
        self._endpointer = Endpointer(self.config, self._is_speech)
        return actions

    def _actions(self, events: list[Event]) -> list[s.Action]:
        actions: list[s.Action] = []
        for e in events:
            if isinstance(e, SpeechStart):
                self.segment += 1
                actions += [s.OpenSegment(self.segment, TARGET_RATE, self.options, self.enable_partials),
                            s.Audio(e.audio)]
            elif isinstance(e, SpeechAudio):
                actions.append(s.Audio(e.audio))
            elif isinstance(e, Pause):
                actions.append(s.PauseSegment())
            elif isinstance(e, Resume):
                actions.append(s.ResumeSegment())
            elif isinstance(e, SpeechEnd):
                actions.append(s.EndSegment("end"))
            else:  # too little to be speech (a click, a cough): no final
                actions.append(s.CancelSegment())
        return actions
