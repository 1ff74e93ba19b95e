"""One Wyoming speech-to-text connection as a plain state machine: events in, actions out.

The events are the ``wyoming`` package's own (``Event``, with ``AudioStart`` & co. to read them);
framing them off the socket is ``wyoming_server.py``'s job. The engine actions are the ``/stt``
session's (``session.OpenSegment``, ``Audio``, ``EndSegment``, ``PauseSegment``, ``ResumeSegment``),
so both dialects run on the engine the same way; what differs is only what goes back.

What a client gets, in the order the ``wyoming`` package defines (its README, "Speech to Text",
"Streaming")::

    -> describe                      <- info (one ASR program, supports_transcript_streaming)
    -> transcribe (language, transcript_names, transcript_terms, vad_sensitivity)
    -> audio-start (any rate, width, channels)
    -> audio-chunk ...               <- transcript-start, then transcript-chunk ... while speaking
    -> audio-stop                    <- transcript, then transcript-stop

A ``transcript-chunk`` is "part of transcript": the chunks of a stream join (``"".join``) into text
that runs ahead of the final. Our partials are decodes of the whole utterance so far and may revise
their last words, so a chunk carries only words two partials in a row agree on (the first partial's
words go out at once: they are the ones a person waits for). The ``transcript`` is the final, decoded
as ``/stt``'s is, and it is the text that counts (Home Assistant reads only it).

The server does not end an utterance by itself here (Home Assistant's voice pipeline does, with its
own VAD), so ``requires_external_vad`` stays true; but a voice gate listens to the audio, and where
its tail is already silence the final's decode starts early (``PauseSegment``), as ``/stt``'s
``pause`` lets it, so the ``transcript`` follows ``audio-stop`` at once.

Bad input (an event that does not parse, audio before ``audio-start``, a rate, width or channel count
that cannot be, options the model cannot do) gets an ``error`` event and the connection is closed.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from stt_core import session as s
from stt_core import vad as v
from stt_core.audio import MAX_RATE, MIN_RATE, TARGET_RATE, WIDTHS, PcmConverter
from stt_core.endpointing import Endpointer
from stt_core.engine import FinalResult
from stt_core.errors import PeerError
from stt_core.options import SpeechOptions, check_options, hotwords_of
from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.ping import Ping, Pong

MAX_CHANNELS = 8


@dataclass(frozen=True)
class Reply:
    event: Event


@dataclass(frozen=True)
class Hangup:
    reason: str


Action = Reply | Hangup | s.OpenSegment | s.Audio | s.EndSegment | s.PauseSegment | s.ResumeSegment


class State(enum.Enum):
    IDLE = "idle"  # between requests: describe, transcribe, audio-start
    STREAMING = "streaming"  # audio-start seen, audio-stop not yet
    CLOSED = "closed"


@dataclass(frozen=True)
class WyomingLimits:
    max_segment_s: float = 60.0
    max_chunks_per_s: int = 400  # Home Assistant sends 10 ms chunks: 100 a second


def _words(text: str) -> list[str]:
    return text.split()


def _norm(word: str) -> str:
    return re.sub(r"[^\w']", "", word.lower())


@dataclass
class Chunks:
    """The transcript-chunk deltas of one stream: words that two consecutive partials agree on
    (the first partial's at once), appended in order; once a later partial revises what was sent,
    nothing more is sent (the final transcript has the right text)."""

    sent: list[str] = field(default_factory=list)
    previous: list[str] | None = None
    diverged: bool = False

    def delta(self, text: str) -> str | None:
        words = _words(text)
        if self.previous is None:
            stable = words
        else:
            stable = []
            for a, b in zip(self.previous, words, strict=False):
                if _norm(a) != _norm(b):
                    break
                stable.append(b)
        self.previous = words
        if self.diverged or len(stable) <= len(self.sent):
            return None
        if [_norm(w) for w in stable[:len(self.sent)]] != [_norm(w) for w in self.sent]:
            self.diverged = True
            return None
        new = stable[len(self.sent):]
        lead = " " if self.sent else ""
        self.sent = stable
        return lead + " ".join(new)


@dataclass
class WyomingSession:
    info: Info
    languages: tuple[str, ...]
    limits: WyomingLimits = field(default_factory=WyomingLimits)
    # the gate that finds trailing silence (pause) in the audio; None: no speculative decode
    vad: v.VadConfig | None = field(default_factory=v.VadConfig)
    state: State = State.IDLE
    options: SpeechOptions = field(default_factory=SpeechOptions)
    vad_sensitivity: str | None = None
    segment: int = 0
    _converter: PcmConverter | None = None
    _format: tuple[int, int, int] = (TARGET_RATE, 2, 1)
    _gate: Endpointer | None = None
    _paused: bool = False
    _audio_bytes: int = 0
    _chunks: Chunks = field(default_factory=Chunks)
    _started: bool = False  # transcript-start sent for this stream
    _rate: s.RateWindow | None = None

    # ---- from the client --------------------------------------------------------------------

    def receive(self, event: Event, now: float) -> list[Action]:
        if self.state is State.CLOSED:
            return []
        try:
            return self._receive(event, now)
        except PeerError as exc:
            return self.refuse(exc.code, exc.message)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # the wyoming package's from_event read a field that is missing or of the wrong type
            why = f"{type(exc).__name__}: {str(exc)[:80]}"
            return self.refuse("bad_event", f"{event.type}: malformed ({why})")

    def _receive(self, event: Event, now: float) -> list[Action]:
        if Describe.is_type(event.type):
            return [Reply(self.info.event())]
        if Ping.is_type(event.type):
            return [Reply(Pong(text=Ping.from_event(event).text).event())]
        if Transcribe.is_type(event.type):
            return self._transcribe(Transcribe.from_event(event))
        if AudioStart.is_type(event.type):
            return self._audio_start(AudioStart.from_event(event))
        if AudioChunk.is_type(event.type):
            return self._audio_chunk(AudioChunk.from_event(event), now)
        # audio-stop, or an event servers are expected to drop when they do not know it (the README)
        return self._audio_stop() if AudioStop.is_type(event.type) else []

    def _transcribe(self, t: Transcribe) -> list[Action]:
        if self.state is State.STREAMING:
            raise PeerError("transcribe_during_audio", "transcribe comes before audio-start, not during it")
        names = t.transcript_names if isinstance(t.transcript_names, list) else None
        terms = t.transcript_terms if isinstance(t.transcript_terms, list) else None
        self.options = check_options(languages=self.languages, language=t.language,
                                     hotwords=hotwords_of(names, terms))
        self.vad_sensitivity = str(t.vad_sensitivity.value if hasattr(t.vad_sensitivity, "value")
                                   else t.vad_sensitivity) if t.vad_sensitivity is not None else None
        return []

    def _audio_start(self, a: AudioStart) -> list[Action]:
        if self.state is State.STREAMING:
            raise PeerError("audio_already_started", "audio-start again before audio-stop")
        rate, width, channels = _format(a.rate, a.width, a.channels)
        self._format = (rate, width, channels)
        self._converter = PcmConverter(rate, channels, width)
        self._gate = Endpointer(self.vad) if self.vad is not None else None
        self._paused = False
        self._audio_bytes = 0
        self._chunks = Chunks()
        self._started = False
        self.segment += 1
        self.state = State.STREAMING
        return [s.OpenSegment(self.segment, TARGET_RATE, self.options, enable_partials=True)]

    def _audio_chunk(self, c: AudioChunk, now: float) -> list[Action]:
        if self.state is not State.STREAMING or self._converter is None:
            raise PeerError("audio_before_start", "send audio-start before audio-chunk")
        if (c.rate, c.width, c.channels) != self._format:
            said = "/".join(map(str, self._format))
            raise PeerError("format_changed", f"audio-chunk is {c.rate}/{c.width}/{c.channels} "
                                              f"(rate/width/channels); audio-start said {said}")
        if self._flooding(now):
            raise PeerError("flood", f"more than {self.limits.max_chunks_per_s} audio chunks per second")
        if len(c.audio) % (c.width * c.channels):
            raise PeerError("odd_length", f"{len(c.audio)} bytes is not a whole number of "
                                          f"{c.width * c.channels}-byte samples")
        if self._audio_bytes >= self.limits.max_segment_s * TARGET_RATE * 2:
            return []  # past MAX_SEGMENT_S: the transcript covers the first MAX_SEGMENT_S
        pcm = self._converter.push(c.audio)
        self._audio_bytes += len(pcm)
        return [s.Audio(pcm), *self._listen(pcm)] if pcm else []

    def _listen(self, pcm: bytes) -> list[Action]:
        """Trailing silence (the gate's pause) starts the final's decode; speech again drops it."""
        if self._gate is None:
            return []
        actions: list[Action] = []
        for event in self._gate.feed(pcm):
            if isinstance(event, v.Pause) and not self._paused:
                self._paused = True
                actions.append(s.PauseSegment())
            elif isinstance(event, v.Resume | v.SpeechStart) and self._paused:
                self._paused = False
                actions.append(s.ResumeSegment())
        return actions

    def _audio_stop(self) -> list[Action]:
        if self.state is not State.STREAMING or self._converter is None:
            # as wyoming-faster-whisper answers it: nothing was heard, so nothing was said
            return [Reply(Transcript(text="").event())]
        tail = self._converter.flush()
        self.state = State.IDLE
        return [*([s.Audio(tail)] if tail else []), s.EndSegment("end")]

    def _flooding(self, now: float) -> bool:
        if self._rate is None:
            self._rate = s.RateWindow(self.limits.max_chunks_per_s)
        return self._rate.over(now)

    # ---- from the engine and the adapter ---------------------------------------------------------

    def partial(self, text: str) -> list[Action]:
        if self.state is not State.STREAMING or not text:
            return []
        actions: list[Action] = []
        if not self._started:
            self._started = True
            actions.append(Reply(TranscriptStart(language=self.options.language).event()))
        delta = self._chunks.delta(text)
        if delta:
            actions.append(Reply(TranscriptChunk(text=delta).event()))
        return actions

    def final(self, result: FinalResult) -> list[Action]:
        """The segment's final: ``transcript``, then ``transcript-stop`` if a stream was started. The
        transcript carries one field the package does not define, ``confidence`` (0-1, as ``/stt``'s
        finals): clients read only the fields they know, and stt-worker's Wyoming backend reads it."""
        transcript = Transcript(text=result.text, language=result.language).event()
        transcript.data["confidence"] = result.confidence
        actions: list[Action] = [Reply(transcript)]
        if self._started:
            self._started = False
            actions.append(Reply(TranscriptStop().event()))
        return actions

    def refuse(self, code: str, message: str) -> list[Action]:
        """A fatal error: the client gets it as an ``error`` event, then the connection closes (what
        was being transcribed is dropped: nobody is left to read its transcript)."""
        if self.state is State.CLOSED:
            return []
        self.state = State.CLOSED
        return [Reply(Error(text=message, code=code).event()), Hangup(code)]

    def idle_timeout(self) -> list[Action]:
        return self.refuse("idle_timeout", "nothing received for too long")

    def shutdown(self) -> list[Action]:
        """The server is stopping: audio being streamed still gets its transcript, then the close."""
        if self.state is State.CLOSED:
            return []
        actions: list[Action] = []
        if self.state is State.STREAMING:
            actions += self._audio_stop()
        self.state = State.CLOSED
        return [*actions, Hangup("shutting_down")]


def _format(rate: object, width: object, channels: object) -> tuple[int, int, int]:
    """audio-start's format, or ``PeerError`` naming what can be."""
    if not isinstance(rate, int) or not MIN_RATE <= rate <= MAX_RATE:
        raise PeerError("bad_rate", f"rate must be {MIN_RATE}-{MAX_RATE} Hz, got {rate!r}")
    if width not in WIDTHS:
        allowed = ", ".join(map(str, WIDTHS))
        raise PeerError("bad_width", f"width must be one of {allowed} bytes, got {width!r}")
    if not isinstance(channels, int) or not 1 <= channels <= MAX_CHANNELS:
        raise PeerError("bad_channels", f"channels must be 1-{MAX_CHANNELS}, got {channels!r}")
    return rate, width, channels
