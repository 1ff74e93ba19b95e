"""Seed 004 (a Socket.IO server): clients written only from ../shared/seeds/004_*.txt, with only the
URL changed, using python-socketio's own AsyncClient against the real stt-server: one audio client
that streams PCM16 with a ``clientId``, and one monitoring client that only subscribes to it.

Also the dialect's machine in-process (no socket, no model)."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import numpy as np
import pytest
import socketio
from stt_core import session as s
from stt_core.engine import FinalResult
from stt_core.errors import PeerError
from stt_server.socketio_session import SocketIoSession, Transcription, audio_of

from harness.speech import clip, duration, pick, refs, wer
from harness.stt_client import http_get
from tests.server.test_seed_001_handy import offline

GAP_S = 2.0


async def client(port: int) -> socketio.AsyncClient:
    c = socketio.AsyncClient()
    await c.connect(f"http://127.0.0.1:{port}", transports=["websocket"], wait_timeout=10)
    return c


async def wait_for(pred: Any, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.mark.slow
def test_the_audio_client_and_a_monitor_get_one_transcription_per_recording(socketio_port):
    """Recordings in real time, 20 ms chunks, 2 s pauses: the talker and the monitor each get one
    transcription per recording, in the seed's shape, partials while the long ones are spoken, and a
    WER within 1 point of an offline decode."""
    names = pick(4, 1.5, 9.0)
    gap = np.zeros(int(GAP_S * 16000), np.int16)
    pcm = np.concatenate([np.zeros(8000, np.int16), *(np.concatenate([clip(n), gap]) for n in names)])

    async def run() -> tuple[list[Any], list[Any], list[Any]]:
        talker, monitor = await client(socketio_port), await client(socketio_port)
        heard: list[Any] = []
        watched: list[Any] = []
        partials: list[Any] = []
        talker.on("transcription", heard.append)
        talker.on("partial_transcription", partials.append)
        monitor.on("transcription", watched.append)
        ack = await monitor.call("subscribe_transcripts", {"clientId": "kitchen"}, timeout=10)
        assert ack == {"ok": True, "clientId": "kitchen"}
        t0 = time.monotonic()
        for k, i in enumerate(range(0, len(pcm), 320)):
            await talker.emit("audio_data", {"clientId": "kitchen", "audio": pcm[i:i + 320].tobytes()})
            await asyncio.sleep(max(0.0, t0 + (k + 1) * 0.02 - time.monotonic()))
        await wait_for(lambda: len(heard) >= len(names) and len(watched) >= len(names))
        await asyncio.sleep(1)  # anything doubled would have arrived by now
        await talker.disconnect()
        await monitor.disconnect()
        return heard, watched, partials

    heard, watched, partials = asyncio.run(run())
    assert len(heard) == len(names), heard
    assert watched == heard
    for t in heard:
        assert set(t) == {"text", "duration", "client_id", "ts"}
        assert t["client_id"] == "kitchen"
        assert isinstance(t["duration"], float)
        assert t["duration"] > 0.5
        assert abs(t["ts"] - time.time()) < 600
    texts = [t["text"] for t in heard]
    assert wer(list(zip([refs()[n] for n in names], texts, strict=True))) <= \
        wer(list(zip([refs()[n] for n in names], offline(names), strict=True))) + 0.01, texts
    assert len(partials) >= sum(1 for n in names if duration(n) >= 3)


@pytest.mark.slow
def test_a_speaker_who_disconnects_mid_sentence_still_reaches_the_monitor(socketio_port):
    """Nothing said is lost: the utterance open at the disconnect is transcribed for the room."""
    async def run() -> list[Any]:
        talker, monitor = await client(socketio_port), await client(socketio_port)
        watched: list[Any] = []
        monitor.on("transcription", watched.append)
        await monitor.call("subscribe_transcripts", {"clientId": "hall"}, timeout=10)
        speech = np.concatenate([np.zeros(8000, np.int16), clip(pick(1, 3.0, 6.0)[0])])
        for i in range(0, len(speech), 1600):
            await talker.emit("audio_data", {"clientId": "hall", "audio": speech[i:i + 1600].tobytes()})
        await asyncio.sleep(0.5)
        await talker.disconnect()
        await wait_for(lambda: watched)
        await monitor.disconnect()
        return watched

    watched = asyncio.run(run())
    assert len(watched) == 1
    assert watched[0]["text"]


def test_cleanup_is_confirmed_bad_payloads_are_answered_and_the_connection_goes_on(socketio_port, server):
    async def run() -> tuple[list[Any], list[Any], Any, Any]:
        c = await client(socketio_port)
        errors: list[Any] = []
        confirmed: list[Any] = []
        c.on("error", errors.append)
        c.on("cleanup_confirmed", confirmed.append)
        bad_payloads = ("text, not audio", {"clientId": 7, "audio": b"\0\0"}, {"audio": b"\0\0\0"},
                        {"audio": [1, 2, 99999]}, {"audio": "@@not base64@@"},
                        {"audio": b"\0\0", "sampleRate": 3})
        for bad in bad_payloads:
            await c.emit("audio_data", bad)
        await c.emit("audio_data", {"clientId": "den", "audio": b"\0\0" * 320})  # good: no error
        sub = await c.call("subscribe_transcripts", {}, timeout=10)
        ack = await c.call("cleanup_client", {"clientId": "den"}, timeout=10)
        await c.emit("client_disconnected", {"clientId": "den"})
        await wait_for(lambda: len(errors) >= 7 and confirmed)
        await asyncio.sleep(0.3)
        await c.disconnect()
        return errors, confirmed, sub, ack

    errors, confirmed, sub, ack = asyncio.run(run())
    assert [e["code"] for e in errors] == ["bad_audio", "bad_client_id", "odd_length", "bad_audio",
                                           "bad_audio", "bad_sample_rate", "bad_client_id"]
    assert all(e["message"] for e in errors)
    assert sub["ok"] is False
    assert ack == {"ok": True, "clientId": "den"}
    assert confirmed == [{"clientId": "den"}]
    _, port = server
    metrics = http_get(port, "/metrics")[2]
    assert 'stt_sessions_total{dialect="socketio"}' in metrics
    assert 'stt_errors_total{dialect="socketio",code="bad_audio"}' in metrics


def test_another_connections_id_is_refused_and_one_connection_has_a_bounded_number_of_clients(socketio_port):
    """A sid names that connection's private room (python-socketio will not let anyone join it), and
    each clientId costs a voice gate: both are answered with an ``error``, and the connection goes on."""
    async def run() -> tuple[list[Any], Any, list[Any]]:
        a, b = await client(socketio_port), await client(socketio_port)
        errors: list[Any] = []
        b.on("error", errors.append)
        sub = await b.call("subscribe_transcripts", {"clientId": a.get_sid()}, timeout=10)
        await b.emit("audio_data", {"clientId": a.get_sid(), "audio": b"\0\0" * 160})
        for k in range(17):
            await b.emit("audio_data", {"clientId": f"room-{k}", "audio": b"\0\0" * 160})
        ok = await b.call("subscribe_transcripts", {"clientId": "room-1"}, timeout=10)
        await wait_for(lambda: len(errors) >= 3)
        await asyncio.sleep(0.3)
        await a.disconnect()
        await b.disconnect()
        return errors, sub, [ok]

    errors, sub, ok = asyncio.run(run())
    assert sub["ok"] is False
    assert "another connection" in sub["message"]
    assert [e["code"] for e in errors] == ["bad_client_id", "bad_client_id", "too_many_clients"]
    assert ok == [{"ok": True, "clientId": "room-1"}]


# ---- the machine in-process ---------------------------------------------------------------


def test_payloads_are_decoded_in_every_shape_the_seed_allows():
    pcm = np.array([1, -2, 3], dtype="<i2").tobytes()
    assert audio_of(pcm) == (None, pcm, 16000)
    assert audio_of({"clientId": "a", "audio": pcm}) == ("a", pcm, 16000)
    assert audio_of({"data": [1, -2, 3], "sampleRate": 48000}) == (None, pcm, 48000)
    with pytest.raises(PeerError):
        audio_of({"clientId": "x" * 500, "audio": pcm})


def test_a_48k_stream_opens_a_16k_segment_and_a_disconnect_finishes_it():
    m = SocketIoSession("c1")
    tone = (8000 * np.sin(np.arange(4800) / 3)).astype("<i2").tobytes()  # 100 ms at 48 kHz
    acts = [a for k in range(30) for a in m.audio(tone, 48000, 0.1 * k)]
    opened = [a for a in acts if isinstance(a, s.OpenSegment)]
    assert len(opened) == 1
    assert opened[0].sample_rate == 16000
    assert [type(a) for a in m.finish()] == [s.EndSegment]
    sent = m.final(FinalResult("hello", 0.9, 1500, "en", 10), "end", 1)
    assert isinstance(sent[0], s.Send)
    message = sent[0].message
    assert isinstance(message, Transcription)
    assert (message.text, message.duration, message.client_id) == ("hello", 1.5, "c1")


def test_a_flood_is_answered_not_fatal():
    m = SocketIoSession("c1", limits=s.Limits(max_frames_per_s=10))
    acts = [a for _ in range(12) for a in m.audio(b"\0\0" * 160, 16000, 0.5)]
    codes = [getattr(a.message, "code", None) for a in acts if isinstance(a, s.Send)]
    assert codes == ["flood", "flood"]


@pytest.mark.parametrize(("payload", "code"), [
    (None, "bad_audio"),
    (12, "bad_audio"),
    ({"clientId": "a"}, "bad_audio"),
    ({"audio": 3.5}, "bad_audio"),
    ({"audio": [1, True]}, "bad_audio"),
    ({"audio": [1, 2.5]}, "bad_audio"),
    ({"audio": "not base64!"}, "bad_audio"),
    ({"clientId": "", "audio": b"\0\0"}, "bad_client_id"),
    ({"clientId": ["a"], "audio": b"\0\0"}, "bad_client_id"),
    ({"audio": b"\0\0", "sampleRate": 96000}, "bad_sample_rate"),
    ({"audio": b"\0\0", "sampleRate": 16000.5}, "bad_sample_rate"),
    ({"audio": b"\0\0", "sampleRate": True}, "bad_sample_rate"),
])
def test_every_bad_payload_is_a_peer_error_with_its_code(payload: Any, code: str):
    with pytest.raises(PeerError) as err:
        audio_of(payload)
    assert err.value.code == code
    assert err.value.message


def test_base64_text_and_a_whole_float_rate_are_accepted():
    pcm = np.array([5, -5], dtype="<i2").tobytes()
    assert audio_of({"audio": base64.b64encode(pcm).decode(), "sampleRate": 48000.0}) == (None, pcm, 48000)


@pytest.mark.parametrize(("data", "code"), [(b"\0" * 3, "odd_length"),
                                            (b"\0" * (64 * 1024 + 2), "frame_too_large")])
def test_bad_audio_is_answered_and_the_transcriber_goes_on(data: bytes, code: str):
    m = SocketIoSession("c1")
    acts = m.audio(data, 16000, 0.0)
    assert len(acts) == 1
    assert isinstance(acts[0], s.Send)
    assert getattr(acts[0].message, "code", None) == code
    assert not m.closed
    assert m.audio(b"\0\0" * 160, 16000, 0.1) == []  # silence: no segment, no error


def test_an_empty_final_is_not_emitted_and_cleanup_drops_the_open_utterance():
    m = SocketIoSession("c1")
    assert m.final(FinalResult("", 0.0, 400, "en", 5), "end", 1) == []
    speech = clip("LJ001-0002")[:32000].tobytes()  # 1 s of a real recording: the gate opens on it
    acts = [a for k in range(0, len(speech), 640) for a in m.audio(speech[k:k + 640], 16000, k / 32000)]
    assert any(isinstance(a, s.OpenSegment) for a in acts)
    assert [type(a) for a in m.cancel()] == [s.CancelSegment]
    assert m.audio(speech[:640], 16000, 1.0) == []  # a deleted transcriber hears nothing more
