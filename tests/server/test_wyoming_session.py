"""The Wyoming session machine in-process: wyoming events in, actions out; no socket, no model."""

from __future__ import annotations

import numpy as np
import pytest
from stt_core import session as s
from stt_core.engine import FinalResult
from stt_core.options import SpeechOptions
from stt_server import wyoming_session as w
from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.info import AsrProgram, Attribution, Describe, Info
from wyoming.ping import Ping

from harness.speech import clip

INFO = Info(asr=[AsrProgram(name="t", attribution=Attribution("a", "u"), installed=True, description=None,
                            version=None, models=[])])


def session(**kw: object) -> w.WyomingSession:
    return w.WyomingSession(info=INFO, languages=("en",), **kw)  # type: ignore[arg-type]


def tone(ms: int, rate: int = 16000) -> bytes:
    t = np.arange(rate * ms // 1000) / rate
    return (np.sin(2 * np.pi * 200 * t) * 12000).astype("<i2").tobytes()


def silence(ms: int, rate: int = 16000) -> bytes:
    return b"\0\0" * (rate * ms // 1000)


def chunk(pcm: bytes, rate: int = 16000) -> Event:
    return AudioChunk(rate=rate, width=2, channels=1, audio=pcm).event()


def kinds(actions: list[w.Action]) -> list[str]:
    out = []
    for a in actions:
        if isinstance(a, w.Reply):
            out.append(a.event.type + (f":{a.event.data.get('code')}" if a.event.type == "error" else ""))
        else:
            out.append(type(a).__name__)
    return out


def feed(m: w.WyomingSession, events: list[Event], t0: float = 0.0) -> list[w.Action]:
    out: list[w.Action] = []
    for i, e in enumerate(events):
        out += m.receive(e, t0 + i * 0.01)
    return out


def test_describe_and_ping_are_answered_and_unknown_events_dropped():
    m = session()
    assert kinds(m.receive(Describe().event(), 0)) == ["info"]
    assert kinds(m.receive(Ping(text="x").event(), 0)) == ["pong"]
    assert m.receive(Event(type="something-new", data={"x": 1}), 0) == []


def test_a_request_opens_a_segment_feeds_it_and_ends_it_at_audio_stop():
    """transcribe's options reach the segment; audio at 16 kHz passes through untouched; audio-stop
    ends the segment; the final goes back as a transcript with its confidence."""
    m = session()
    acts = feed(m, [Transcribe(language="en", transcript_names=["Kwesi"], transcript_terms=["lamp"]).event(),
                    AudioStart(rate=16000, width=2, channels=1).event(), chunk(silence(20)),
                    AudioStop().event()])
    opened = next(a for a in acts if isinstance(a, s.OpenSegment))
    assert opened.options == SpeechOptions(language="en", hotwords="Kwesi, lamp")
    assert [a.pcm for a in acts if isinstance(a, s.Audio)] == [silence(20)]
    assert isinstance(acts[-1], s.EndSegment)
    (reply,) = m.final(FinalResult(text="hello", confidence=0.8, t_ms=20, language="en", decode_ms=5))
    assert isinstance(reply, w.Reply)
    assert (reply.event.type, reply.event.data) == ("transcript", {"text": "hello", "language": "en",
                                                                   "confidence": 0.8})


def test_partials_become_a_stream_of_chunks_closed_after_the_transcript():
    """transcript-start before the first chunk; chunks are deltas that join into text; transcript,
    then transcript-stop (the order the wyoming package's README gives)."""
    m = session()
    feed(m, [AudioStart(rate=16000, width=2, channels=1).event()])
    out = m.partial("Turn on") + m.partial("Turn on the") + m.partial("Turn on the lights")
    assert kinds(out)[0] == "transcript-start"
    texts = [a.event.data["text"] for a in out
             if isinstance(a, w.Reply) and a.event.type == "transcript-chunk"]
    assert "".join(texts).split()[:2] == ["Turn", "on"]
    feed(m, [AudioStop().event()])
    final = m.final(FinalResult(text="Turn on the lights.", confidence=0.9, t_ms=900, language="en",
                                decode_ms=5))
    assert kinds(final) == ["transcript", "transcript-stop"]


@pytest.mark.parametrize(("partials", "joined"), [
    (["Turn", "Turn on", "Turn on the light", "Turn on the lights"], "Turn on the"),
    (["Turn on the", "turn on the lights,", "Turn on the lights in"], "Turn on the lights"),
    (["Produce", "Produced the block", "Produced the block books"], "Produce"),  # revised: stop there
    (["", "a b"], "a b"),
])
def test_chunks_carry_only_words_two_partials_agree_on(partials: list[str], joined: str):
    """The first partial goes out whole; later words once two partials in a row agree on them
    (ignoring case and punctuation); once a partial revises what was sent, nothing more is sent."""
    c = w.Chunks()
    deltas = [d for p in partials if p and (d := c.delta(p))]
    assert "".join(deltas) == joined


def hints(actions: list[w.Action]) -> list[str]:
    return [type(a).__name__ for a in actions if isinstance(a, s.PauseSegment | s.ResumeSegment)]


def test_trailing_silence_pauses_the_segment_and_speech_resumes_it():
    """The gate inside hears silence after speech (a real recording; webrtcvad is fixed-point, so the
    same on every CPU): the last hint is PauseSegment (the final's decode may start); speech again:
    the last hint is ResumeSegment."""
    speech = clip("LJ001-0002").astype("<i2").tobytes()
    m = session()
    acts = feed(m, [AudioStart(rate=16000, width=2, channels=1).event()])
    acts += feed(m, [chunk(speech[i:i + 640]) for i in range(0, len(speech), 640)])
    acts += feed(m, [chunk(silence(400))])
    assert hints(acts)[-1:] == ["PauseSegment"], hints(acts)
    more = feed(m, [chunk(speech[i:i + 640]) for i in range(0, 32000, 640)])
    assert hints(more)[:1] == ["ResumeSegment"], hints(more)


def test_any_format_is_converted_to_16k_mono_once():
    """48 kHz stereo in: 16 kHz mono out, a third as many samples per channel."""
    m = session(vad=None)
    feed(m, [AudioStart(rate=48000, width=2, channels=2).event()])
    stereo = np.repeat(np.frombuffer(tone(480, 48000), "<i2"), 2).astype("<i2").tobytes()
    acts = m.receive(AudioChunk(rate=48000, width=2, channels=2, audio=stereo).event(), 0)
    acts += feed(m, [AudioStop().event()])
    samples = sum(len(a.pcm) for a in acts if isinstance(a, s.Audio)) // 2
    assert abs(samples - 16000 * 480 // 1000) <= 16


@pytest.mark.parametrize(("events", "code"), [
    ([chunk(silence(20))], "audio_before_start"),
    ([AudioStart(rate=0, width=2, channels=1).event()], "bad_rate"),
    ([AudioStart(rate=16000, width=2, channels=9).event()], "bad_channels"),
    ([AudioStart(rate=16000, width=2, channels=1).event(), chunk(silence(20), rate=8000)], "format_changed"),
    ([AudioStart(rate=16000, width=2, channels=1).event(), chunk(b"\0\0\0")], "odd_length"),
    ([AudioStart(rate=16000, width=2, channels=1).event(), Transcribe().event()], "transcribe_during_audio"),
    ([Transcribe(language="de").event()], "bad_option"),
    ([Event(type="audio-start", data={"width": 2})], "bad_event"),
])
def test_bad_input_is_an_error_and_a_hangup(events: list[Event], code: str):
    m = session()
    acts = feed(m, events)
    assert kinds(acts)[-2:] == [f"error:{code}", "Hangup"]
    assert m.receive(Describe().event(), 1) == []  # closed: nothing more is answered


def test_a_flood_of_chunks_is_refused():
    m = session(limits=w.WyomingLimits(max_chunks_per_s=50), vad=None)
    feed(m, [AudioStart(rate=16000, width=2, channels=1).event()])
    acts = [a for _ in range(60) for a in m.receive(chunk(silence(10)), 0.5)]
    assert kinds(acts)[-2:] == ["error:flood", "Hangup"]


def test_audio_past_max_segment_is_not_fed():
    m = session(limits=w.WyomingLimits(max_segment_s=1.0), vad=None)
    feed(m, [AudioStart(rate=16000, width=2, channels=1).event()])
    acts = feed(m, [chunk(silence(500))] * 4)
    assert sum(len(a.pcm) for a in acts if isinstance(a, s.Audio)) == 32000


def test_shutdown_mid_stream_ends_the_segment_then_hangs_up():
    m = session()
    feed(m, [AudioStart(rate=16000, width=2, channels=1).event(), chunk(silence(20))])
    assert kinds(m.shutdown()) == ["EndSegment", "Hangup"]
    assert m.shutdown() == []


def test_audio_stop_without_audio_start_is_an_empty_transcript():
    (reply,) = session().receive(AudioStop().event(), 0)
    assert isinstance(reply, w.Reply)
    assert reply.event.data == {"text": ""}
