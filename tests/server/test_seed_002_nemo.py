"""Seed 002 (NeMo streaming): a client written only from ../shared/seeds/002_*.txt, with only the URL
changed, against the real stt-server: ``config`` first, ``status`` back, base64 float32 ``audio``
messages, ``commit`` for the transcript, ``reset``, ``stop``; its token in ``?token=``, checked after
the upgrade (close 4401 / 4403). The session server runs without STT_TOKEN, so this is also the seed's
single-user mode: the key is generated at start-up and read from the log, as its users do.

Also the dialect's machine in-process (no socket, no model)."""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

import numpy as np
import pytest
from stt_core import session as s
from stt_server.nemo_session import NemoSession
from websockets.sync.client import ClientConnection, connect

from harness.speech import clip, duration, pick, refs, wer
from harness.stt_client import http_get
from tests.server.test_seed_001_handy import offline

PATH = "/api/v1/audio/stream/transcribe"
CONFIG = {"type": "config", "model": "parakeet", "variant": "standard", "sample_rate": 16000,
          "enable_partial": True}


def api_key(proc: Any) -> str:
    """What a user of the seed does: read the generated key from the server's log."""
    keys = [e["key"] for e in proc.json_events() if e.get("event") == "single_user_key"]
    assert keys, "the server logged no single-user key"
    return str(keys[-1])


def audio(pcm: np.ndarray) -> str:
    """The seed's audio message: float32 samples, base64."""
    f32 = (pcm.astype(np.float32) / 32768.0).astype(np.float32)
    return json.dumps({"type": "audio", "data": base64.b64encode(f32.tobytes()).decode()})


def recv(ws: ClientConnection, timeout: float = 15) -> dict[str, Any]:
    m: dict[str, Any] = json.loads(ws.recv(timeout=timeout))
    return m


def configured(ws: ClientConnection, **extra: object) -> dict[str, Any]:
    ws.send(json.dumps({**CONFIG, **extra}))
    return recv(ws)


@pytest.fixture(scope="module")
def url(server) -> str:
    proc, port = server
    return f"ws://127.0.0.1:{port}{PATH}?token={api_key(proc)}"


@pytest.mark.slow
def test_a_seed_002_client_gets_one_final_per_commit_partials_and_the_full_transcript(url):
    """Recordings in real time, 100 ms messages, a commit after each and 1 s of silence: one final
    per recording, partials while the long ones stream, a full transcript of them all, and a WER
    within 1 point of an offline decode of the same recordings."""
    names = pick(4, 1.5, 9.0)
    got: list[dict[str, Any]] = []
    with connect(url, max_size=None) as ws:
        status = configured(ws)
        assert (status["type"], status["state"]) == ("status", "ready")
        assert set(status["ignored"]) == {"model", "variant"}

        def read() -> None:
            for raw in ws:
                got.append({**json.loads(raw), "_at": time.monotonic()})

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        for n in names:
            pcm = np.concatenate([clip(n), np.zeros(16000, np.int16)])
            t0 = time.monotonic()
            for k, i in enumerate(range(0, len(pcm), 1600)):
                ws.send(audio(pcm[i:i + 1600]))
                time.sleep(max(0.0, t0 + (k + 1) * 0.1 - time.monotonic()))
            ws.send(json.dumps({"type": "commit"}))
        deadline = time.monotonic() + 30
        while sum(m["type"] == "full_transcript" for m in got) < len(names) and time.monotonic() < deadline:
            time.sleep(0.1)
        ws.send(json.dumps({"type": "stop"}))
        reader.join(10)
    finals = [m for m in got if m["type"] == "final"]
    fulls = [m for m in got if m["type"] == "full_transcript"]
    assert len(finals) == len(names), got
    assert all(m["is_final"] is True and isinstance(m["timestamp"], float) and m["model"] for m in finals)
    assert len(fulls) == len(names)
    # each commit's full transcript is everything said so far
    assert fulls[-1]["text"] == " ".join(m["text"] for m in finals)
    texts = [m["text"] for m in finals]
    assert wer(list(zip([refs()[n] for n in names], texts, strict=True))) <= \
        wer(list(zip([refs()[n] for n in names], offline(names), strict=True))) + 0.01, texts
    partials = [m for m in got if m["type"] == "partial"]
    assert all(m["is_final"] is False for m in partials)
    assert len(partials) >= sum(1 for n in names if duration(n) >= 3), partials


@pytest.mark.slow
def test_vad_true_ends_utterances_at_pauses_without_a_commit(url):
    """Our extension: with ``"vad": true`` the server's gate ends each utterance (one final each)."""
    names = pick(2, 1.5, 5.0)
    gap = np.zeros(32000, np.int16)
    pcm = np.concatenate([np.zeros(8000, np.int16), *(np.concatenate([clip(n), gap]) for n in names)])
    with connect(url, max_size=None) as ws:
        assert configured(ws, vad=True)["vad"] is True
        for i in range(0, len(pcm), 3200):  # faster than real time: the gate counts samples, not seconds
            ws.send(audio(pcm[i:i + 3200]))
        finals = []
        while len(finals) < len(names):
            m = recv(ws)
            if m["type"] == "final":
                finals.append(m["text"])
    assert wer(list(zip([refs()[n] for n in names], finals, strict=True))) <= 0.2, finals


def test_no_token_is_close_4401_and_a_wrong_one_4403(server):
    _, port = server
    for query, code in (("", 4401), ("?token=not-the-key", 4403)):
        with connect(f"ws://127.0.0.1:{port}{PATH}{query}") as ws:
            m = recv(ws)
            assert m["type"] == "error"
            assert m["message"]
            with pytest.raises(Exception, match=str(code)):
                ws.recv(timeout=10)


def test_bad_audio_is_answered_and_the_stream_goes_on(url, server):
    """Base64 that does not decode, NaN samples, a part sample: an error each, then a good stream
    is still transcribed. ``/metrics`` counts them under the dialect."""
    with connect(url, max_size=None) as ws:
        configured(ws)
        nan = np.array([0.1, np.nan, 0.2], dtype=np.float32).tobytes()
        for data, code in (("@@not base64@@", "bad_base64"), (base64.b64encode(nan).decode(), "bad_audio"),
                           (base64.b64encode(b"\0\0\0").decode(), "odd_length"), (None, "bad_audio")):
            ws.send(json.dumps({"type": "audio", "data": data}))
            m = recv(ws)
            assert (m["type"], m["code"]) == ("error", code)
            assert m["message"]
        ws.send(b"\0\0")
        assert recv(ws)["code"] == "binary_not_expected"
        ws.send('{"type": "nonsense"}')
        assert recv(ws)["code"] == "unknown_type"
        pcm = clip(pick(1, 1.5, 4.0)[0])
        for i in range(0, len(pcm), 3200):
            ws.send(audio(pcm[i:i + 3200]))
        ws.send('{"type": "commit"}')
        kinds = []
        while "full_transcript" not in kinds:
            kinds.append(recv(ws)["type"])
        assert "final" in kinds
    _, port = server
    metrics = http_get(port, "/metrics")[2]
    assert 'stt_sessions_total{dialect="nemo"}' in metrics
    assert 'stt_errors_total{dialect="nemo",code="bad_base64"}' in metrics


def test_audio_before_config_is_refused_and_reset_clears_the_history(url):
    with connect(url) as ws:
        ws.send(audio(np.zeros(160, np.int16)))
        assert recv(ws)["code"] == "config_required"
        with pytest.raises(Exception, match="1008"):
            ws.recv(timeout=10)
    with connect(url) as ws:
        configured(ws)
        ws.send('{"type": "reset"}')
        assert recv(ws)["state"] == "reset"
        ws.send('{"type": "commit"}')
        m = recv(ws)
        assert (m["type"], m["text"]) == ("full_transcript", "")
        ws.send('{"type": "stop"}')
        with pytest.raises(Exception, match="1000"):
            ws.recv(timeout=10)


# ---- the machine in-process ---------------------------------------------------------------


def machine(**kw: Any) -> NemoSession:
    return NemoSession(languages=("en",), model="tiny.en", clock=lambda: 1234.5, **kw)


def kinds(actions: list[s.Action]) -> list[str]:
    return [f"{a.message.type}:{getattr(a.message, 'code', None) or getattr(a.message, 'state', '')}"
            if isinstance(a, s.Send) else type(a).__name__ for a in actions]


def test_the_config_is_reported_with_what_whisper_ignores():
    m = machine()
    acts = m.receive_text(json.dumps({**CONFIG, "language": "en", "chunk_duration": 2.0}), 0.0)
    status = acts[0].message  # type: ignore[union-attr]
    assert status.model_dump(exclude_none=True) == {
        "type": "status", "state": "ready", "model": "tiny.en", "sample_rate": 16000, "language": "en",
        "vad": False, "ignored": ("model", "variant", "chunk_duration")}
    assert kinds(m.receive_text(json.dumps(CONFIG), 0.1)) == ["status:configured"]


@pytest.mark.parametrize(("config", "code"), [
    ({"sample_rate": 1000}, "invalid_message"),
    ({"language": "xx"}, "bad_option"),
    ({"enable_partial": "yes"}, "invalid_message"),
])
def test_a_bad_first_config_is_fatal(config: dict[str, object], code: str):
    assert kinds(machine().receive_text(json.dumps({**CONFIG, **config}), 0.0)) == [f"error:{code}", "Close"]


def test_a_44k_float_stream_becomes_one_16k_segment_and_commit_ends_it():
    m = machine()
    m.receive_text(json.dumps({**CONFIG, "sample_rate": 44100}), 0.0)
    tone = (0.3 * np.sin(np.arange(4410) / 5)).astype(np.float32)  # 100 ms
    message = json.dumps({"type": "audio", "data": base64.b64encode(tone.tobytes()).decode()})
    acts = [a for k in range(10) for a in m.receive_text(message, 0.1 * k)]
    assert kinds(acts) == ["OpenSegment"] + ["Audio"] * 10
    opened = acts[0]
    assert isinstance(opened, s.OpenSegment)
    assert opened.sample_rate == 16000
    # one second at 16 kHz, less what the streaming resampler still holds
    samples = sum(len(a.pcm) // 2 for a in acts if isinstance(a, s.Audio))
    assert 15_000 <= samples <= 16_000, samples
    assert kinds(m.receive_text('{"type": "commit"}', 0.2)) == ["EndSegment"]
    # the full transcript follows the final
    from stt_core.engine import FinalResult
    done = m.final(FinalResult("hello there", 0.9, 100, "en", 10), "end", 1)
    assert kinds(done) == ["final:", "full_transcript:"]


def test_a_runaway_segment_is_finalised_not_refused():
    m = machine(limits=s.Limits(max_segment_s=1.0))
    m.receive_text(json.dumps(CONFIG), 0.0)
    second = base64.b64encode(np.zeros(16000, np.float32).tobytes()).decode()
    acts = m.receive_text(json.dumps({"type": "audio", "data": second}), 0.1)
    assert kinds(acts) == ["OpenSegment", "Audio", "EndSegment"]
    assert kinds(m.receive_text(json.dumps({"type": "audio", "data": second}), 0.2))[0] == "OpenSegment"


def test_an_unauthorised_connection_is_told_and_closed_at_once():
    assert kinds(machine(auth="missing").opened()) == ["error:unauthorized", "Close"]
    acts = machine(auth="wrong").opened()
    assert isinstance(acts[-1], s.Close)
    assert acts[-1].code == 4403
    assert machine().opened() == []
