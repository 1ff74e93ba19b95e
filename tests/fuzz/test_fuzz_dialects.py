"""Fuzzing the server's dialect machines (seeds 001-004 and Wyoming) with random sequences of their
own messages mixed with garbage, at increasing times: only actions come back, and the segment and
close invariants of ``invariants.py`` hold for each. The voice gate hears loud audio as speech
(``strategies.loud_classifier``), so the fuzzer opens, pauses and ends segments at will."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from stt_core import session as s
from stt_core import vad
from stt_core.errors import PeerError
from stt_server import handy_session, hybrid_session, nemo_session, socketio_session
from stt_server import wyoming_session as w
from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.info import AsrModel, AsrProgram, Attribution, Describe, Info

from tests.fuzz import strategies as fs
from tests.fuzz.invariants import WYOMING_ACTIONS, Checker, drive


@pytest.fixture(autouse=True, scope="module")
def loud_is_speech() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(vad, "classifier", fs.loud_classifier)
        yield


LANGS = ("en",)
QUICK = vad.VadConfig(frame_ms=10, preroll_ms=0, start_ms=10, start_window_ms=30, min_speech_ms=0)
LOUD_100MS = np.tile(fs.TONE, 200).tobytes()
# the engine's results for the segments ended, and the adapter's timer and shutdown (rarer: they close)
common_steps = ((3, st.tuples(st.just("partial"), fs.partial_results)),
                (3, st.tuples(st.just("final"), fs.final_results)), (1, st.just(("idle",))),
                (1, st.just(("shutdown",))))


def texts(messages: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[tuple[str, str, float]]:
    return st.tuples(st.just("text"), messages.map(json.dumps), fs.gaps)


def garbage(messages: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[tuple[str, str, float]]:
    return st.tuples(st.just("text"), fs.garbage_text(messages), fs.gaps)


def pcm_steps(max_ms: int = 400) -> st.SearchStrategy[tuple[str, bytes, float]]:
    return st.tuples(st.just("bytes"), st.one_of(fs.pcm16(max_ms), fs.loud_pcm), fs.gaps)


LOUD_BYTES = st.tuples(st.just("bytes"), fs.loud_pcm, fs.gaps)


# ---- seed 001: Handy ---------------------------------------------------------------------------------

handy_messages = st.one_of(
    st.fixed_dictionaries({}, optional={"language": st.sampled_from(["en", "de", None, "", 5]),
                                        "task": st.sampled_from(["transcribe", "translate", "x"]),
                                        "beam_size": st.one_of(st.integers(-1, 30), fs.json_values)}),
    st.just({"type": "stop"}), st.fixed_dictionaries({"type": fs.json_values}))
handy_steps = fs.weighted((2, texts(handy_messages)), (1, garbage(handy_messages)), (12, pcm_steps()),
                          (1, st.tuples(st.just("bytes"), fs.random_bytes, fs.gaps)), *common_steps)


@given(fs.limits, fs.vad_configs, fs.sequences(handy_steps, LOUD_BYTES))
def test_handy_session(limits: s.Limits, config: vad.VadConfig, steps: list[tuple[Any, ...]]) -> None:
    m = handy_session.HandySession(languages=LANGS, limits=limits, vad=config)
    checker = Checker()
    checker.check(m.opened(), False)

    def invariants() -> None:
        if m.state is not handy_session.State.CLOSED:
            assert checker.open == m.in_segment

    drive(m, steps, checker, invariants)


# ---- seed 002: NeMo ------------------------------------------------------------------------------------


@st.composite
def nemo_audio(draw: st.DrawFn, loud: bool = False) -> dict[str, Any]:
    pcm = draw(fs.loud_pcm if loud else fs.pcm16(300))
    samples = np.frombuffer(pcm, dtype="<i2").astype("<f4") / 32768
    if samples.size and draw(st.integers(0, 9)) == 0:
        samples[draw(st.integers(0, samples.size - 1))] = draw(st.sampled_from([np.nan, np.inf, 1e30]))
    data = base64.b64encode(samples.tobytes()).decode()
    return {"type": "audio", "data": draw(st.one_of(st.just(data), st.just(data[:-1]), fs.json_values))}


nemo_messages = st.one_of(
    st.fixed_dictionaries({"type": st.just("config")}, optional={
        "sample_rate": fs.rates, "language": st.sampled_from(["en", "de", None, "auto", 1]),
        "enable_partial": st.booleans(), "vad": st.one_of(st.booleans(), st.just("yes")),
        "task": st.sampled_from(["transcribe", "translate"]),
        "prompt": st.one_of(st.none(), st.text(max_size=20)),
        "model": st.text(max_size=5), "chunk_duration": st.floats()}),
    nemo_audio(), st.sampled_from([{"type": t} for t in ("commit", "reset", "stop", "x")]))
nemo_config = st.fixed_dictionaries({"type": st.just("config"), "vad": st.booleans()},
                                    optional={"sample_rate": st.sampled_from([16000, 8000, 48000])})
nemo_steps = fs.weighted((3, texts(nemo_messages)), (1, garbage(nemo_messages)), (10, texts(nemo_audio())),
                         (1, st.tuples(st.just("bytes"), fs.random_bytes, fs.gaps)), *common_steps)


@given(fs.limits, fs.vad_configs,
       fs.weighted((3, st.lists(texts(nemo_config), min_size=1, max_size=1)), (1, st.just([]))),
       fs.sequences(nemo_steps, texts(nemo_audio(loud=True))))
@example(s.Limits(), vad.VadConfig(), [], [("text", '{"type": "config", "vad": true}', 0.02),
                                             ("text", '{"type": "audio", "data": "' + "A" * 5 + '"}', 0.02)])
def test_nemo_session(limits: s.Limits, config: vad.VadConfig,
                      first: list[tuple[Any, ...]], steps: list[tuple[Any, ...]]) -> None:
    steps = first + steps  # mostly a config first: without one, everything else is refused
    m = nemo_session.NemoSession(languages=LANGS, model="fuzz", limits=limits, vad=config, clock=lambda: 0.0)
    checker = Checker()
    checker.check(m.opened(), False)

    def invariants() -> None:
        if m.state is not nemo_session.State.CLOSED:
            assert checker.open == m.in_segment

    drive(m, steps, checker, invariants)


@given(st.sampled_from(["missing", "wrong"]), fs.sequences(nemo_steps, texts(nemo_audio(loud=True))))
def test_nemo_session_without_the_token(auth: nemo_session.Auth, steps: list[tuple[Any, ...]]) -> None:
    """No token or a wrong one: an error and the close at once, then nothing whatever comes."""
    m = nemo_session.NemoSession(languages=LANGS, model="fuzz", auth=auth, clock=lambda: 0.0)
    checker = Checker()
    checker.check(m.opened(), True)
    drive(m, steps, checker)


# ---- seed 003: the hybrid gateway ------------------------------------------------------------------------


@st.composite
def hybrid_packets(draw: st.DrawFn, loud: bool = False) -> bytes:
    rate = draw(st.sampled_from([16000, 48000]) if loud else
                st.one_of(st.sampled_from([16000, 48000, 8000]), fs.rates, fs.json_values))
    meta = json.dumps({"sampleRate": rate}).encode()
    pcm = draw(fs.loud_pcm if loud else st.one_of(fs.pcm16(200), fs.loud_pcm))
    return struct.pack("<i", len(meta)) + meta + pcm


hybrid_steps = fs.weighted((12, st.tuples(st.just("bytes"), hybrid_packets(), fs.gaps)),
                           (2, st.tuples(st.just("bytes"), fs.random_bytes, fs.gaps)),
                           (1, st.tuples(st.just("text"), fs.garbage_text(), fs.gaps)), *common_steps)


@given(fs.limits, fs.vad_configs,
       fs.sequences(hybrid_steps, st.tuples(st.just("bytes"), hybrid_packets(loud=True), fs.gaps)))
def test_hybrid_session(limits: s.Limits, config: vad.VadConfig, steps: list[tuple[Any, ...]]) -> None:
    m = hybrid_session.HybridSession(languages=LANGS, limits=limits, vad=config)
    checker = Checker()

    def invariants() -> None:
        if m.state is not hybrid_session.State.CLOSED:
            assert checker.open == m.in_segment

    drive(m, steps, checker, invariants)


# ---- seed 004: Socket.IO ------------------------------------------------------------------------------

sio_payloads = fs.weighted(
    (6, st.one_of(fs.pcm16(200), fs.loud_pcm)),
    (3, st.fixed_dictionaries({"clientId": st.sampled_from(["a", "b"]), "audio": fs.loud_pcm},
                              optional={"sampleRate": fs.rates})),
    (1, st.fixed_dictionaries({"audio": fs.pcm16(100).map(lambda b: base64.b64encode(b).decode())})),
    (1, fs.random_bytes), (1, fs.json_values))
sio_steps = fs.weighted((15, st.tuples(st.just("audio_data"), sio_payloads, fs.gaps)),
                        (3, st.tuples(st.just("partial"), fs.partial_results)),
                        (3, st.tuples(st.just("final"), fs.final_results)),
                        (1, st.tuples(st.just("finish"), fs.final_reasons)), (1, st.just(("cancel",))))


@given(fs.limits, fs.vad_configs,
       fs.sequences(sio_steps, st.tuples(st.just("audio_data"), fs.loud_pcm, fs.gaps)))
@example(s.Limits(), QUICK, [("audio_data", LOUD_100MS, 0.02), ("finish", "end"), ("finish", "end")])
@example(s.Limits(), QUICK, [("audio_data", LOUD_100MS, 0.02), ("finish", "end"), ("cancel",)])
def test_socketio_session(limits: s.Limits, config: vad.VadConfig, steps: list[tuple[Any, ...]]) -> None:
    """As ``socketio_server`` does it: the payload decoded (``audio_of``; a ``PeerError`` is answered
    there), then the clientId's transcriber fed; ``finish`` and ``cancel`` end it."""
    m = socketio_session.SocketIoSession(client_id="a", limits=limits, vad=config, clock=lambda: 0.0)
    checker = Checker(closes=())
    now = 1000.0
    # (finish twice, or cancel after finish, ended the same segment twice before the fix)
    for step in steps:
        kind = step[0]
        if kind == "audio_data":
            now += step[2]
            decoded = fs.outcome(socketio_session.audio_of, step[1])
            if isinstance(decoded, PeerError):
                continue
            _, pcm, rate = decoded
            out = m.audio(pcm, rate, now)
        elif kind == "partial":
            assert all(isinstance(a, s.Send) for a in m.partial(step[1]))
            continue
        elif kind == "final":
            if checker.ended:
                segment, reason = checker.ended.pop(0)
                assert all(isinstance(a, s.Send) for a in m.final(step[1], reason, segment))
            continue
        else:
            was_closed = m.closed
            out = m.finish(step[1]) if kind == "finish" else m.cancel()
            checker.check(out, was_closed, kind)  # no Close action: the transcriber is just dropped
            assert not checker.open, f"{kind} leaves no utterance open"
            assert m.closed
            checker.closed = True
            continue
        checker.check(out, m.closed, kind)
        if not m.closed:
            assert checker.open == m.in_segment


# ---- Wyoming ------------------------------------------------------------------------------------------

INFO = Info(asr=[AsrProgram(name="fuzz", attribution=Attribution("a", "u"), installed=True, description=None,
                            version=None, models=[AsrModel(name="m", attribution=Attribution("a", "u"),
                                                           installed=True, description=None, version=None,
                                                           languages=["en"])])])
MONO16 = {"rate": 16000, "width": 2, "channels": 1}
formats = fs.weighted((4, st.just((16000, 2, 1))),
                      (3, st.tuples(st.sampled_from([8000, 22050, 44100, 48000]), st.sampled_from([1, 2, 4]),
                                    st.integers(1, 3))),
                      (1, st.tuples(fs.json_values, fs.json_values, fs.json_values)))


@st.composite
def wyoming_events(draw: st.DrawFn, fmt: tuple[Any, Any, Any]) -> Event:
    kind = draw(st.sampled_from(["describe", "ping", "transcribe", "start", *["chunk"] * 6, "stop", "garbage",
                                 "mutated"]))
    rate, width, channels = fmt
    if kind == "describe":
        return Describe().event()
    if kind == "ping":
        return Event(type="ping", data=draw(st.one_of(st.none(), st.just({"text": "hi"}))))
    if kind == "transcribe":
        return Transcribe(language=draw(st.sampled_from([None, "en", "de", ""]))).event()
    if kind == "start":
        return Event(type="audio-start", data={"rate": rate, "width": width, "channels": channels})
    if kind == "chunk":
        audio = draw(st.one_of(fs.pcm16(100), fs.loud_pcm))
        ok = isinstance(width, int) and isinstance(channels, int) and width > 0 and channels > 0
        if ok and draw(st.integers(0, 5)):  # whole samples mostly: a part one is fatal here
            frame = width * channels
            audio = audio[: len(audio) // frame * frame]
        return AudioChunk(rate=rate, width=width, channels=channels, audio=audio).event() if ok \
            else Event(type="audio-chunk", data={"rate": rate, "width": width, "channels": channels},
                       payload=audio)
    if kind == "stop":
        return AudioStop().event()
    if kind == "garbage":
        return Event(type=draw(st.text(max_size=12)), data=draw(st.one_of(st.none(), st.dictionaries(
            st.text(max_size=8), fs.json_values, max_size=3))), payload=draw(st.one_of(st.none(), st.binary(
                max_size=16))))
    base = draw(st.sampled_from([AudioStart(16000, 2, 1).event(), AudioChunk(16000, 2, 1, b"\0\0").event(),
                                 Transcribe(language="en").event(), Event(type="ping")]))
    data = dict(base.data or {})
    data[draw(st.sampled_from([*data, "x"]) if data else st.just("x"))] = draw(fs.json_values)
    return Event(type=base.type, data=data, payload=draw(st.one_of(st.none(), st.binary(max_size=7))))


@st.composite
def wyoming_steps(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    """Requests as a client makes them (transcribe, audio-start, chunks, audio-stop), with the engine's
    partials and finals among them, and now and then any event at all (each is fatal here)."""
    fmt = draw(formats)
    steps: list[tuple[Any, ...]] = []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            steps.append(("event", Transcribe(language=draw(st.sampled_from(["en", None]))).event(), 0.0))
        steps.append(("event", Event(type="audio-start", data=dict(zip(("rate", "width", "channels"), fmt,
                                                                         strict=True))), 0.0))
        for _ in range(draw(st.integers(0, 15))):
            loud = fmt == (16000, 2, 1) and draw(st.booleans())
            chunk = AudioChunk(rate=16000, width=2, channels=1, audio=draw(fs.loud_pcm)).event() if loud \
                else draw(wyoming_events(fmt))
            steps.append(("event", chunk, draw(fs.gaps)))
            if draw(st.integers(0, 3)) == 0:
                steps.append(draw(st.one_of(st.tuples(st.just("partial"), st.text(max_size=20)),
                                            st.tuples(st.just("final"), fs.final_results))))
        if draw(st.integers(0, 4)):
            steps.append(("event", AudioStop().event(), 0.0))
            steps.append(("final", draw(fs.final_results)))
    for _ in range(draw(st.integers(0, 2))):  # anything at all, anywhere
        steps.insert(draw(st.integers(0, len(steps))), ("event", draw(wyoming_events(fmt)), 0.0))
    if draw(st.integers(0, 3)) == 0:
        steps.append(draw(st.sampled_from([("idle",), ("shutdown",)])))
    return steps


@given(st.sampled_from([None, vad.VadConfig(frame_ms=10, start_ms=20, start_window_ms=30, hangover_ms=60,
                                            pause_ms=20)]),
       st.sampled_from([0.1, 60.0]), wyoming_steps())
@example(None, 60.0, [("event", Event(type="audio-start", data=MONO16), 0),
                      ("event", Event(type="audio-chunk", data=MONO16), 0)])  # a chunk with no payload
def test_wyoming_session(config: vad.VadConfig | None, max_segment_s: float,
                         steps: list[tuple[Any, ...]]) -> None:
    m = w.WyomingSession(info=INFO, languages=LANGS, vad=config,
                         limits=w.WyomingLimits(max_segment_s=max_segment_s))
    # a refusal drops the segment (nobody is left to read its transcript): the adapter cancels it
    checker = Checker(actions=WYOMING_ACTIONS, closes=(w.Hangup,), close_ends_segment=False)
    now = 1000.0
    for step in steps:
        kind = step[0]
        if kind == "event":
            now += step[2]
            out = m.receive(step[1], now)
        elif kind == "partial":
            out = m.partial(step[1])
            assert all(isinstance(a, w.Reply) for a in out)
            continue
        elif kind == "final":
            assert all(isinstance(a, w.Reply) for a in m.final(step[1]))
            continue
        else:
            out = m.idle_timeout() if kind == "idle" else m.shutdown()
        checker.check(out, m.state is w.State.CLOSED, kind)
        if m.state is not w.State.CLOSED:
            assert checker.open == (m.state is w.State.STREAMING)
            assert checker.last_index == m.segment


@given(st.lists(st.one_of(st.text(max_size=30), st.sampled_from(
    ["turn on", "turn on the", "Turn on the", "turn off the light", "Turn on, the light."])), max_size=12))
@example(["turn on", "turn on the", "Turn on the"])
def test_wyoming_transcript_chunks_join_into_what_was_sent(partials: list[str]) -> None:
    """The chunks of a stream, joined as the wyoming README says (``"".join``), are the words sent."""
    chunks = w.Chunks()
    deltas = [d for text in partials if (d := chunks.delta(text))]
    # (``sent`` keeps the spelling of the partial that confirmed a word: compared as the machine does)
    assert [w._norm(x) for x in "".join(deltas).split()] == [w._norm(x) for x in chunks.sent]
    assert all(d.startswith(" ") for d in deltas[1:]), "each chunk after the first starts a new word"
