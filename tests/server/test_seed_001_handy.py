"""Seed 001 (the "Handy" realtime server): a client written only from ../shared/seeds/001_*.txt, with
only the URL changed, against the real stt-server. It sends the optional config first, then int16
PCM at 16 kHz, and ``{"type": "stop"}``; it never says where an utterance ends, so the server must.

Also the dialect's machine in-process (no socket, no model)."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from stt_core import session as s
from stt_server.handy_session import HandySession
from websockets.sync.client import connect

from harness.speech import clip, duration, offline, pick, refs, wer

GAP_S = 2.0


def handy_client(port: int, names: list[str]) -> tuple[list[str], list[tuple[float, str]]]:
    """The seed's client: config, then the recordings in real time, 20 ms messages, GAP_S of
    silence after each, then stop. Returns the finals and the (time, text) of each partial."""
    finals: list[str] = []
    partials: list[tuple[float, str]] = []
    gap = np.zeros(int(GAP_S * 16000), np.int16)
    pcm = np.concatenate([np.zeros(8000, np.int16), *(np.concatenate([clip(n), gap]) for n in names)])
    with connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
        ws.send(json.dumps({"language": "en", "task": "transcribe", "beam_size": 1}))

        def read() -> None:
            for raw in ws:
                m = json.loads(raw)
                if m["type"] == "final":
                    finals.append(m["text"])
                elif m["type"] == "partial":
                    partials.append((time.monotonic(), m["text"]))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        t0 = time.monotonic()
        for k, i in enumerate(range(0, len(pcm), 320)):
            ws.send(pcm[i:i + 320].tobytes())
            time.sleep(max(0.0, t0 + (k + 1) * 0.02 - time.monotonic()))
        ws.send(json.dumps({"type": "stop"}))
        time.sleep(2)
    return finals, partials


@pytest.mark.slow
def test_a_seed_001_client_gets_one_final_per_recording_and_partials_while_speaking(server):
    """Recordings with 2 s pauses between them: exactly one final each, in order, partials while the
    long ones are spoken, and a WER within 1 point of an offline decode of the same recordings."""
    _, port = server
    names = pick(4, 1.5, 9.0)
    finals, partials = handy_client(port, names)
    assert len(finals) == len(names), finals
    assert wer(list(zip([refs()[n] for n in names], finals, strict=True))) <= \
        wer(list(zip([refs()[n] for n in names], offline(names), strict=True))) + 0.01, finals
    assert len(partials) >= sum(1 for n in names if duration(n) >= 3), partials


def test_a_bad_config_is_an_error_and_a_close(server):
    _, port = server
    with connect(f"ws://127.0.0.1:{port}/ws") as ws:
        ws.send(json.dumps({"language": "de"}))
        m = json.loads(ws.recv(timeout=10))
        assert (m["type"], m["code"]) == ("error", "bad_option")
        assert "it does: en" in m["message"]
        with pytest.raises(Exception, match="1008"):
            ws.recv(timeout=10)


# ---- the machine in-process ---------------------------------------------------------------


def machine() -> HandySession:
    return HandySession(languages=("en",))


def kinds(actions: list[s.Action]) -> list[str]:
    """Engine actions by class name, messages as type:code."""
    return [f"{a.message.type}:{getattr(a.message, 'code', '')}" if isinstance(a, s.Send)
            else type(a).__name__ for a in actions]


@pytest.mark.parametrize(("text", "code"), [
    ("hello", "not_json"),
    ("[1]", "not_json"),
    ('{"type": "start"}', "unknown_type"),
    ('{"beam_size": "wide"}', "invalid_message"),
    ('{"task": "translate"}', "bad_option"),
    ("x" * 5000, "message_too_large"),
])
def test_bad_text_gets_its_error(text: str, code: str):
    assert kinds(machine().receive_text(text, 0.0))[0] == f"error:{code}"


def test_the_config_is_optional_and_comes_first():
    m = machine()
    assert m.receive_text(json.dumps({"language": "en", "beam_size": 1, "extra": 1}), 0.0) == []
    m2 = machine()
    m2.receive_bytes(b"\0\0" * 160, 0.0)
    assert kinds(m2.receive_text('{"language": "en"}', 0.1)) == ["error:config_after_audio"]


def test_speech_opens_a_segment_silence_ends_it_and_stop_ends_the_open_one():
    """A real recording, 20 ms messages: the gate opens one segment, the hangover ends it; speech
    again and ``stop``: the open segment ends at once."""
    m = machine()
    speech = clip("LJ001-0002").tobytes()
    acts: list[s.Action] = []
    for i in range(0, len(speech), 640):
        acts += m.receive_bytes(speech[i:i + 640], i / 32000)
    acts += m.receive_bytes(b"\0\0" * 16000, 5.0)
    names = kinds(acts)
    assert names.count("OpenSegment") == 1
    assert names.count("EndSegment") == 1
    assert names.index("OpenSegment") < names.index("EndSegment")
    for i in range(0, 32000, 640):
        m.receive_bytes(speech[i:i + 640], 6 + i / 32000)
    assert kinds(m.receive_text('{"type": "stop"}', 8.0))[-1] == "EndSegment"


@pytest.mark.parametrize(("data", "code"), [
    (b"\0" * 3, "odd_length"),
    (b"\0" * (64 * 1024 + 2), "frame_too_large"),
])
def test_bad_audio_gets_its_error(data: bytes, code: str):
    assert kinds(machine().receive_bytes(data, 0.0))[0] == f"error:{code}"


def test_a_flood_of_messages_is_refused_text_included():
    m = HandySession(languages=("en",), limits=s.Limits(max_frames_per_s=20))
    acts = [a for _ in range(25) for a in m.receive_text('{"type": "stop"}', 0.5)]
    assert kinds(acts)[-2:] == ["error:flood", "Close"]
