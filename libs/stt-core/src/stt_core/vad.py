"""The voice gate: 16 kHz PCM frames in, utterance events out. A plain state machine.

``VadGate.feed(frame)`` classifies the frame (webrtcvad by default, any ``is_speech`` callable in
tests) and returns events. The gate opens when enough of the recent frames are voiced, and then
hands out the *pre-roll* too (the frames just before the trigger), so the first word's onset is never
cut. It closes after ``hangover_ms`` of unvoiced audio, or at ``max_utterance_s``. Utterances with less
voiced audio than ``min_speech_ms`` (a click, a cough, a door) are discarded, not transcribed.

A ``Pause`` event marks the start of trailing silence inside an open gate: a consumer may begin
decoding speculatively there and drop the work on ``Resume`` (the hangover is the cost of knowing a
sentence has ended; the decoder need not wait for it).
"""

from __future__ import annotations

import array
import collections
import enum
import math
import operator
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

SAMPLE_RATE = 16_000


def level_db(frame: bytes) -> float:
    """The frame's mean power in dB (S16LE samples), exact in integers: a voiced frame's cost is a few
    microseconds without numpy, which the gate alone would otherwise import (bench/RESULTS.md, section 4)."""
    samples = array.array("h", frame)
    if sys.byteorder == "big":
        samples.byteswap()
    return 10.0 * math.log10(sum(map(operator.mul, samples, samples)) / max(1, len(samples)) + 1.0)
FRAME_MS_ALLOWED = (10, 20, 30)


@dataclass(frozen=True)
class VadConfig:
    frame_ms: int = 30
    aggressiveness: int = 2
    # audio kept from before the trigger and sent with it: the first word's onset lives here
    preroll_ms: int = 300
    # voiced ms needed within the trigger window to open the gate
    start_ms: int = 90
    start_window_ms: int = 150
    hangover_ms: int = 600
    min_speech_ms: int = 250
    max_utterance_s: float = 30.0
    # trailing silence after which a Pause is announced (speculative decoding may start)
    pause_ms: int = 150
    # after open() (push-to-talk, Listen), how long the person has to start speaking
    listen_timeout_ms: int = 5000
    # Inside an utterance, a frame this many dB below the loudest voiced frame so far counts as silence
    # even when webrtcvad calls it speech: webrtcvad hears the faint tail of a sentence (breath, room
    # echo) as voiced for 100-150 ms, and the hangover should start where the speech ends. None: off.
    tail_floor_db: float | None = None
    # the classifier: webrtcvad (aggressiveness), or Silero (speech when its probability >= threshold)
    engine: Literal["webrtc", "silero"] = "webrtc"
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.frame_ms not in FRAME_MS_ALLOWED:
            raise ValueError(f"frame_ms must be one of {FRAME_MS_ALLOWED}, got {self.frame_ms}")
        if not 0 <= self.aggressiveness <= 3:
            raise ValueError(f"aggressiveness must be 0-3, got {self.aggressiveness}")

    @property
    def frame_bytes(self) -> int:
        return SAMPLE_RATE * self.frame_ms // 1000 * 2


@dataclass(frozen=True)
class SpeechStart:
    """The gate opened. ``audio`` is the pre-roll plus the triggering frames, in order.
    ``continues``: it opened at once on the frame after a ``max_length`` cut, speech still going on,
    so this utterance is the next piece of the one just cut (and no audio fell between them)."""

    audio: bytes
    t_ms: int  # stream time of the first frame in ``audio``
    continues: bool = False


@dataclass(frozen=True)
class SpeechAudio:
    audio: bytes


@dataclass(frozen=True)
class Pause:
    """Trailing silence reached ``pause_ms``; ``voiced_end_ms`` is stream time of the last voiced frame."""

    voiced_end_ms: int


@dataclass(frozen=True)
class Resume:
    """Speech came back before the hangover ran out: anything started at ``Pause`` is stale."""


# why an utterance ended: the hangover's silence, max_utterance_s, or close(): end of input ("flush") or
# an explicit stop ("forced": stop listening)
EndReason = Literal["silence", "max_length", "flush", "forced"]


@dataclass(frozen=True)
class SpeechEnd:
    reason: EndReason
    voiced_ms: int
    voiced_end_ms: int  # stream time of the last voiced frame


@dataclass(frozen=True)
class SpeechDiscarded:
    """The gate closed on too little voiced audio (a click or a cough): no transcript."""

    voiced_ms: int


Event = SpeechStart | SpeechAudio | Pause | Resume | SpeechEnd | SpeechDiscarded


class GateState(enum.Enum):
    SILENT = "silent"
    SPEAKING = "speaking"


# webrtcvad's noise model starts from nothing: it calls the first 100-150 ms of any input that is not
# digital silence voiced (a quiet room's noise floor included), which would open the gate at every start
WEBRTC_WARMUP_MS = 200


def webrtc_classifier(aggressiveness: int) -> Callable[[bytes], bool]:
    import webrtcvad

    vad = webrtcvad.Vad(aggressiveness)
    heard_ms = 0

    def is_speech(frame: bytes) -> bool:
        nonlocal heard_ms
        voiced = bool(vad.is_speech(frame, SAMPLE_RATE))  # classified even now: that is how it adapts
        if heard_ms < WEBRTC_WARMUP_MS:
            heard_ms += len(frame) * 1000 // (2 * SAMPLE_RATE)
            return False
        return voiced

    return is_speech


def classifier(config: VadConfig) -> Callable[[bytes], bool]:
    if config.engine == "silero":
        from .silero import silero_classifier

        return silero_classifier(config.threshold)
    return webrtc_classifier(config.aggressiveness)


class VadGate:
    def __init__(self, config: VadConfig | None = None,
                 is_speech: Callable[[bytes], bool] | None = None) -> None:
        self.config = config or VadConfig()
        self.is_speech = is_speech or classifier(self.config)
        c = self.config
        # the pre-roll proper plus the trigger window: preroll_ms of audio from before the triggering frames
        self._preroll: collections.deque[tuple[bytes, bool]] = collections.deque(
            maxlen=max(1, (c.preroll_ms + c.start_window_ms) // c.frame_ms))
        self._window: collections.deque[bool] = collections.deque(
            maxlen=max(1, c.start_window_ms // c.frame_ms))
        self.state = GateState.SILENT
        self.t_ms = 0  # stream time at the end of the last frame fed
        self._voiced_ms = 0
        self._unvoiced_run_ms = 0
        self._utterance_ms = 0
        self._voiced_end_ms = 0
        self._paused = False
        self.forced_open = False
        self._peak_db = 0.0

    @property
    def is_open(self) -> bool:
        return self.state is GateState.SPEAKING

    @property
    def voiced_end_ms(self) -> int:
        """Stream time at the end of the last voiced frame of the open utterance."""
        return self._voiced_end_ms

    def feed(self, frame: bytes) -> list[Event]:
        c = self.config
        if len(frame) != c.frame_bytes:
            raise ValueError(f"frames must be {c.frame_bytes} bytes ({c.frame_ms} ms at 16 kHz), "
                             f"got {len(frame)}")
        voiced = self.is_speech(frame)
        self.t_ms += c.frame_ms
        if c.tail_floor_db is not None:
            voiced = self._above_floor(frame, voiced, c.tail_floor_db)
        if self.state is GateState.SILENT:
            return self._feed_silent(frame, voiced)
        return self._feed_speaking(frame, voiced)

    def _above_floor(self, frame: bytes, voiced: bool, floor_db: float) -> bool:
        if not voiced:
            return False
        level = level_db(frame)
        if self.state is GateState.SILENT:
            self._peak_db = level  # a new utterance: its own loudness is the reference
            return True
        self._peak_db = max(self._peak_db, level)
        return level >= self._peak_db - floor_db

    def open(self) -> list[Event]:
        """Open the gate now (push-to-talk, a wake word elsewhere): the pre-roll is sent at once, the
        person has ``listen_timeout_ms`` to start speaking, then the utterance ends on the usual
        hangover. It is never discarded as too short."""
        if self.state is GateState.SPEAKING:
            return []
        self.forced_open = True
        frames = list(self._preroll)
        self._preroll.clear()
        return [self._start(frames, voiced_ms=0)]

    def close(self, reason: Literal["flush", "forced"] = "flush") -> list[Event]:
        """End the open utterance now (end of input, shutdown, stop listening)."""
        if self.state is not GateState.SPEAKING:
            return []
        return [self._end(reason)]

    # ---- states -----------------------------------------------------------------------------

    def _feed_silent(self, frame: bytes, voiced: bool) -> list[Event]:
        c = self.config
        self._preroll.append((frame, voiced))
        self._window.append(voiced)
        if sum(self._window) * c.frame_ms < c.start_ms:
            return []
        frames = list(self._preroll)
        self._preroll.clear()
        self._window.clear()
        return [self._start(frames, voiced_ms=sum(v for _, v in frames) * c.frame_ms)]

    def _start(self, frames: list[tuple[bytes, bool]], voiced_ms: int) -> SpeechStart:
        c = self.config
        self.state = GateState.SPEAKING
        self._voiced_ms = voiced_ms
        self._utterance_ms = len(frames) * c.frame_ms
        self._unvoiced_run_ms = 0
        self._voiced_end_ms = self.t_ms
        self._paused = False
        return SpeechStart(b"".join(f for f, _ in frames), t_ms=self.t_ms - self._utterance_ms)

    def _feed_speaking(self, frame: bytes, voiced: bool) -> list[Event]:
        c = self.config
        events: list[Event] = [SpeechAudio(frame)]
        self._utterance_ms += c.frame_ms
        if voiced:
            self._voiced_ms += c.frame_ms
            self._unvoiced_run_ms = 0
            self._voiced_end_ms = self.t_ms
            if self._paused:
                self._paused = False
                events.append(Resume())
        else:
            self._unvoiced_run_ms += c.frame_ms
            if not self._paused and self._voiced_ms and self._unvoiced_run_ms >= c.pause_ms:
                self._paused = True
                events.append(Pause(self._voiced_end_ms))
        # a forced open waits for the first word before the hangover counts
        waiting = self.forced_open and self._voiced_ms == 0
        if self._unvoiced_run_ms >= (c.listen_timeout_ms if waiting else c.hangover_ms):
            events.append(self._end("silence"))
        elif self._utterance_ms >= c.max_utterance_s * 1000:
            events.append(self._end("max_length"))
            if self._unvoiced_run_ms < c.pause_ms:
                # still speaking: the next piece opens on the very next frame, so that nothing said
                # falls between the pieces (a restart through the trigger window would lose the words
                # spoken past the pre-roll). If it turns out to be silence, it is discarded as usual.
                events.append(self._continuation())
        return events

    def _continuation(self) -> SpeechStart:
        self.state = GateState.SPEAKING
        self._voiced_ms = 0
        self._utterance_ms = 0
        self._unvoiced_run_ms = 0
        self._voiced_end_ms = self.t_ms
        self._paused = False
        return SpeechStart(b"", t_ms=self.t_ms, continues=True)

    def _end(self, reason: EndReason) -> SpeechEnd | SpeechDiscarded:
        self.state = GateState.SILENT
        voiced = self._voiced_ms
        forced, self.forced_open = self.forced_open, False
        self._window.clear()
        if voiced < self.config.min_speech_ms and not forced:
            return SpeechDiscarded(voiced)
        return SpeechEnd(reason, voiced, self._voiced_end_ms)
