"""The sans-I/O session state machine, fed lists of frames: no sockets, no clock, no model."""

from __future__ import annotations

import json
from typing import Any

import pytest
from stt_core import protocol as p
from stt_core import session as s
from stt_core.options import SpeechOptions
from stt_core.session import CloseCode, Limits, SessionMachine, State

FRAME = b"\x01\x00" * 320  # 20 ms at 16 kHz
INIT = json.dumps({"type": "init", "session_id": "abc", "sample_rate": 16000, "lang": "en",
                   "enable_partials": True})
END = '{"type":"end"}'


def feed(m: SessionMachine, frames: list[Any], start: float = 100.0, step: float = 0.02) -> list[s.Action]:
    """Text frames as str, binary frames as bytes, in order; binary frames 20 ms apart."""
    out: list[s.Action] = []
    now = start
    for f in frames:
        if isinstance(f, str):
            out += m.receive_text(f)
        else:
            out += m.receive_bytes(f, now)
            now += step
    return out


def kinds(actions: list[s.Action]) -> list[str]:
    names = []
    for a in actions:
        if isinstance(a, s.Send):
            names.append(a.message.type + (f":{a.message.code}" if isinstance(a.message, p.Error) else ""))
        else:
            names.append(type(a).__name__)
    return names


def errors(actions: list[s.Action]) -> list[str]:
    return [a.message.code for a in actions if isinstance(a, s.Send) and isinstance(a.message, p.Error)]


def closes(actions: list[s.Action]) -> list[CloseCode]:
    return [a.code for a in actions if isinstance(a, s.Close)]


def started() -> SessionMachine:
    m = SessionMachine(model="tiny", partial_interval_ms=250)
    feed(m, [INIT])
    return m


def test_init_is_answered_with_ready_and_the_session_waits_for_audio():
    """init moves AWAITING_INIT -> IDLE and answers ready with the session's id, rate and model."""
    m = SessionMachine(model="tiny", partial_interval_ms=250)
    assert m.state is State.AWAITING_INIT
    acts = feed(m, [INIT])
    assert kinds(acts) == ["ready"]
    ready = acts[0].message
    assert isinstance(ready, p.Ready)
    got = (ready.session_id, ready.sample_rate, ready.model, ready.partial_interval_ms)
    assert got == ("abc", 16000, "tiny", 250)
    assert m.state is State.IDLE


def test_a_session_id_is_made_up_when_the_client_sends_none():
    """Without session_id the session still gets a non-empty id, different per connection."""
    ids = set()
    for _ in range(2):
        m = SessionMachine()
        (ready,) = feed(m, ['{"type":"init","sample_rate":8000}'])
        assert isinstance(ready, s.Send)
        assert isinstance(ready.message, p.Ready)
        ids.add(ready.message.session_id)
        assert m.sample_rate == 8000
    assert len(ids) == 2
    assert "" not in ids


def test_first_frame_opens_a_segment_and_end_closes_it():
    """The first PCM frame opens segment 1 with the init's rate/lang/partials, later frames are only
    audio, end ends the segment and the machine is idle again."""
    m = SessionMachine(languages=("en", "de"))
    feed(m, ['{"type":"init","sample_rate":48000,"lang":"de","enable_partials":false}'])
    acts = feed(m, [FRAME, FRAME, FRAME])
    assert acts[0] == s.OpenSegment(index=1, sample_rate=48000, options=SpeechOptions(language="de"),
                                    enable_partials=False)
    assert acts[1:] == [s.Audio(FRAME)] * 3
    assert m.state is State.IN_SEGMENT
    assert feed(m, [END]) == [s.EndSegment("end")]
    assert m.state is State.IDLE


def test_many_segments_on_one_connection():
    """After a final, the next binary frame starts the next segment: indices count up."""
    m = started()
    opened = [a for a in feed(m, [FRAME, END, FRAME, FRAME, END, FRAME, END]) if isinstance(a, s.OpenSegment)]
    assert [o.index for o in opened] == [1, 2, 3]
    assert m.state is State.IDLE
    assert m.segment == 3


def test_audio_before_init_is_fatal_policy_violation():
    """PCM before init: error audio_before_init, then close 1008; nothing is opened or decoded."""
    m = SessionMachine()
    acts = feed(m, [FRAME])
    assert kinds(acts) == ["error:audio_before_init", "Close"]
    assert closes(acts) == [CloseCode.POLICY]
    assert m.state is State.CLOSED


def test_end_before_init_is_an_error_but_init_still_works():
    """end before init answers end_before_init; the connection may still send its init."""
    m = SessionMachine()
    assert errors(feed(m, [END])) == ["end_before_init"]
    assert closes(feed(m, [END])) == []
    assert kinds(feed(m, [INIT])) == ["ready"]


def test_second_init_is_refused_and_the_first_settings_stay():
    """A second init gives already_initialized (not fatal) and does not change rate or session id."""
    m = started()
    acts = feed(m, ['{"type":"init","session_id":"other","sample_rate":8000}'])
    assert kinds(acts) == ["error:already_initialized"]
    assert (m.session_id, m.sample_rate, m.state) == ("abc", 16000, State.IDLE)
    assert isinstance(feed(m, [FRAME])[0], s.OpenSegment)


def test_second_init_during_a_segment_keeps_the_segment():
    """An init in the middle of a segment is refused without ending the segment."""
    m = started()
    feed(m, [FRAME])
    assert kinds(feed(m, [INIT])) == ["error:already_initialized"]
    assert m.state is State.IN_SEGMENT
    assert feed(m, [FRAME]) == [s.Audio(FRAME)]


@pytest.mark.parametrize(("text", "code"), [("not json", "not_json"), ('{"type":"bogus"}', "unknown_type"),
                                            ("[]", "not_json")])
def test_bad_text_is_reported_and_the_session_goes_on(text, code):
    """Non-JSON and unknown types are answered with their code; the open segment carries on."""
    m = started()
    feed(m, [FRAME])
    acts = feed(m, [text])
    assert kinds(acts) == [f"error:{code}"]
    assert m.state is State.IN_SEGMENT
    assert feed(m, [FRAME, END]) == [s.Audio(FRAME), s.EndSegment("end")]


def test_odd_length_frame_is_refused_whole_and_the_segment_goes_on():
    """A frame with half a sample gives odd_length, carries no audio, and the next frames still do."""
    m = started()
    acts = feed(m, [FRAME, FRAME[:-1], FRAME])
    assert kinds(acts) == ["OpenSegment", "Audio", "error:odd_length", "Audio"]
    assert all(len(a.pcm) % 2 == 0 for a in acts if isinstance(a, s.Audio))
    assert m.state is State.IN_SEGMENT


def test_odd_length_first_frame_does_not_open_a_segment():
    """A refused frame while idle opens nothing, so end right after it is an empty segment."""
    m = started()
    assert kinds(feed(m, [b"\x00\x01\x02"])) == ["error:odd_length"]
    assert m.state is State.IDLE
    assert errors(feed(m, [END])) == ["empty_segment"]


def test_empty_binary_frame_is_ignored():
    """A zero-length binary frame neither opens a segment nor counts as audio."""
    m = started()
    assert feed(m, [b""]) == []
    assert m.state is State.IDLE


def test_end_with_no_audio_is_empty_segment_not_fatal():
    """end with nothing since the last final: error empty_segment, no final, the session goes on."""
    m = started()
    acts = feed(m, [END])
    assert kinds(acts) == ["error:empty_segment"]
    feed(m, [FRAME, END])
    acts = feed(m, [END])
    assert kinds(acts) == ["error:empty_segment"]
    assert m.state is State.IDLE


@pytest.mark.parametrize("rate", [0, -1, 10**9, '"16000"'])
def test_bad_sample_rate_in_init_closes_1008(rate):
    """An init with sample_rate 0, negative, huge or a string: bad_sample_rate, close 1008."""
    m = SessionMachine()
    acts = feed(m, [f'{{"type":"init","sample_rate":{rate}}}'])
    assert kinds(acts) == ["error:bad_sample_rate", "Close"]
    assert closes(acts) == [CloseCode.POLICY]
    assert m.state is State.CLOSED


def test_frame_over_the_limit_closes_1009_after_the_final_of_what_was_heard():
    """A frame over max_frame_bytes: the open segment is ended (its final still comes), then error
    frame_too_large and close 1009. A frame exactly at the limit is fine."""
    m = SessionMachine(limits=Limits(max_frame_bytes=1000))
    feed(m, [INIT])
    assert kinds(feed(m, [b"\0" * 1000])) == ["OpenSegment", "Audio"]
    acts = feed(m, [b"\0" * 1002])
    assert kinds(acts) == ["EndSegment", "error:frame_too_large", "Close"]
    assert closes(acts) == [CloseCode.TOO_BIG]
    assert m.state is State.CLOSED


def test_frame_over_the_limit_while_idle_has_no_final():
    """Over the limit with no open segment: only the error and close 1009."""
    m = SessionMachine(limits=Limits(max_frame_bytes=640))
    feed(m, [INIT])
    acts = feed(m, [b"\0" * 642])
    assert kinds(acts) == ["error:frame_too_large", "Close"]
    assert closes(acts) == [CloseCode.TOO_BIG]


def test_flood_of_tiny_frames_closes_1008():
    """More than max_frames_per_s frames within one second: error flood, close 1008."""
    m = SessionMachine(limits=Limits(max_frames_per_s=20))
    feed(m, [INIT])
    acts = feed(m, [b"\0\0"] * 25, step=0.001)
    assert errors(acts) == ["flood"]
    assert kinds(acts)[-3:] == ["EndSegment", "error:flood", "Close"]
    assert closes(acts) == [CloseCode.POLICY]
    assert sum(isinstance(a, s.Audio) for a in acts) == 20
    assert m.state is State.CLOSED


def test_real_time_audio_is_not_a_flood():
    """50 frames a second (20 ms frames) for ten seconds stays under a limit of 60 per second."""
    m = SessionMachine(limits=Limits(max_frames_per_s=60))
    feed(m, [INIT])
    acts = feed(m, [FRAME] * 500, step=0.02)
    assert errors(acts) == []
    assert m.state is State.IN_SEGMENT


def test_segment_over_max_length_gets_a_final_and_the_next_frame_starts_a_new_one():
    """A runaway segment is ended with reason max_segment when it reaches max_segment_s; nothing is
    refused and the next frame opens segment 2."""
    m = SessionMachine(limits=Limits(max_segment_s=0.1))  # 5 frames of 20 ms
    feed(m, [INIT])
    acts = feed(m, [FRAME] * 5)
    assert acts[-1] == s.EndSegment("max_segment")
    assert sum(isinstance(a, s.EndSegment) for a in acts) == 1
    assert m.state is State.IDLE
    assert feed(m, [FRAME])[0] == s.OpenSegment(2, 16000, SpeechOptions(), True)


def test_idle_timeout_in_a_segment_ends_it_then_closes_4408():
    """Idle timeout with audio pending: its final first, then error idle_timeout and close 4408."""
    m = started()
    feed(m, [FRAME])
    acts = m.idle_timeout()
    assert kinds(acts) == ["EndSegment", "error:idle_timeout", "Close"]
    assert closes(acts) == [CloseCode.IDLE]
    assert m.state is State.CLOSED


def test_idle_timeout_before_init_or_while_idle_just_closes():
    """Idle timeout with no open segment: error and close 4408, no final."""
    for m in (SessionMachine(), started()):
        acts = m.idle_timeout()
        assert kinds(acts) == ["error:idle_timeout", "Close"]
        assert closes(acts) == [CloseCode.IDLE]


def test_shutdown_finishes_the_open_segment_then_closes_1001():
    """Shutdown during a segment: EndSegment('shutdown') before close 1001; without one, close only."""
    m = started()
    feed(m, [FRAME])
    assert m.shutdown() == [s.EndSegment("shutdown"), s.Close(CloseCode.GOING_AWAY, "server shutting down")]
    idle = started()
    assert closes(idle.shutdown()) == [CloseCode.GOING_AWAY]
    assert kinds(idle.shutdown()) == []


def test_a_closed_session_ignores_everything():
    """After a fatal error nothing more happens: no actions for text, audio, timeouts or shutdown."""
    m = SessionMachine()
    feed(m, [FRAME])
    assert m.state is State.CLOSED
    assert feed(m, [INIT, FRAME, END, "junk"]) == []
    assert m.idle_timeout() == []
    assert m.shutdown() == []


def test_health_request_is_handed_to_the_adapter():
    """{"type":"health"} asks the adapter for live figures, in any state, without changing it."""
    m = SessionMachine()
    assert feed(m, ['{"type":"health"}']) == [s.HealthWanted()]
    assert m.state is State.AWAITING_INIT
    feed(m, [INIT, FRAME])
    assert feed(m, ['{"type":"health"}']) == [s.HealthWanted()]
    assert m.state is State.IN_SEGMENT


def test_close_codes_are_the_documented_ones():
    """The close codes clients and the README rely on."""
    assert {c.name: c.value for c in CloseCode} == {"NORMAL": 1000, "GOING_AWAY": 1001, "POLICY": 1008,
                                                    "TOO_BIG": 1009, "INTERNAL": 1011, "TRY_AGAIN": 1013,
                                                    "UNAUTHORIZED": 4401, "FORBIDDEN": 4403,
                                                    "IDLE": 4408}
