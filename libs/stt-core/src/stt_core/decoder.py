"""The faster-whisper adapter: float32 16 kHz audio in, a ``Transcript`` out. Blocking; the engine
runs it in its decode pools, never on an event loop."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .audio import TARGET_RATE, Float32Array


@dataclass(frozen=True)
class Piece:
    """One Whisper segment, times in seconds from the start of the decoded audio."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    text: str
    confidence: float
    language: str | None
    pieces: tuple[Piece, ...] = ()


EMPTY = Transcript(text="", confidence=0.0, language=None)

# a partial segment the model itself rates as more likely silence than speech is not shown
NO_SPEECH_PARTIAL = 0.6


class Decoder(Protocol):
    model_name: str

    def final(self, audio: Float32Array, lang: str | None) -> Transcript: ...

    def partial(self, audio: Float32Array, lang: str | None) -> Transcript:
        # No Silero pass here: at the very start of an utterance it has too little context to say
        # "speech", and the first partial is the one a person waits for. Whisper's own no-speech
        # probability drops the "you" it would print on silence instead.
        if audio.size < TARGET_RATE // 10 or float(np.max(np.abs(audio))) < 1e-3:
            return EMPTY
        segments, info = self.model.transcribe(
            audio, language=lang, beam_size=1, temperature=0.0, condition_on_previous_text=False,
        )
        kept = [s for s in segments if s.no_speech_prob < NO_SPEECH_PARTIAL]
        return self._transcript(kept, info.language)

    @staticmethod
    def _transcript(segments: list[Any], language: str | None) -> Transcript:
        pieces = tuple(Piece(float(s.start), float(s.end), s.text.strip()) for s in segments if s.text.strip())
        text = " ".join(p.text for p in pieces)
        return Transcript(text=text, confidence=confidence_of(segments) if pieces else 0.0,
                          language=language, pieces=pieces)
