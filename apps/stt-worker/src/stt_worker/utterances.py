"""The worker's utterances as a plain state machine: no devices, no sockets, no tasks, no clock.

What goes in, each with the wall-clock time it happened (``now``):

* audio frames (``frame``) and device gaps (``device_gap``), which the voice gate inside turns into
  utterances;
* what the backends answer (``backend_event``: partials, finals, failures);
* control commands (``set_muted``, ``listen``, ``stop_listening``, ``use_backend``), the end of the
  input (``flush``) and the passing of time (``tick``, at ``next_deadline()``).

What comes out is a list of actions for the adapter (``app.py``) to carry out, in order: open a
stream on a backend, feed it, hint pause/resume, finish or cancel it, say speech ON/OFF, publish a
partial, a final or a lost utterance, note a failover or a drop, publish the state.

It owns the failover decision. Every utterance's audio is kept until its final is published: when a
backend fails it (a server away, a connection dropped, a segment cut short) or a remote backend's final
is later than ``final_timeout_s`` after the end, the kept audio is replayed to the fallback, which
then also carries the partials. The next utterance tries the chosen backend again. And it owns the
order: finals are published in the order spoken, a fast one held back behind a slower earlier one.
"""

from __future__ import annotations

import collections
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from stt_core import vad as v
from stt_core.options import SpeechOptions

from .backend import (
    BackendEvent,
    BackendName,
    ConnectionChanged,
    FinalText,
    PartialText,
)
from .control import ControlError

# ---- actions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenStream:
    utterance_id: str
    backend: BackendName
    options: SpeechOptions


@dataclass(frozen=True)
class Feed:
    utterance_id: str
    pcm: bytes


@dataclass(frozen=True)
class PauseStream:
    utterance_id: str


@dataclass(frozen=True)
class ResumeStream:
    utterance_id: str


@dataclass(frozen=True)
class FinishStream:
    utterance_id: str


@dataclass(frozen=True)
class CancelStream:
    utterance_id: str


@dataclass(frozen=True)
class SpeechActive:
    """The retained speech ON/OFF: the gate opened, or the utterance being spoken ended."""

    on: bool


@dataclass(frozen=True)
class HeardPartial:
    utterance_id: str
    text: str
    t_ms: int
    backend: BackendName
    audio_ms: int
    session_id: str | None


@dataclass(frozen=True)
class HeardFinal:
    utterance_id: str
    text: str
    confidence: float
    language: str | None
    backend: BackendName
    model: str
    fallback: bool  # produced by the fallback after the chosen backend failed it
    audio_ms: int
    latency_ms: int  # from the end of the voiced audio to now
    started_at: float  # wall time of the utterance's first audio (pre-roll included)
    voiced_end_at: float  # wall time of its last voiced frame
    session_id: str | None
    first_partial_ms: int | None  # from the start of the utterance to its first partial
    partials: int
    end: v.EndReason  # why the gate closed
    decode_ms: int | None
    speculative: bool
    # the utterance this one continues (it was cut at VAD_MAX_UTTERANCE_S and went on), and which piece
    # of the whole this is (1 for an utterance that continues nothing)
    continues: str | None = None
    part: int = 1


LostCode = Literal["backend_unavailable", "decode_failed"]


@dataclass(frozen=True)
class Lost:
    """No backend could give this utterance a final."""

    utterance_id: str
    code: LostCode
    message: str
    audio_ms: int
    started_at: float
    voiced_end_at: float


@dataclass(frozen=True)
class FailedOver:
    utterance_id: str
    from_backend: BackendName
    to_backend: BackendName
    reason: str
    audio_ms: int


@dataclass(frozen=True)
class Dropped:
    """An utterance that gets no transcript, on purpose."""

    utterance_id: str
    reason: Literal["too_short", "muted", "empty", "device_lost"]
    audio_ms: int


@dataclass(frozen=True)
class StateChanged:
    """Muted or the chosen backend changed: publish the state, keep it across restarts."""


Action = (OpenStream | Feed | PauseStream | ResumeStream | FinishStream | CancelStream | SpeechActive
          | HeardPartial | HeardFinal | Lost | FailedOver | Dropped | StateChanged)

# ---- the machine ------------------------------------------------------------------------------


@dataclass
class Utterance:
    id: str
    backend: BackendName  # where its stream is now
    started_at: float
    voiced_end_at: float
    audio: list[bytes] = field(default_factory=list)  # kept until the final: a failover replays it
    audio_ms: int = 0
    fallback: bool = False
    session_id: str | None = None
    paused: bool = False
    end: v.EndReason | None = None  # set when the gate closed on it
    finish_at: float | None = None  # when its stream was told to finish
    first_partial_at: float | None = None
    partials: int = 0
    final: FinalText | None = None  # arrived, waiting for the earlier utterances' finals
    # no backend can give it a final: (code, why), published as ``Lost`` in its turn
    lost: tuple[LostCode, str] | None = None
    continues: str | None = None  # the utterance it is the next piece of (a max_length cut)
    part: int = 1


def _new_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass
class UtteranceMachine:
    gate: v.VadGate
    backend: BackendName  # the chosen one: every utterance starts on it
    fallback: BackendName | None  # where an utterance goes when its backend fails it
    remote: frozenset[BackendName]  # backends over a network: their finals have a deadline
    final_timeout_s: float
    options: SpeechOptions = field(default_factory=SpeechOptions)
    muted: bool = False
    new_id: Callable[[], str] = _new_id
    current: Utterance | None = None  # the one being spoken (gate open)
    # every utterance whose final is not published yet, in the order spoken (current included)
    pending: collections.deque[Utterance] = field(default_factory=collections.deque)
    # the utterance the gate last cut at its length limit: the next piece continues it
    _cut: Utterance | None = None

    # ---- audio ------------------------------------------------------------------------------

    def frame(self, pcm: bytes, now: float) -> list[Action]:
        """One frame of the gate's size: nothing happens while muted."""
        if self.muted:
            return []
        actions = self._gate_events(self.gate.feed(pcm), now)
        if self.current is not None and self.gate.is_open and self.gate.t_ms == self.gate.voiced_end_ms:
            self.current.voiced_end_at = now
        return actions

    def device_gap(self, now: float) -> list[Action]:
        """The microphone is away: what was being said ends here, with what was heard of it."""
        actions = self._gate_events(self.gate.close("flush"), now)
        self._fresh_gate()  # nor does the pre-roll from before the gap lead into what follows it
        return actions

    def flush(self, now: float) -> list[Action]:
        """The end of the input or a shutdown: the utterance being spoken ends and gets its final."""
        return self._gate_events(self.gate.close("flush"), now)

    def _fresh_gate(self) -> None:
        self.gate = v.VadGate(self.gate.config, self.gate.is_speech)

    def _gate_events(self, events: list[v.Event], now: float) -> list[Action]:
        actions: list[Action] = []
        for event in events:
            actions += self._gate_event(event, now)
        return actions

    def _gate_event(self, event: v.Event, now: float) -> list[Action]:
        if isinstance(event, v.SpeechStart):
            return self._begin(event, now)
        utt = self.current
        if utt is None:
            return []
        if isinstance(event, v.SpeechAudio):
            return self._audio(utt, event.audio)
        if isinstance(event, v.Pause | v.Resume):
            utt.paused = isinstance(event, v.Pause)
            return [PauseStream(utt.id) if utt.paused else ResumeStream(utt.id)]
        return self._end(utt, event, now)

    def _end(self, utt: Utterance, event: v.SpeechEnd | v.SpeechDiscarded, now: float) -> list[Action]:
        self.current = None
        if isinstance(event, v.SpeechDiscarded):
            self.pending.remove(utt)
            return [CancelStream(utt.id), SpeechActive(False), Dropped(utt.id, "too_short", utt.audio_ms)]
        utt.end = event.reason
        self._cut = utt if event.reason == "max_length" else None
        if utt.lost is not None:  # no backend took it: say so now, in its turn
            return [SpeechActive(False), *self._publish_ready(now)]
        utt.finish_at = now
        return [SpeechActive(False), FinishStream(utt.id)]

    def _begin(self, event: v.SpeechStart, now: float) -> list[Action]:
        held_ms = self.gate.t_ms - event.t_ms  # the pre-roll and trigger: heard before now
        utt = Utterance(id=self.new_id(), backend=self.backend, started_at=now - held_ms / 1000,
                        voiced_end_at=now)
        cut, self._cut = self._cut, None
        if event.continues and cut is not None:
            utt.continues, utt.part, utt.session_id = cut.id, cut.part + 1, cut.session_id
        self.current = utt
        self.pending.append(utt)
        return [OpenStream(utt.id, utt.backend, self.options), SpeechActive(True),
                *self._audio(utt, event.audio)]

    @staticmethod
    def _audio(utt: Utterance, pcm: bytes) -> list[Action]:
        utt.audio.append(pcm)
        utt.audio_ms += len(pcm) // 32
        return [] if utt.lost is not None else [Feed(utt.id, pcm)]

    # ---- backends ---------------------------------------------------------------------------

    def backend_event(self, event: BackendEvent, now: float) -> list[Action]:
        if isinstance(event, ConnectionChanged):
            return []  # the adapter publishes the state; utterances learn of an outage from failures
        utt = self._find(event.utterance_id)
        if utt is None or event.backend != utt.backend:
            return []  # a cancelled utterance, or a backend it has already left
        if isinstance(event, PartialText):
            return self._partial(utt, event, now)
        if isinstance(event, FinalText):
            utt.final = event
            return self._publish_ready(now)
        return self._failed(utt, event.reason, now)

    def _partial(self, utt: Utterance, event: PartialText, now: float) -> list[Action]:
        # partials are for the utterance still being spoken; a late one of an ended utterance is noise
        if utt is not self.current or not event.text:
            return []
        if utt.first_partial_at is None:
            utt.first_partial_at = now
        utt.partials += 1
        return [HeardPartial(utt.id, event.text, event.t_ms, event.backend, utt.audio_ms, utt.session_id)]

    def _failed(self, utt: Utterance, reason: str, now: float) -> list[Action]:
        target = self.fallback
        if target is None or utt.backend == target:
            utt.lost = ("backend_unavailable" if utt.backend in self.remote else "decode_failed", reason)
            # still being spoken: its loss is published when the gate closes, in its turn
            return [CancelStream(utt.id), *self._publish_ready(now)]
        moved_from, utt.backend, utt.fallback = utt.backend, target, True
        actions: list[Action] = [
            CancelStream(utt.id), FailedOver(utt.id, moved_from, target, reason, utt.audio_ms),
            OpenStream(utt.id, target, self.options), *(Feed(utt.id, pcm) for pcm in utt.audio)]
        if utt.paused:
            actions.append(PauseStream(utt.id))
        if utt.end is not None:
            utt.finish_at = now
            actions.append(FinishStream(utt.id))
        return actions

    def next_deadline(self) -> float | None:
        """When ``tick`` must be called next: the earliest remote final that is not in yet."""
        due = [u.finish_at + self.final_timeout_s for u in self.pending
               if u.finish_at is not None and u.final is None and u.lost is None and u.backend in self.remote]
        return min(due) if due else None

    def tick(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for utt in list(self.pending):
            if (utt.finish_at is not None and utt.final is None and utt.lost is None
                    and utt.backend in self.remote and now >= utt.finish_at + self.final_timeout_s):
                actions += self._failed(utt, f"no final within {self.final_timeout_s:g} s", now)
        return actions

    def _find(self, utterance_id: str) -> Utterance | None:
        return next((u for u in self.pending if u.id == utterance_id), None)

    def _publish_ready(self, now: float) -> list[Action]:
        """Publish the finals that are in, oldest first, up to the first one still being decoded."""
        actions: list[Action] = []
        while self.pending and self.pending[0] is not self.current:
            utt = self.pending[0]
            if utt.lost is not None:
                code, why = utt.lost
                actions.append(Lost(utt.id, code, why, utt.audio_ms, utt.started_at, utt.voiced_end_at))
            elif utt.final is not None:
                actions.append(self._heard(utt, utt.final, now))
            else:
                break
            self.pending.popleft()
        return actions

    @staticmethod
    def _heard(utt: Utterance, f: FinalText, now: float) -> HeardFinal | Dropped:
        if not f.text:
            return Dropped(utt.id, "empty", utt.audio_ms)
        first = (int((utt.first_partial_at - utt.started_at) * 1000)
                 if utt.first_partial_at is not None else None)
        return HeardFinal(
            utterance_id=utt.id, text=f.text, confidence=f.confidence, language=f.language,
            backend=f.backend, model=f.model, fallback=utt.fallback, audio_ms=utt.audio_ms,
            latency_ms=int((now - utt.voiced_end_at) * 1000), started_at=utt.started_at,
            voiced_end_at=utt.voiced_end_at, session_id=utt.session_id, first_partial_ms=first,
            partials=utt.partials, end=utt.end or "flush", decode_ms=f.decode_ms, speculative=f.speculative,
            continues=utt.continues, part=utt.part)

    @property
    def idle(self) -> bool:
        """No utterance is being spoken or waits for its final."""
        return not self.pending

    # ---- control ----------------------------------------------------------------------------

    def set_muted(self, muted: bool, now: float) -> list[Action]:
        """A muted worker hears nothing and publishes no transcript: the utterance being spoken is
        dropped, and so are the finals still being decoded."""
        if muted == self.muted:
            return [StateChanged()]  # said again: the state is published again, as a confirmation
        self.muted = muted
        actions: list[Action] = []
        if muted:
            if self.current is not None:
                actions.append(SpeechActive(False))
                self.current = None
            for utt in self.pending:
                actions += [CancelStream(utt.id), Dropped(utt.id, "muted", utt.audio_ms)]
            self.pending.clear()
            # a fresh gate: nothing heard before muting (pre-roll, an open utterance) leaks past it
            self._fresh_gate()
        return [*actions, StateChanged()]

    def listen(self, session_id: str | None, now: float) -> list[Action]:
        """Start an utterance now (the Listen button, hermes/asr/startListening): it ends on the
        usual hangover, or at ``stop_listening``."""
        if self.muted:
            raise ControlError("muted", "the worker is muted: unmute it first")
        actions = self._gate_events(self.gate.open(), now)
        if self.current is not None and session_id is not None:
            self.current.session_id = session_id
        return actions

    def stop_listening(self, session_id: str | None, now: float) -> list[Action]:
        """End the utterance being listened to; one started for another session is left alone."""
        utt = self.current
        if utt is None or session_id not in (None, utt.session_id or session_id):
            return []
        return self._gate_events(self.gate.close("forced"), now)

    def use_backend(self, name: BackendName) -> list[Action]:
        """From the next utterance on (the one being spoken stays where it is)."""
        self.backend = name
        return [StateChanged()]
