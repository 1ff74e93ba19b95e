"""Fuzzing stt-core's machines with random sequences of inputs at increasing times: the ``/stt``
session (``SessionMachine``), the server-side endpointer (``AutoSegmenter``) and the client half
(``ClientSession``). Whatever the peer sends, only actions come back and the invariants hold (see
``invariants.py``); the client, fed by a real ``SessionMachine``, gives every utterance exactly one
final or failure, with every piece of its audio in it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from stt_core import client as c
from stt_core import protocol as p
from stt_core import session as s
from stt_core import vad
from stt_core.endpointing import AutoSegmenter
from stt_core.engine import FinalResult, PartialResult
from stt_core.options import SpeechOptions

from tests.fuzz import strategies as fs
from tests.fuzz.invariants import Checker, drive


@pytest.fixture(autouse=True, scope="module")
def loud_is_speech() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(vad, "classifier", fs.loud_classifier)
        yield


# ---- the /stt session ------------------------------------------------------------------------------

INIT = {"type": "init", "session_id": "fuzz", "sample_rate": 16000}
session_steps = st.one_of(
    st.tuples(st.just("text"), fs.client_messages.map(json.dumps), fs.gaps),
    st.tuples(st.just("text"), st.sampled_from([json.dumps(INIT), '{"type":"end"}', '{"type":"pause"}',
                                                '{"type":"resume"}']), fs.gaps),
    st.tuples(st.just("text"), fs.garbage_text(fs.client_messages), fs.gaps),
    st.tuples(st.just("bytes"), fs.pcm16(), fs.gaps),
    st.tuples(st.just("bytes"), fs.random_bytes, fs.gaps),
    st.tuples(st.just("partial"), fs.partial_results), st.tuples(st.just("final"), fs.final_results),
    st.just(("idle",)), st.just(("shutdown",)))


@given(fs.limits, st.lists(session_steps, max_size=40))
@example(s.Limits(), [("text", json.dumps(INIT), 0.02), ("bytes", b"\0\0" * 160, 0.02),
                      ("text", "[" * 5000, 0.02), ("text", "9" * 5000, 0.02)])
@example(s.Limits(max_frames_per_s=20), [("text", json.dumps(INIT), 0.0)] + [("text", "{}", 0.0)] * 25)
def test_session_machine(limits: s.Limits, steps: list[tuple[Any, ...]]) -> None:
    m = s.SessionMachine(limits=limits, model="fuzz", languages=("en",))
    checker = Checker()
    checker.check(m.opened(), False)
    segments = [0]

    def invariants() -> None:
        assert m.segment >= segments[-1], "the segment number only grows"
        segments.append(m.segment)
        assert checker.open == (m.state is s.State.IN_SEGMENT)
        if checker.open:
            assert checker.last_index == m.segment

    drive(m, steps, checker, invariants)


# ---- the server's endpointer --------------------------------------------------------------------------

segmenter_steps = st.one_of(st.tuples(st.just("feed"), fs.pcm16(600)), st.just(("flush",)),
                            st.just(("cancel",)))


@given(fs.vad_configs, st.lists(segmenter_steps, max_size=30))
def test_auto_segmenter(config: vad.VadConfig, steps: list[tuple[Any, ...]]) -> None:
    auto = AutoSegmenter(config, SpeechOptions())
    checker = Checker()
    for step in steps:
        out = auto.feed(step[1]) if step[0] == "feed" else getattr(auto, step[0])()
        checker.check(out, False, step[0])
        assert checker.open == auto.speaking
        assert checker.last_index == auto.segment
        if step[0] != "feed":
            assert not auto.speaking, f"{step[0]} leaves no utterance open"


# ---- the client machine -----------------------------------------------------------------------------


def server_frames() -> st.SearchStrategy[str]:
    """What a server may send the client: real messages (finals and partials of random segments, with
    every reason), errors with the codes the client acts on, and garbage."""
    finals = st.builds(p.Final, text=st.text(max_size=10), confidence=st.floats(0, 1),
                       t_ms=st.integers(0, 10**5), segment=st.integers(0, 6), reason=fs.final_reasons,
                       model=st.sampled_from([None, "tiny.en", "base"]))
    partials = st.builds(p.Partial, text=st.text(max_size=10), confidence=st.floats(0, 1),
                         t_ms=st.integers(0, 10**5), segment=st.integers(0, 6))
    codes = st.sampled_from(["empty_segment", "server_busy", "shutting_down", "unauthorized", "flood", "x"])
    errors = st.builds(p.Error, code=codes, message=st.text(max_size=10))
    ready = st.builds(p.Ready, session_id=st.just("s"), sample_rate=st.just(16000), model=st.just("tiny.en"),
                      partial_interval_ms=st.just(300), protocol=st.integers(1, 2))
    real = st.one_of(finals, partials, errors, ready, st.builds(p.Health, ok=st.booleans())).map(p.encode)
    return st.one_of(real, fs.garbage_text(real.map(json.loads)))


KEYS = ["a", "b", "c"]
client_steps = st.one_of(
    st.just(("connected",)), st.tuples(st.just("lost"), st.text(max_size=5)),
    st.tuples(st.sampled_from(["open", "end", "cancel", "pause", "resume"]), st.sampled_from(KEYS)),
    st.tuples(st.just("audio"), st.sampled_from(KEYS), st.binary(min_size=0, max_size=8).map(fs.even)),
    st.tuples(st.just("text"), server_frames()), st.tuples(st.just("bytes"), st.binary(max_size=8)))


@given(st.lists(client_steps, max_size=50))
@example([("connected",), ("open", "a"), ("audio", "a", b"\0\0"), ("end", "a"),
          ("text", '{"type":"final","text":"x","confidence":0.5,"t_ms":1,"segment":1,'
                   '"reason":"max_segment"}'),
          ("text", '{"type":"final","text":"y","confidence":0.5,"t_ms":' + str(10**400) + ',"segment":2,'
                   '"reason":"end"}')])  # a float times a 400-digit t_ms: OverflowError, before the fix
def test_client_session_fed_anything(steps: list[tuple[Any, ...]]) -> None:
    """Every stream ends in at most one ``FinalFor`` or ``Failed``, and none of a cancelled stream;
    streams are named by the caller's keys, so a key's events belong to the stream opened last under
    it (a stream's key may be reused once it has ended)."""
    m = c.ClientSession("fuzz", SpeechOptions())
    live: set[str] = set()  # opened and not yet ended, failed or cancelled
    for step in steps:
        kind = step[0]
        if kind == "connected":
            out: list[Any] = m.connected()
        elif kind == "lost":
            out = m.lost(step[1])
        elif kind == "open":
            out = m.open(step[1])
            if any(isinstance(e, c.Failed) for e in out):
                assert step[1] not in live, "open fails only when nothing is open (not connected)"
                out = []  # its own failure: not the end of a stream that was open
            else:
                live.add(step[1])
        elif kind == "audio":
            out = m.audio(step[1], step[2])
        elif kind == "text":
            out = m.receive_text(step[1])
        elif kind == "bytes":
            out = m.receive_bytes(step[1])
        elif kind == "cancel":
            out = m.cancel(step[1])
            live.discard(step[1])
        else:
            out = getattr(m, kind)(step[1])
        assert isinstance(out, list)
        for e in out:
            assert isinstance(e, c.Out | c.ClientEvent), e
            if isinstance(e, c.SendText):
                assert p.decode_client_message(e.text), "the client only sends what a server decodes"
            if isinstance(e, c.PartialFor | c.FinalFor):
                assert e.key in live, f"{type(e).__name__} for {e.key}, which is not open"
            if isinstance(e, c.FinalFor | c.Failed):
                assert e.key in live, f"a second end for {e.key}: {e}"
                live.discard(e.key)
        if not m.is_connected:
            assert all(m.segment_of(k) is None for k in KEYS)


# ---- the client against the real server machine ---------------------------------------------------------

conversation_steps = st.one_of(
    st.tuples(st.just("open"), st.sampled_from(KEYS)),
    st.tuples(st.just("audio"), st.sampled_from(KEYS), st.integers(1, 4)),
    st.tuples(st.sampled_from(["end", "cancel", "pause", "resume"]), st.sampled_from(KEYS)),
    st.just(("decode",)), st.just(("decode",)))


@given(st.sampled_from([0.001, 0.002, 60.0]), st.lists(conversation_steps, max_size=40))
# the stream's audio ends at a cut: empty_segment answers its end before the cut's final is decoded
# (before the fix the stream waited for a continuation that never came, and its final was lost)
@example(0.001, [("open", "a"), ("audio", "a", 1), ("end", "a")])
@example(0.002, [("open", "a"), ("audio", "a", 1), ("audio", "a", 1), ("end", "a"), ("open", "b"),
                 ("audio", "b", 3), ("decode",), ("end", "b")])
@example(0.001, [("open", "a"), ("open", "b"), ("audio", "b", 1), ("audio", "a", 1), ("audio", "b", 1)])
@example(0.001, [("open", "b"), ("audio", "b", 1), ("audio", "b", 1)])
def test_client_and_server_machines_lose_nothing(max_segment_s: float, steps: list[tuple[Any, ...]]) -> None:
    """The worker's client machine talking to the server's: audio chunks are numbered samples, the
    server's "engine" decodes a segment into the numbers of its samples; segments are cut at
    ``max_segment_s`` (16 or 32 samples). Every utterance ended gets exactly one final, holding all of
    its chunks' numbers in order and no others', however the cuts fall."""
    server = s.SessionMachine(limits=s.Limits(max_segment_s=max_segment_s, max_frames_per_s=10**6))
    client = c.ClientSession("fuzz", SpeechOptions())
    heard: dict[int, list[str]] = {}  # the server's segments: what their audio said
    due: list[tuple[int, p.FinalReason]] = []  # segments ended, finals not yet decoded (in order)
    sent: dict[str, list[str]] = {}  # each live stream's chunks
    ended: dict[str, list[str]] = {}  # streams ended by the client, awaiting their final
    got: dict[str, str] = {}
    serial = 0

    def to_server(outs: list[Any]) -> None:
        for o in outs:
            acts = server.receive_text(o.text, 0.0) if isinstance(o, c.SendText) else \
                server.receive_bytes(o.data, 0.0)
            for a in acts:
                if isinstance(a, s.OpenSegment):
                    heard[a.index] = []
                elif isinstance(a, s.Audio):
                    heard[server.segment] += _numbers(a.pcm)
                elif isinstance(a, s.EndSegment):
                    if a.reason == "max_segment":
                        # a cut comes max_segment_s of real-time audio after the one before: the engine
                        # has long decoded that one's final, and sent partials of this segment (the
                        # client cannot tell two cuts in flight from one when empty_segment comes
                        # first, nor a segment it has heard nothing of: see client.py)
                        while any(r == "max_segment" for _, r in due):
                            decode()
                        for m in server.partial(PartialResult(text="", confidence=1.0, t_ms=1)):
                            assert isinstance(m, s.Send)
                            on_events(client.receive_text(p.encode(m.message)))
                    due.append((server.segment, a.reason))
                elif isinstance(a, s.Send):
                    on_events(client.receive_text(p.encode(a.message)))

    def on_events(events: list[Any]) -> None:
        for e in events:
            assert not isinstance(e, c.ServerProblem | c.Failed), e
            if isinstance(e, c.FinalFor):
                assert e.key not in got
                got[e.key] = e.final.text

    def decode() -> None:
        """The engine's final of the oldest segment ended: the numbers its audio held."""
        segment, reason = due.pop(0)
        result = FinalResult(text=" ".join(heard[segment]), confidence=1.0, t_ms=1, language="en",
                             decode_ms=0)
        for a in server.final(result, reason, segment):
            assert isinstance(a, s.Send)
            on_events(client.receive_text(p.encode(a.message)))

    current = ""  # the stream whose audio went out last
    to_server([o for o in client.connected() if isinstance(o, c.SendText)])
    for step in steps:
        kind, key = step[0], step[1] if len(step) > 1 else ""
        if kind == "open" and key not in sent and key not in ended and key not in got:
            on_events(client.open(key))
            sent[key] = []
        elif kind == "audio" and key in sent:
            # a stream's first audio ends the one still open (the worker's gate ended it already)
            if not sent[key] and current and current != key and sent.get(current):
                ended[current] = sent.pop(current)
            current = key
            words = [str(serial + i) for i in range(step[2])]
            serial += step[2]
            sent[key] += words
            to_server(client.audio(key, _pcm(words)))
        elif kind == "end" and key in sent:
            outs = client.end(key)
            words = sent.pop(key)
            if words:
                ended[key] = words
            to_server([o for o in outs if isinstance(o, c.SendText | c.SendBytes)])
        elif kind == "cancel" and key in sent:
            sent.pop(key)
            to_server(client.cancel(key))
        elif kind in ("pause", "resume") and key in sent:
            to_server(getattr(client, kind)(key))
        elif kind == "decode" and due:
            decode()
    # the rest of the conversation: every stream ends, and the server decodes what it owes
    for key in list(sent):
        words = sent.pop(key)
        if words:
            ended[key] = words
        to_server([o for o in client.end(key) if isinstance(o, c.SendText | c.SendBytes)])
    while due:
        decode()
    assert got == {k: " ".join(v) for k, v in ended.items()}


def _pcm(words: list[str]) -> bytes:
    """Each word is 16 samples: its number, so the server's segments can be read back."""
    return b"".join(int(w).to_bytes(2, "little") * 16 for w in words)


def _numbers(pcm: bytes) -> list[str]:
    """The words of a segment's audio: one per 16 samples (a cut may fall inside a word: each part
    gives it; the final's text then repeats it, which the test would catch)."""
    out: list[str] = []
    for i in range(0, len(pcm) - 1, 32):
        out.append(str(int.from_bytes(pcm[i:i + 2], "little")))
    return out
