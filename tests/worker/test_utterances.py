"""The worker's utterance machine in-process: no model, no sockets, no broker, no clock.

Frames are 30 ms; a "speech" frame is any non-zero frame (the gate is given that classifier), so
every scenario is exact. Each scenario is a list of steps and the trace of actions it must produce,
written compactly (``feed u1 x4`` is four Feed actions for utterance u1 in a row).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from stt_core import vad as v
from stt_core.options import SpeechOptions
from stt_worker import utterances as u
from stt_worker.backend import FinalText, PartialText, StreamFailed
from stt_worker.control import ControlError

FRAME = 30
SPEECH = b"\x10\x00" * 480
SILENCE = b"\x00\x00" * 480
# webrtcvad is not used: the gate hears exactly what the test says
CFG = v.VadConfig(frame_ms=FRAME, preroll_ms=90, start_ms=90, start_window_ms=90, hangover_ms=300,
                  min_speech_ms=150, pause_ms=90, listen_timeout_ms=600)


def machine(backend: str = "ws", fallback: str | None = "local", timeout: float = 5.0) -> u.UtteranceMachine:
    ids: Iterator[int] = itertools.count(1)
    return u.UtteranceMachine(gate=v.VadGate(CFG, is_speech=any), backend=backend,  # type: ignore[arg-type]
                              fallback=fallback, remote=frozenset({"ws"}),  # type: ignore[arg-type]
                              final_timeout_s=timeout, options=SpeechOptions(language="en"),
                              new_id=lambda: f"u{next(ids)}")


def name(a: u.Action) -> str:
    if isinstance(a, u.OpenStream):
        return f"open {a.utterance_id} {a.backend}"
    if isinstance(a, u.SpeechActive):
        return f"speech {'on' if a.on else 'off'}"
    if isinstance(a, u.HeardFinal):
        return f"final {a.utterance_id} {a.backend}{' fallback' if a.fallback else ''}: {a.text}"
    if isinstance(a, u.HeardPartial):
        return f"partial {a.utterance_id} {a.backend}: {a.text}"
    if isinstance(a, u.Lost):
        return f"lost {a.utterance_id} {a.code}"
    if isinstance(a, u.FailedOver):
        return f"failover {a.utterance_id} {a.from_backend}->{a.to_backend}"
    if isinstance(a, u.Dropped):
        return f"dropped {a.utterance_id} {a.reason}"
    if isinstance(a, u.StateChanged):
        return "state"
    verb = {u.Feed: "feed", u.PauseStream: "pause", u.ResumeStream: "resume", u.FinishStream: "finish",
            u.CancelStream: "cancel"}[type(a)]
    return f"{verb} {a.utterance_id}"  # type: ignore[union-attr]


def trace(actions: list[u.Action]) -> list[str]:
    out: list[str] = []
    for key, group in itertools.groupby(name(a) for a in actions):
        n = len(list(group))
        out.append(key if n == 1 else f"{key} x{n}")
    return out


@dataclass
class Run:
    """Feeds a machine and keeps the clock: 30 ms per frame, events at the current time."""

    m: u.UtteranceMachine
    now: float = 1000.0

    def frames(self, pcm: bytes, n: int) -> list[u.Action]:
        actions: list[u.Action] = []
        for _ in range(n):
            self.now += FRAME / 1000
            actions += self.m.frame(pcm, self.now)
        return actions

    def speech(self, n: int) -> list[str]:
        return trace(self.frames(SPEECH, n))

    def silence(self, n: int) -> list[str]:
        return trace(self.frames(SILENCE, n))

    def event(self, e: FinalText | PartialText | StreamFailed, later_s: float = 0.0) -> list[str]:
        self.now += later_s
        return trace(self.m.backend_event(e, self.now))


def final(uid: str, backend: str = "ws", text: str = "hello") -> FinalText:
    return FinalText(uid, backend, text, 0.9, "en", "tiny.en")  # type: ignore[arg-type]


def failed(uid: str, backend: str = "ws") -> StreamFailed:
    return StreamFailed(uid, backend, "connection to the server lost")  # type: ignore[arg-type]


# ---- one utterance --------------------------------------------------------------------------


def test_an_utterance_opens_on_the_chosen_backend_and_its_final_is_published() -> None:
    """Three voiced frames open the gate: the stream opens with the pre-roll and trigger audio, speech
    goes ON; trailing silence pauses it, the hangover finishes it, speech goes OFF; the backend's final
    is published with the utterance's own figures."""
    r = Run(machine())
    assert r.speech(3) == ["open u1 ws", "speech on", "feed u1"]
    assert r.speech(5) == ["feed u1 x5"]
    assert r.silence(10) == ["feed u1 x3", "pause u1", "feed u1 x7", "speech off", "finish u1"]
    actions = r.m.backend_event(final("u1"), r.now + 0.25)
    assert trace(actions) == ["final u1 ws: hello"]
    f = actions[0]
    assert isinstance(f, u.HeardFinal)
    assert f.audio_ms == 3 * FRAME + 5 * FRAME + 10 * FRAME
    assert f.latency_ms == pytest.approx(250 + 10 * FRAME, abs=1)  # from the last voiced frame
    assert f.end == "silence"
    assert not f.fallback
    assert r.m.idle


def test_speech_again_during_the_hangover_resumes_the_same_utterance() -> None:
    """A short pause inside a sentence: pause, then resume, one stream, one final."""
    r = Run(machine())
    r.speech(4)
    assert r.silence(4) == ["feed u1 x3", "pause u1", "feed u1"]
    assert r.speech(2) == ["feed u1", "resume u1", "feed u1"]
    assert r.silence(10)[-2:] == ["speech off", "finish u1"]


def test_a_click_too_short_to_be_speech_is_cancelled_not_transcribed() -> None:
    r = Run(machine())
    r.speech(3)
    assert r.silence(10)[-3:] == ["cancel u1", "speech off", "dropped u1 too_short"]
    assert r.m.idle


def test_an_empty_final_is_dropped_not_published() -> None:
    r = Run(machine())
    r.speech(8)
    r.silence(10)
    assert r.event(final("u1", text="")) == ["dropped u1 empty"]


# ---- failover -------------------------------------------------------------------------------

FAILOVER_CASES = [
    pytest.param(
        [("speech", 8), ("fail", "u1"), ("speech", 2), ("silence", 10), ("final", ("u1", "local"))],
        ["cancel u1", "failover u1 ws->local", "open u1 local", "feed u1 x6", "feed u1 x2", "feed u1 x3",
         "pause u1", "feed u1 x7", "speech off", "finish u1", "final u1 local fallback: hello"],
        id="server lost mid-sentence: the kept audio is replayed to local, which goes on"),
    pytest.param(
        [("speech", 8), ("silence", 10), ("fail", "u1"), ("final", ("u1", "local"))],
        ["cancel u1", "failover u1 ws->local", "open u1 local", "feed u1 x16", "pause u1", "finish u1",
         "final u1 local fallback: hello"],
        id="server lost after the end: replayed, paused and finished at once"),
    pytest.param(
        [("speech", 8), ("fail", "u1"), ("silence", 10), ("final", ("u1", "ws")), ("final", ("u1", "local"))],
        ["final u1 local fallback: hello"],
        id="a late final from the backend it left is ignored"),
]


@pytest.mark.parametrize(("steps", "tail"), FAILOVER_CASES)
def test_failover(steps: list[tuple[str, object]], tail: list[str]) -> None:
    """Whatever point the chosen backend fails at, the fallback gets every frame of the utterance, in
    order, and the final says it came from the fallback."""
    r = Run(machine())
    out: list[str] = []
    for kind, arg in steps:
        if kind == "speech":
            out += r.speech(arg)  # type: ignore[arg-type]
        elif kind == "silence":
            out += r.silence(arg)  # type: ignore[arg-type]
        elif kind == "fail":
            out += r.event(failed(arg))  # type: ignore[arg-type]
        else:
            uid, backend = arg  # type: ignore[misc]
            out += r.event(final(uid, backend))
    assert out[-len(tail):] == tail
    assert r.m.idle


def test_the_fallback_gets_exactly_the_audio_the_server_got() -> None:
    """Replayed audio is the same bytes in the same order as the frames fed (pre-roll included)."""
    r = Run(machine())
    fed = [a.pcm for a in r.frames(SPEECH, 3) + r.frames(SILENCE, 2) + r.frames(SPEECH, 3)
           if isinstance(a, u.Feed)]
    replay = r.m.backend_event(failed("u1"), r.now)
    assert [a.pcm for a in replay if isinstance(a, u.Feed)] == fed


def test_a_remote_final_later_than_the_timeout_fails_over() -> None:
    """The deadline is the end plus final_timeout_s; a tick before it does nothing, after it the
    utterance goes to the fallback."""
    r = Run(machine(timeout=2.0))
    r.speech(8)
    r.silence(10)
    deadline = r.m.next_deadline()
    assert deadline == pytest.approx(r.now + 2.0)
    assert r.m.tick(r.now + 1.9) == []
    assert trace(r.m.tick(r.now + 2.0))[:3] == ["cancel u1", "failover u1 ws->local", "open u1 local"]
    assert r.m.next_deadline() is None  # local finals have no deadline


def test_the_next_utterance_tries_the_chosen_backend_again() -> None:
    r = Run(machine())
    r.speech(8)
    r.event(failed("u1"))
    r.silence(10)
    assert r.speech(3)[0] == "open u2 ws"


def test_without_a_fallback_a_failed_utterance_is_lost_in_its_turn() -> None:
    """STT_FALLBACK=none: the loss is published when the gate closes, not while the person speaks."""
    r = Run(machine(fallback=None))
    r.speech(8)
    assert r.event(failed("u1")) == ["cancel u1"]
    assert r.silence(10)[-2:] == ["speech off", "lost u1 backend_unavailable"]
    assert r.m.idle


def test_a_local_decode_that_fails_is_lost_as_decode_failed() -> None:
    r = Run(machine(backend="local"))
    r.speech(8)
    r.silence(10)
    assert r.event(failed("u1", "local")) == ["cancel u1", "lost u1 decode_failed"]


# ---- order ----------------------------------------------------------------------------------


def test_a_final_that_arrives_after_the_next_utterance_started_is_published() -> None:
    r = Run(machine())
    r.speech(8)
    r.silence(10)
    assert r.speech(3) == ["open u2 ws", "speech on", "feed u2"]
    assert r.event(final("u1")) == ["final u1 ws: hello"]


def test_finals_are_published_in_the_order_spoken() -> None:
    """The second utterance's final comes first: it waits for the first one's."""
    r = Run(machine())
    for _ in range(2):
        r.speech(8)
        r.silence(10)
    assert r.event(final("u2", text="second")) == []
    assert r.event(final("u1", text="first")) == ["final u1 ws: first", "final u2 ws: second"]


def test_partials_are_published_only_for_the_utterance_being_spoken() -> None:
    r = Run(machine())
    r.speech(8)
    assert r.event(PartialText("u1", "ws", "hel", 240)) == ["partial u1 ws: hel"]
    assert r.event(PartialText("u1", "ws", "", 270)) == []
    r.silence(10)
    assert r.event(PartialText("u1", "ws", "hello", 300)) == []  # the gate has closed on it
    f = r.m.backend_event(final("u1"), r.now)[0]
    assert isinstance(f, u.HeardFinal)
    assert f.partials == 1
    assert f.first_partial_ms is not None


# ---- control --------------------------------------------------------------------------------


def test_mute_during_speech_drops_the_utterance_and_everything_still_decoding() -> None:
    r = Run(machine())
    r.speech(8)
    r.silence(10)  # u1 ended, its final not in yet
    r.speech(6)  # u2 being spoken
    assert trace(r.m.set_muted(True, r.now)) == [
        "speech off", "cancel u1", "dropped u1 muted", "cancel u2", "dropped u2 muted", "state"]
    assert r.speech(10) == []  # nothing is heard while muted
    assert r.event(final("u1")) == []
    assert trace(r.m.set_muted(False, r.now)) == ["state"]
    assert r.speech(3)[0] == "open u3 ws"  # the gate starts afresh: no pre-roll from before


def test_listen_opens_the_gate_now_and_tags_the_session() -> None:
    """Push-to-talk (Hermes startListening): the utterance opens without speech, carries the session
    id, and is ended by stopListening of the same session only."""
    r = Run(machine())
    assert trace(r.m.listen("s-1", r.now)) == ["open u1 ws", "speech on", "feed u1"]
    r.speech(4)
    p = r.m.backend_event(PartialText("u1", "ws", "hi", 120), r.now)[0]
    assert isinstance(p, u.HeardPartial)
    assert p.session_id == "s-1"
    assert r.m.stop_listening("someone-else", r.now) == []
    assert trace(r.m.stop_listening("s-1", r.now)) == ["speech off", "finish u1"]
    f = r.m.backend_event(final("u1"), r.now)[0]
    assert isinstance(f, u.HeardFinal)
    assert (f.session_id, f.end) == ("s-1", "forced")


def test_listen_while_muted_is_refused() -> None:
    m = machine()
    m.set_muted(True, 0.0)
    with pytest.raises(ControlError) as err:
        m.listen(None, 0.0)
    assert err.value.code == "muted"


def test_a_new_backend_is_used_from_the_next_utterance_on() -> None:
    r = Run(machine())
    r.speech(8)
    assert trace(r.m.use_backend("local")) == ["state"]
    r.silence(10)
    assert r.event(final("u1", "ws")) == ["final u1 ws: hello"]
    assert r.speech(3)[0] == "open u2 local"


# ---- the end of input ------------------------------------------------------------------------


def test_shutdown_mid_utterance_finishes_it_and_its_final_is_published() -> None:
    r = Run(machine())
    r.speech(8)
    assert trace(r.m.flush(r.now)) == ["speech off", "finish u1"]
    f = r.m.backend_event(final("u1"), r.now)[0]
    assert isinstance(f, u.HeardFinal)
    assert f.end == "flush"
    assert r.m.flush(r.now) == []  # nothing open any more


def test_a_device_gap_ends_the_utterance_and_forgets_the_pre_roll() -> None:
    r = Run(machine())
    r.speech(8)
    assert trace(r.m.device_gap(r.now)) == ["speech off", "finish u1"]
    r.frames(SPEECH, 2)  # two voiced frames: not enough to open a fresh gate on their own
    assert r.m.current is None


def test_a_long_utterance_comes_in_pieces_each_naming_the_one_it_continues() -> None:
    """Speech that never pauses is cut at max_utterance_s: every piece gets its own final, in order,
    the later ones naming the piece they continue (part 2, 3 ...), and no audio falls between the
    pieces. An utterance after a real pause continues nothing."""
    gate = v.VadGate(v.VadConfig(**{**CFG.__dict__, "max_utterance_s": 1.5}), is_speech=any)
    m = u.UtteranceMachine(gate=gate, backend="local", fallback=None, remote=frozenset(),
                           final_timeout_s=5.0, new_id=iter(f"u{i}" for i in range(1, 99)).__next__)
    r = Run(m)
    actions = r.frames(SILENCE, 5) + r.frames(SPEECH, 120) + r.frames(SILENCE, 20)
    actions += r.frames(SPEECH, 20) + r.frames(SILENCE, 20)
    opened = [a.utterance_id for a in actions if isinstance(a, u.OpenStream)]
    assert opened == ["u1", "u2", "u3", "u4"]
    fed = sum(len(a.pcm) for a in actions if isinstance(a, u.Feed) and a.utterance_id != "u4")
    assert fed == len(SPEECH) * 120 + 3 * len(SILENCE) + len(SILENCE) * 10, "audio lost between pieces"
    finals: list[u.HeardFinal] = []
    for uid in opened:
        for a in m.backend_event(FinalText(uid, "local", f"text {uid}", 0.9, "en", "tiny"), r.now):
            assert isinstance(a, u.HeardFinal)
            finals.append(a)
    assert [(f.utterance_id, f.part, f.continues, f.end) for f in finals] == [
        ("u1", 1, None, "max_length"), ("u2", 2, "u1", "max_length"), ("u3", 3, "u2", "silence"),
        ("u4", 1, None, "silence")]
