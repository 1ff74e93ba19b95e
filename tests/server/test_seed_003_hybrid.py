"""Seed 003 (the hybrid gateway, ``/ws/transcribe``): a client written only from
../shared/seeds/003_*.txt against the real stt-server, the seed's own packing code in headless
Chromium, every bad input its wire format allows over a real socket, and the machine in-process.

A packet is ``[int32 LE metadata length][JSON {"sampleRate": <Hz>}][int16 LE PCM]``; the server
says ``realtime`` while the user speaks and one ``fullSentence`` when they pause."""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stt_core import session as s
from stt_core.engine import FinalResult, PartialResult
from stt_server.hybrid_session import FullSentence, HybridSession, Realtime
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from harness import speech
from harness.procs import start_server
from harness.speech import clip, duration, offline, pick, refs, wer
from harness.stt_client import http_get
from tests.support.browser import Chromium, chromium_path

GAP_S = 2.0
PAGE = Path(__file__).resolve().parents[1] / "support" / "seed003_page.html"
SEED = next((Path(__file__).resolve().parents[3] / "shared" / "seeds").glob("003_*.txt"))


def pack(pcm: bytes, rate: int = 16000) -> bytes:
    """A packet exactly as the seed's ``sendAudioChunk`` builds it (``JSON.stringify`` has no spaces)."""
    meta = json.dumps({"sampleRate": rate}, separators=(",", ":")).encode()
    return struct.pack("<i", len(meta)) + meta + pcm


def hybrid_client(port: int, names: list[str]) -> tuple[list[str], list[str]]:
    """The seed's client: the recordings in real time, 20 ms packets, GAP_S of silence after each.
    Returns the fullSentences and the realtime texts."""
    sentences: list[str] = []
    realtime: list[str] = []
    gap = np.zeros(int(GAP_S * 16000), np.int16)
    pcm = np.concatenate([np.zeros(8000, np.int16), *(np.concatenate([clip(n), gap]) for n in names),
                          np.zeros(16000, np.int16)])
    with connect(f"ws://127.0.0.1:{port}/ws/transcribe", max_size=None) as ws:

        def read() -> None:
            for raw in ws:
                m = json.loads(raw)
                if m["type"] == "fullSentence":
                    sentences.append(m["text"])
                elif m["type"] == "realtime":
                    realtime.append(m["text"])

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        t0 = time.monotonic()
        for k, i in enumerate(range(0, len(pcm), 320)):
            ws.send(pack(pcm[i:i + 320].tobytes()))
            time.sleep(max(0.0, t0 + (k + 1) * 0.02 - time.monotonic()))
        time.sleep(3)
    return sentences, realtime


@pytest.mark.slow
def test_a_seed_003_client_gets_one_full_sentence_per_recording_and_realtime_while_speaking(server):
    """Recordings with 2 s pauses between them: exactly one fullSentence each, in order, realtime
    messages while the long ones are spoken, and a WER within 1 point of an offline decode."""
    _, port = server
    names = pick(4, 1.5, 9.0)
    sentences, realtime = hybrid_client(port, names)
    assert len(sentences) == len(names), sentences
    assert wer(list(zip([refs()[n] for n in names], sentences, strict=True))) <= \
        wer(list(zip([refs()[n] for n in names], offline(names), strict=True))) + 0.01, sentences
    assert len(realtime) >= sum(1 for n in names if duration(n) >= 3), realtime


# ---- the seed's own JavaScript in headless Chromium ------------------------------------------


def normalised(code: str) -> str:
    return " ".join(code.split())


def seed_function() -> str:
    """``sendAudioChunk`` as the seed document has it: from ``function`` to the code block's end."""
    block = SEED.read_text().split("```")[1]
    start = block.index("function sendAudioChunk(")
    return block[start:block.rindex("}") + 1]


def test_the_page_holds_the_seeds_send_audio_chunk_verbatim():
    function = seed_function()
    assert function.startswith("function sendAudioChunk(socket, audioContext, rawInputData)")
    assert "socket.send(packet);" in function
    assert normalised(function) in normalised(PAGE.read_text())


@pytest.fixture
def page_url() -> Iterator[str]:
    """The test page over http://127.0.0.1 (a secure context, so getUserMedia is allowed)."""
    body = PAGE.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """No access log on the test's output."""

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/seed003.html"
    httpd.shutdown()
    httpd.server_close()


def full_sentences(n: int) -> str:
    return f"window.messages.filter((m) => m.type === 'fullSentence').length >= {n}"


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_the_seeds_packing_code_in_chromium_is_transcribed(page_url: str, tmp_path: Path):
    """The fake microphone plays recordings with 2 s pauses into an AudioContext at the browser's
    own rate (the server resamples it), through the seed's ``sendAudioChunk``: one fullSentence per
    recording, realtime messages on the way, and the words right."""
    if chromium_path() is None:
        pytest.fail("chromium is not installed: run `make setup` (it installs Debian's chromium)")
    # the page is a front end on another origin, as the seed's is ("need to change allowed cors
    # origin if new frontend"): its origin is allowed the way an operator would allow it
    origin = page_url.rsplit("/", 1)[0]
    proc, port = start_server({"ALLOWED_ORIGINS": origin})
    names = pick(2, 3.0, 6.0)
    wav, _ = speech.concat(names, tmp_path / "mic.wav", gap_s=GAP_S, lead_s=1.0)
    browser = Chromium(f"{page_url}?port={port}", wav)
    messages: list[dict[str, Any]] = []
    rate: Any = None
    try:
        page = browser.page
        page.wait_for("document.readyState === 'complete' && typeof window.start === 'function'", 10,
                      "the page")
        rate = page.evaluate("window.start()", user_gesture=True)
        # the WAV loops: stop once its first pass has been answered
        page.wait_for(full_sentences(len(names)), 40, "a fullSentence for each recording")
        messages = page.evaluate("window.messages")
        packets = page.evaluate("window.packets")
        page.evaluate("window.stop()")
    finally:
        try:
            print("rate:", rate, "messages:", messages, "\nconsole:", *browser.page.console, sep="\n")
        finally:
            browser.stop()
            proc.stop()
    assert isinstance(rate, int | float), rate
    assert rate != 16000, f"the AudioContext runs at {rate} Hz: the server would not resample"
    assert packets > 0
    assert [m for m in messages if m["type"] == "error"] == [], messages
    sentences = [m["text"] for m in messages if m["type"] == "fullSentence"][:len(names)]
    first = next(i for i, m in enumerate(messages) if m["type"] == "fullSentence")
    assert any(m["type"] == "realtime" for m in messages[:first]), messages
    pairs = list(zip([refs()[n] for n in names], sentences, strict=True))
    assert wer(pairs) <= 0.15, pairs


# ---- bad input over a real socket ------------------------------------------------------------

SILENCE = pack(b"\0\0" * 320)


def error_code(ws: ClientConnection) -> str:
    m = json.loads(ws.recv(timeout=10))
    assert m["type"] == "error", m
    assert isinstance(m.get("message"), str), m
    assert m["message"], m
    return str(m["code"])


BAD = {
    "length_beyond_packet": (struct.pack("<i", 200) + b'{"sampleRate":16000}', "bad_packet"),
    "zero_length": (struct.pack("<i", 0) + b"\0\0" * 10, "bad_packet"),
    "negative_length": (struct.pack("<i", -5) + b'{"sampleRate":16000}' + b"\0\0", "bad_packet"),
    "huge_length": (struct.pack("<i", 1 << 30) + b"\0\0", "bad_packet"),
    "not_json": (struct.pack("<i", 7) + b"rate=16" + b"\0\0", "bad_metadata"),
    "no_sample_rate": (struct.pack("<i", 15) + b'{"rate":16000} ' + b"\0\0", "bad_sample_rate"),
    "not_an_object": (struct.pack("<i", 5) + b"16000" + b"\0\0", "bad_sample_rate"),
    "rate_too_high": (pack(b"\0\0", 96000), "bad_sample_rate"),
    "rate_too_low": (pack(b"\0\0", 4000), "bad_sample_rate"),
    "rate_not_whole": (struct.pack("<i", 23) + b'{"sampleRate":16000.5}' + b" \0\0", "bad_sample_rate"),
    "rate_a_string": (struct.pack("<i", 24) + b'{"sampleRate":"16000"} ' + b" \0\0", "bad_sample_rate"),
    "odd_pcm": (pack(b"\0\0\0"), "odd_length"),
    "short_packet": (b"\1\0\0", "bad_packet"),
    "empty_packet": (b"", "bad_packet"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_packet_gets_its_error_and_the_connection_goes_on(server, name: str):
    """The error, then a good packet of silence answered by nothing (the next message is the error
    of the same bad packet sent again), and the connection still open."""
    _, port = server
    data, code = BAD[name]
    with connect(f"ws://127.0.0.1:{port}/ws/transcribe") as ws:
        ws.send(data)
        assert error_code(ws) == code
        ws.send(SILENCE)
        ws.send(data)
        assert error_code(ws) == code
        ws.send(SILENCE)
        ws.ping().wait(10)


def test_after_every_bad_input_a_recording_still_gets_its_full_sentence(server):
    """Each bad packet and a text frame on one connection, each answered with its error; then a
    recording (100 ms packets, 5 times real time: the gate counts samples, not seconds) and a pause
    still get one fullSentence with the recording's words."""
    _, port = server
    (name,) = pick(1, 1.5, 4.0)
    pcm = np.concatenate([np.zeros(8000, np.int16), clip(name), np.zeros(32000, np.int16)])
    with connect(f"ws://127.0.0.1:{port}/ws/transcribe", max_size=None) as ws:
        for bad in sorted(BAD):
            data, code = BAD[bad]
            ws.send(data)
            assert error_code(ws) == code, bad
        ws.send("not a packet")
        assert error_code(ws) == "binary_only"
        t0 = time.monotonic()
        for k, i in enumerate(range(0, len(pcm), 1600)):
            ws.send(pack(pcm[i:i + 1600].tobytes()))
            time.sleep(max(0.0, t0 + (k + 1) * 0.02 - time.monotonic()))
        got: list[dict[str, Any]] = []
        while not any(m["type"] == "fullSentence" for m in got):
            got.append(json.loads(ws.recv(timeout=30)))
    assert [m for m in got if m["type"] == "error"] == [], got
    sentence = next(m["text"] for m in got if m["type"] == "fullSentence")
    assert wer([(refs()[name], sentence)]) <= 0.25, sentence


def test_the_metadata_may_say_a_float_rate_as_javascript_does():
    """``48000.0`` is a whole number of Hz."""
    m = HybridSession(languages=("en",))
    meta = b'{"sampleRate":48000.0}'
    assert m.receive_bytes(struct.pack("<i", len(meta)) + meta + b"\0\0" * 960, 0.0) == []
    assert m.sample_rate == 48000


def test_a_text_frame_gets_an_error_and_the_connection_goes_on(server):
    _, port = server
    with connect(f"ws://127.0.0.1:{port}/ws/transcribe") as ws:
        ws.send(json.dumps({"sampleRate": 16000}))
        assert error_code(ws) == "binary_only"
        ws.send(SILENCE)
        ws.send("hello")
        assert error_code(ws) == "binary_only"
        ws.ping().wait(10)


def closed_with(ws: ClientConnection) -> tuple[int | None, list[str]]:
    """Read to the close: its code (None if none came within 10 s) and the error codes before it."""
    codes: list[str] = []
    try:
        while True:
            codes.append(str(json.loads(ws.recv(timeout=10)).get("code")))
    except ConnectionClosed as exc:
        return (exc.rcvd.code if exc.rcvd is not None else None), codes
    except TimeoutError:
        return None, codes


def test_an_oversized_frame_closes_1009(server):
    _, port = server
    with connect(f"ws://127.0.0.1:{port}/ws/transcribe", max_size=None) as ws:
        ws.send(pack(b"\0\0" * 40_000))
        code, _ = closed_with(ws)
        assert code == 1009


def test_a_flood_of_tiny_packets_closes_1008(server):
    """MAX_FRAMES_PER_S is 400: 500 good packets at once are a flood."""
    _, port = server
    with connect(f"ws://127.0.0.1:{port}/ws/transcribe") as ws:
        tiny = pack(b"\0\0")
        with contextlib.suppress(ConnectionClosed):  # the server may close before the last one
            for _ in range(500):
                ws.send(tiny)
        code, codes = closed_with(ws)
        assert code == 1008, codes
        assert codes == ["flood"], codes


def test_metrics_count_hybrid_sessions_and_bad_packets(server):
    _, port = server
    with connect(f"ws://127.0.0.1:{port}/ws/transcribe") as ws:
        ws.send(b"\0")
        assert error_code(ws) == "bad_packet"
    status, _, body = http_get(port, "/metrics")
    assert status == 200
    sessions = re.search(r'^stt_sessions_total\{dialect="hybrid"\} (\d+)', body, re.M)
    errors = re.search(r'^stt_errors_total\{dialect="hybrid",code="bad_packet"\} (\d+)', body, re.M)
    assert sessions is not None, body
    assert errors is not None, body
    assert int(sessions[1]) >= 1
    assert int(errors[1]) >= 1


# ---- the machine in-process ------------------------------------------------------------------


def machine() -> HybridSession:
    return HybridSession(languages=("en",))


def upsampled(pcm: np.ndarray, factor: int) -> np.ndarray:
    """``pcm`` at ``factor`` times its rate (linear interpolation)."""
    t = np.arange(len(pcm) * factor) / factor
    return np.interp(t, np.arange(len(pcm)), pcm.astype(np.float64)).astype(np.int16)


def stream(m: HybridSession, pcm: np.ndarray, rate: int, t0: float) -> list[s.Action]:
    """``pcm`` at ``rate`` in 20 ms packets; the actions."""
    step = rate // 50
    acts: list[s.Action] = []
    for k, i in enumerate(range(0, len(pcm), step)):
        acts += m.receive_bytes(pack(pcm[i:i + step].tobytes(), rate), t0 + k * 0.02)
    return acts


def segment_audio_s(acts: list[s.Action]) -> float:
    return sum(len(a.pcm) for a in acts if isinstance(a, s.Audio)) / 32000


def test_a_48_khz_stream_is_resampled_to_16_khz_segments():
    m = machine()
    speech48 = upsampled(clip("LJ001-0002"), 3)
    acts = stream(m, speech48, 48000, 0.0)
    acts += stream(m, np.zeros(48000 * 2, np.int16), 48000, 5.0)
    opens = [a for a in acts if isinstance(a, s.OpenSegment)]
    assert [o.sample_rate for o in opens] == [16000]
    assert sum(isinstance(a, s.EndSegment) for a in acts) == 1
    assert m.sample_rate == 48000
    # 16 kHz audio: about the recording's length (not 3 times it), with pre-roll and hangover
    assert duration("LJ001-0002") - 0.5 < segment_audio_s(acts) < duration("LJ001-0002") + 2.5


def test_the_sample_rate_may_change_mid_sentence():
    """Half the recording at 48 kHz, the rest at 16 kHz: one segment, which the pause ends."""
    m = machine()
    speech16 = clip("LJ001-0002")
    half = len(speech16) // 2
    acts = stream(m, upsampled(speech16[:half], 3), 48000, 0.0)
    assert m.in_segment
    acts += stream(m, speech16[half:], 16000, 10.0)
    assert m.sample_rate == 16000
    acts += stream(m, np.zeros(32000, np.int16), 16000, 20.0)
    assert sum(isinstance(a, s.OpenSegment) for a in acts) == 1
    assert sum(isinstance(a, s.EndSegment) for a in acts) == 1
    assert duration("LJ001-0002") - 0.5 < segment_audio_s(acts) < duration("LJ001-0002") + 2.5


def test_a_rate_change_keeps_what_the_old_resampler_held(monkeypatch: pytest.MonkeyPatch):
    """Every sample of 1 s at 48 kHz reaches the gate as 16 kHz when the rate then changes."""
    m = machine()
    fed: list[bytes] = []
    monkeypatch.setattr(m._auto, "feed", lambda pcm: fed.append(pcm) or [])
    tone = (np.sin(np.arange(48000) * 0.05) * 8000).astype(np.int16)
    stream(m, tone, 48000, 0.0)
    m.receive_bytes(pack(b"\0\0" * 320, 16000), 2.0)
    assert sum(map(len, fed)) == 2 * (16000 + 320)


def test_shutdown_ends_the_open_segment():
    m = machine()
    acts = stream(m, clip("LJ001-0002")[:24000], 16000, 0.0)
    assert sum(isinstance(a, s.OpenSegment) for a in acts) == 1
    assert m.in_segment
    out = m.shutdown()
    assert [type(a).__name__ for a in out] == ["EndSegment", "Close"]
    assert isinstance(out[0], s.EndSegment)
    assert out[0].reason == "shutdown"
    assert isinstance(out[1], s.Close)
    assert out[1].code == s.CloseCode.GOING_AWAY
    assert m.receive_bytes(SILENCE, 3.0) == []
    assert machine().shutdown() == [s.Close(s.CloseCode.GOING_AWAY, "server shutting down")]


def test_idle_timeout_ends_the_sentence_being_spoken_then_closes():
    """Mid-sentence, the idle timeout ends the sentence (its fullSentence still comes), says why,
    closes with the idle code, and nothing after it is read."""
    m = machine()
    stream(m, clip("LJ001-0002")[:24000], 16000, 0.0)
    assert m.in_segment
    out = m.idle_timeout()
    assert [type(a).__name__ for a in out] == ["EndSegment", "Send", "Close"]
    assert isinstance(out[1], s.Send)
    assert getattr(out[1].message, "code", "") == "idle_timeout"
    assert isinstance(out[-1], s.Close)
    assert out[-1].code == s.CloseCode.IDLE
    assert m.receive_bytes(SILENCE, 200.0) == []
    assert m.receive_text("hello", 200.0) == []
    assert m.idle_timeout() == []
    # between sentences there is nothing to end
    quiet = machine()
    stream(quiet, np.zeros(16000, np.int16), 16000, 0.0)
    assert [type(a).__name__ for a in quiet.idle_timeout()] == ["Send", "Close"]


def kinds(actions: list[s.Action]) -> list[str]:
    """Actions by class name, messages as type:code."""
    return [f"{a.message.type}:{getattr(a.message, 'code', '')}" if isinstance(a, s.Send)
            else type(a).__name__ for a in actions]


def opens_and_ends(m: HybridSession, t0: float) -> list[str]:
    """A recording and a pause streamed into ``m``: its segment actions, in order."""
    acts = stream(m, clip("LJ001-0002"), 16000, t0)
    acts += stream(m, np.zeros(32000, np.int16), 16000, t0 + 10)
    return [k for k in kinds(acts) if k in ("OpenSegment", "EndSegment", "CancelSegment")]


@pytest.mark.parametrize("name", sorted(BAD))
def test_in_process_a_bad_packet_is_one_error_and_the_stream_goes_on(name: str):
    """The machine answers each bad packet with its error and nothing else (no close, no segment),
    and a recording after it opens one segment that the pause ends."""
    m = machine()
    data, code = BAD[name]
    assert kinds(m.receive_bytes(data, 0.0)) == [f"error:{code}"]
    assert m.state.value == "streaming"
    assert opens_and_ends(m, 1.0) == ["OpenSegment", "EndSegment"]


def test_in_process_a_bad_packet_mid_sentence_leaves_the_sentence_open():
    m = machine()
    stream(m, clip("LJ001-0002")[:24000], 16000, 0.0)
    assert m.in_segment
    assert kinds(m.receive_bytes(pack(b"\0\0\0"), 2.0)) == ["error:odd_length"]
    assert m.in_segment
    acts = stream(m, np.zeros(32000, np.int16), 16000, 3.0)
    assert kinds(acts).count("EndSegment") == 1


def test_in_process_a_text_frame_is_answered_and_the_stream_goes_on():
    m = machine()
    for text in ('{"sampleRate": 16000}', "hello", ""):
        assert kinds(m.receive_text(text, 0.0)) == ["error:binary_only"]
    assert opens_and_ends(m, 1.0) == ["OpenSegment", "EndSegment"]


def test_in_process_an_oversized_packet_closes_1009_ending_the_open_sentence():
    m = machine()
    stream(m, clip("LJ001-0002")[:24000], 16000, 0.0)
    acts = m.receive_bytes(pack(b"\0\0" * 40_000), 2.0)
    assert kinds(acts) == ["EndSegment", "error:frame_too_large", "Close"]
    close = acts[-1]
    assert isinstance(close, s.Close)
    assert close.code == s.CloseCode.TOO_BIG
    assert m.receive_bytes(SILENCE, 2.1) == []


def test_in_process_a_flood_closes_1008_text_frames_included():
    for send in ("bytes", "text"):
        m = HybridSession(languages=("en",), limits=s.Limits(max_frames_per_s=20))
        acts: list[s.Action] = []
        for _ in range(25):
            acts += m.receive_bytes(SILENCE, 0.5) if send == "bytes" else m.receive_text("x", 0.5)
        assert kinds(acts)[-2:] == ["error:flood", "Close"], send
        close = acts[-1]
        assert isinstance(close, s.Close)
        assert close.code == s.CloseCode.POLICY
        assert m.receive_bytes(SILENCE, 5.0) == []


def test_in_process_a_packet_of_metadata_only_is_no_audio():
    """A zero-sample packet (an audio callback with nothing in it) at 48 kHz: nothing to do."""
    m = machine()
    assert m.receive_bytes(pack(b"", 48000), 0.0) == []
    assert m.sample_rate == 48000
    assert opens_and_ends(m, 1.0) == ["OpenSegment", "EndSegment"]


def test_partials_and_finals_become_realtime_and_full_sentence():
    """Empty texts are not sent (a gate opened on noise)."""
    m = machine()
    assert m.partial(PartialResult("hello world", 0.9, 500)) == [s.Send(Realtime(text="hello world"))]
    assert m.partial(PartialResult("", 0.0, 500)) == []
    final = FinalResult("Hello world.", 0.9, 900, "en", 100)
    assert m.final(final, "end", 1) == [s.Send(FullSentence(text="Hello world."))]
    assert m.final(FinalResult("", 0.0, 900, "en", 100), "end", 2) == []
    assert json.loads(FullSentence(text="x").model_dump_json()) == {"type": "fullSentence", "text": "x"}
