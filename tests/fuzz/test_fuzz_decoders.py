"""Fuzzing the decoders of stt-core and the server's dialects: whatever a peer sends, the answer is a
decoded message or the project's own ``PeerError``, never another exception (which would close the
session with 1011 and a traceback); and what the real message types encode decodes back unchanged."""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from stt_core import jsonwire
from stt_core import protocol as p
from stt_core.audio import MAX_RATE, MIN_RATE, WIDTHS, Framer, PcmConverter
from stt_core.errors import PeerError
from stt_core.options import (
    MAX_HOTWORDS_CHARS,
    MAX_PROMPT_CHARS,
    TASKS,
    check_options,
    hotwords_of,
    model_languages,
)
from stt_server import hybrid_session, socketio_session, wyoming_server
from wyoming.event import async_read_event

from tests.fuzz import strategies as fs

# ---- the /stt protocol -------------------------------------------------------------------------

server_messages = st.one_of(
    st.builds(p.Ready, session_id=st.text(max_size=20), sample_rate=fs.rates, model=st.text(max_size=10),
              partial_interval_ms=st.integers(0, 2000), protocol=st.integers(1, 3)),
    st.builds(p.Partial, text=st.text(max_size=40), confidence=st.floats(0, 1), t_ms=st.integers(0, 10**6),
              session_id=st.one_of(st.none(), st.text(max_size=8)), segment=st.integers(0, 50)),
    st.builds(p.Final, text=st.text(max_size=40), confidence=st.floats(0, 1), t_ms=st.integers(0, 10**6),
              segment=st.integers(0, 50), reason=fs.final_reasons, speculative=st.booleans(),
              language=st.one_of(st.none(), st.just("en")), model=st.one_of(st.none(), st.just("tiny.en"))),
    st.builds(p.Health, ok=st.booleans(), active_sessions=st.one_of(st.none(), st.integers(0, 40))),
    st.builds(p.Error, code=st.text(max_size=20), message=st.text(max_size=40)))

DECODED = (p.Init, p.End, p.HealthRequest, p.Pause, p.Resume)


@given(fs.garbage_text(fs.client_messages) | fs.client_messages.map(json.dumps))
@example("[" * 5000)
@example("9" * 5000)
@example('{"type": "init", "sample_rate": ' + "1" * 4400 + "}")
def test_client_message_decoder_raises_only_peer_errors(text: str) -> None:
    msg = fs.outcome(p.decode_client_message, text)
    if isinstance(msg, PeerError):
        assert msg.code
        assert len(msg.message) < 400, "an error message echoes no more than a short prefix of the input"
    else:
        assert isinstance(msg, DECODED)


@given(fs.client_messages)
def test_valid_client_messages_decode_as_the_model_reads_them(raw: dict[str, Any]) -> None:
    try:
        expected = p._client_adapter.validate_python(raw)
    except ValueError:
        with pytest.raises(PeerError):
            p.decode_client_message(json.dumps(raw))
        return
    assert p.decode_client_message(json.dumps(raw)) == expected


@given(fs.garbage_text(server_messages.map(lambda m: json.loads(p.encode(m)))))
@example("[" * 5000)
@example("9" * 5000)
@example('{"type": "final", "text": "", "confidence": 1, "t_ms": ' + "1" * 4400 + "}")
def test_server_message_decoder_raises_only_peer_errors(text: str) -> None:
    msg = fs.outcome(p.decode_server_message, text)
    if isinstance(msg, PeerError):
        assert msg.code == "bad_server_message"
    else:
        assert isinstance(msg, p.Ready | p.Partial | p.Final | p.Health | p.Error)


@given(server_messages)
def test_server_messages_round_trip(msg: p.Ready | p.Partial | p.Final | p.Health | p.Error) -> None:
    assert p.decode_server_message(p.encode(msg)) == msg


# ---- bounded JSON ------------------------------------------------------------------------------


@given(st.one_of(fs.garbage_text(), fs.random_bytes, st.builds(json.dumps, fs.json_values).map(str.encode)))
@example(b"\xff\xfe{")
@example("[" * 64 + "]" * 64)
def test_jsonwire_loads_raises_only_peer_errors(text: str | bytes) -> None:
    value = fs.outcome(jsonwire.loads, text)
    if isinstance(value, PeerError):
        assert value.code == "not_json"
        return
    # what it accepts is what the standard parser reads (bounded, not different)
    assert json.dumps(value, sort_keys=True) == json.dumps(json.loads(text), sort_keys=True)


@given(fs.json_values, st.integers(1, 100))
def test_jsonwire_shown_is_a_short_prefix(value: Any, limit: int) -> None:
    assert len(jsonwire.shown(value, limit)) <= limit + 3


# ---- speech options ------------------------------------------------------------------------------

option_values = st.one_of(fs.json_values, st.sampled_from(["en", "EN", " de ", "auto", "translate",
                                                           "transcribe", "a\u200bb", "x" * 700]))


@given(st.sampled_from([("en",), "multilingual"]), option_values, option_values, option_values, option_values)
@example(("en",), "en", "transcribe", "\x00", None)
@example("multilingual", None, "translate", " " * 900, "a" * 601)
def test_check_options_raises_only_peer_errors(languages: Any, language: Any, task: Any, prompt: Any,
                                                hotwords: Any) -> None:
    known = model_languages(True) if languages == "multilingual" else languages
    opts = fs.outcome(check_options, languages=known, language=language, task=task, prompt=prompt,
                      hotwords=hotwords)
    if isinstance(opts, PeerError):
        assert opts.code == "bad_option"
        return
    assert opts.language is None or opts.language in known
    assert opts.task in TASKS
    assert opts.prompt is None or 0 < len(opts.prompt) <= MAX_PROMPT_CHARS
    assert opts.hotwords is None or 0 < len(opts.hotwords) <= MAX_HOTWORDS_CHARS


@given(st.one_of(st.none(), st.lists(fs.json_values, max_size=30)),
       st.one_of(st.none(), st.lists(st.one_of(st.text(max_size=80), fs.json_values), max_size=30)))
def test_hotwords_of_is_bounded(names: Any, terms: Any) -> None:
    out = hotwords_of(names, terms)
    assert out is None or 0 < len(out) <= MAX_HOTWORDS_CHARS


# ---- audio conversion ----------------------------------------------------------------------------


@given(st.integers(MIN_RATE, MAX_RATE), st.integers(1, 8), st.sampled_from(WIDTHS),
       st.lists(st.binary(max_size=3000), max_size=5))
def test_pcm_converter_takes_any_whole_frames(rate: int, channels: int, width: int,
                                              chunks: list[bytes]) -> None:
    conv = PcmConverter(rate, channels, width)
    for chunk in chunks:
        whole = chunk[: len(chunk) // conv.frame_bytes * conv.frame_bytes]
        assert len(conv.push(whole)) % 2 == 0
    assert len(conv.flush()) % 2 == 0


@given(st.integers(1, 2000), st.lists(st.binary(max_size=3000), max_size=6))
def test_framer_keeps_every_byte(frame_bytes: int, chunks: list[bytes]) -> None:
    framer = Framer(frame_bytes)
    frames = [f for c in chunks for f in framer.push(c)]
    tail = framer.flush()
    assert all(len(f) == frame_bytes for f in [*frames, *tail])
    data = b"".join(chunks)
    assert b"".join([*frames, *tail])[: len(data)] == data


# ---- seed 003's packets ----------------------------------------------------------------------------


@st.composite
def hybrid_packets(draw: st.DrawFn) -> bytes:
    meta = draw(st.one_of(
        st.fixed_dictionaries({"sampleRate": st.one_of(fs.rates, st.floats(), fs.json_values)}),
        fs.json_values).map(json.dumps).map(str.encode) | fs.random_bytes)
    declared = draw(st.one_of(st.just(len(meta)), st.integers(-(2**31), 2**31 - 1)))
    return struct.pack("<i", declared) + meta + draw(st.binary(max_size=200))


@given(st.one_of(hybrid_packets(), fs.random_bytes))
@example(struct.pack("<i", 5) + b"[[[[[")
@example(struct.pack("<i", 19) + b'{"sampleRate": 1e999}')
def test_hybrid_unpack_raises_only_peer_errors(packet: bytes) -> None:
    try:
        rate, pcm = hybrid_session.unpack(packet)
    except PeerError:
        return
    assert MIN_RATE <= rate <= MAX_RATE
    assert len(pcm) % 2 == 0


# ---- seed 004's payloads --------------------------------------------------------------------------

sio_audio = st.one_of(st.binary(max_size=100), st.text(max_size=40),
                      st.lists(st.integers(-40000, 40000), max_size=20), fs.json_values)
sio_payloads = st.one_of(
    fs.random_bytes, fs.json_values,
    st.fixed_dictionaries({}, optional={
        "clientId": st.one_of(st.text(max_size=140), fs.json_values), "audio": sio_audio, "data": sio_audio,
        "pcm": sio_audio, "sampleRate": st.one_of(fs.rates, st.floats(), fs.json_values)}))


@given(sio_payloads)
@example({"audio": [True, 1]})
@example({"audio": "AAA=", "sampleRate": float("nan")})
def test_socketio_audio_of_raises_only_peer_errors(data: Any) -> None:
    try:
        cid, pcm, rate = socketio_session.audio_of(data)
    except PeerError:
        return
    assert cid is None or 0 < len(cid) <= socketio_session.MAX_CLIENT_ID
    assert isinstance(pcm, bytes)
    assert MIN_RATE <= rate <= MAX_RATE


@given(sio_payloads)
def test_socketio_client_id_of_raises_only_peer_errors(data: Any) -> None:
    try:
        cid = socketio_session.client_id_of(data)
    except PeerError:
        return
    assert cid is None or isinstance(cid, str)


# ---- Wyoming framing ---------------------------------------------------------------------------------

# what WyomingConnection.run answers with an ``error`` event (each is a framing error of the peer's)
FRAMING_ERRORS = (wyoming_server.BadFrame, wyoming_server.FrameTooLarge, asyncio.IncompleteReadError,
                  ConnectionError, RecursionError, KeyError, TypeError, AttributeError, ValueError)


@st.composite
def wyoming_streams(draw: st.DrawFn) -> bytes:
    header: dict[str, Any] = {"type": draw(st.sampled_from(["audio-chunk", "transcribe", "describe", "x"]))}
    data = draw(st.one_of(st.none(), fs.json_values).map(json.dumps).map(str.encode))
    payload = draw(st.binary(max_size=64))
    if draw(st.booleans()):
        header["data_length"] = draw(st.one_of(st.just(len(data)), st.integers(-5, 10**6), fs.json_values))
    if draw(st.booleans()):
        header["payload_length"] = draw(st.one_of(st.just(len(payload)), st.integers(-5, 10**6),
                                                  fs.json_values))
    header.update(draw(st.dictionaries(st.text(max_size=8), fs.json_values, max_size=2)))
    return json.dumps(header).encode() + b"\n" + data + payload + draw(st.binary(max_size=8))


@given(st.one_of(wyoming_streams(), fs.random_bytes, fs.garbage_text().map(lambda t: t.encode("utf-8",
                                                                                               "replace"))))
@example(b"[" * 5000 + b"\n")
@example(b'{"type": "x", "data_length": 3}\n[[[')
def test_wyoming_framing_raises_only_framing_errors(stream: bytes) -> None:
    async def read_all() -> None:
        reader = asyncio.StreamReader(limit=wyoming_server.MAX_HEADER_BYTES)
        reader.feed_data(stream)
        reader.feed_eof()
        bounded = wyoming_server._BoundedReader(reader, 64 * 1024)
        for _ in range(20):
            try:
                event = await async_read_event(bounded)  # type: ignore[arg-type]
            except FRAMING_ERRORS:
                return
            if event is None:
                return
            assert isinstance(event.type, str)

    asyncio.run(read_all())
