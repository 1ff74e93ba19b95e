"""The real stt-server console script over real sockets, spoken to only through the /stt protocol:
init JSON, 20 ms S16LE frames paced in real time, {"type":"end"}."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from harness.procs import VENV_BIN, Proc, free_port, start_server
from harness.speech import clip, duration, normalise, pick, refs, wer
from harness.stt_client import (
    StreamResult,
    SttSession,
    health,
    http_get,
    segment,
    stream,
    to_rate,
    ws_url,
)
from tests.support.notify import NotifyListener
from tests.support.server_http import metrics, wait_sessions

TOKEN = "s3cret-token"
# the strict server's limits, small enough to reach from a test
STRICT = {"MAX_FRAME_BYTES": "4096", "MAX_FRAMES_PER_S": "100", "IDLE_TIMEOUT_S": "3", "MAX_SESSIONS": "3"}


def url_of(port: int, **kw: Any) -> str:
    return ws_url(port, **kw)


def quick_final(sess: SttSession, name: str, frame_ms: int = 40, timeout: float = 20) -> dict[str, Any]:
    """One segment of a clip sent without pacing (in frames the server's limits allow); its final."""
    return segment(sess, clip(name), frame_ms=frame_ms, speed=None, timeout=timeout).final


def assert_correct(final: dict[str, Any], name: str, max_wer: float = 0.15) -> None:
    assert wer([(refs()[name], final["text"])]) <= max_wer, f"{name}: {final['text']!r} vs {refs()[name]!r}"


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # handed to the test thread
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def joined(t: threading.Thread, box: dict[str, Any], timeout: float = 60) -> Any:
    t.join(timeout)
    assert not t.is_alive(), "client thread hung"
    if "error" in box:
        raise box["error"]
    return box["result"]


# ---- the happy path on the shared server ----------------------------------------------------


@pytest.fixture(scope="module")
def streamed(server: tuple[Proc, int]) -> dict[str, StreamResult]:
    """Several clips of 4-6 s, each streamed once in real time by a protocol-only client."""
    _, port = server
    return {name: stream(url_of(port), clip(name)) for name in pick(3, 4.0, 6.0)}


def test_word_error_rate_over_several_clips(streamed):
    """Finals streamed in real time match the references: corpus WER <= 15%."""
    pairs = [(refs()[name], r.final["text"]) for name, r in streamed.items()]
    assert wer(pairs) <= 0.15, pairs


def test_partials_arrive_before_end(streamed):
    """For clips of 3 s and more, partials with words arrive while audio is still being sent, with
    growing t_ms that never runs ahead of the audio sent, each one only when its text changed."""
    for name, r in streamed.items():
        assert duration(name) >= 3.0
        before = r.partials_before_end
        assert len(before) >= 3, (name, r.partials)
        assert any(p["text"].strip() for p in before)
        t_ms = [p["t_ms"] for p in r.partials]
        assert t_ms == sorted(t_ms)
        texts = [p["text"] for p in r.partials]
        assert all(a != b for a, b in itertools.pairwise(texts)), "a partial repeated unchanged text"
        for p, at in zip(r.partials, r.partial_times, strict=True):
            assert p["t_ms"] <= at * 1000 + 100, "a partial for audio not yet sent"


def test_partials_and_finals_have_the_documented_fields(streamed):
    """partial/final carry text (str), confidence (float in [0, 1]) and t_ms (int); the final's t_ms
    is the audio time covered, i.e. the clip's duration."""
    for name, r in streamed.items():
        for msg in [*r.partials, r.final]:
            assert isinstance(msg["text"], str)
            assert isinstance(msg["confidence"], float | int)
            assert 0.0 <= msg["confidence"] <= 1.0
            assert isinstance(msg["t_ms"], int)
        assert r.final["type"] == "final"
        assert abs(r.final["t_ms"] - duration(name) * 1000) <= 40
        assert r.final["confidence"] > 0.3


def test_final_arrives_promptly_after_end(streamed):
    """The final follows end by about one decode, not by a queue of partials."""
    for name, r in streamed.items():
        assert r.latency_s < 6.0, (name, r.latency_s)


def test_two_sessions_at_once_are_both_correct(server):
    """Two clients streaming at the same time each get their own correct final, and every message
    on a connection belongs to that connection's session."""
    _, port = server
    names = ["LJ001-0006", "LJ001-0011"]
    runs = [in_thread(lambda n=n: stream(url_of(port), clip(n), session_id=f"sess-{n}")) for n in names]
    for name, (t, box) in zip(names, runs, strict=True):
        r = joined(t, box)
        assert_correct(r.final, name)
        assert r.partials_before_end
        assert {m.get("session_id") for m in [*r.partials, r.final]} == {f"sess-{name}"}


def test_many_segments_on_one_connection(server):
    """After a final the next frames start a new segment: three clips on one connection give three
    finals, each with only its own clip's words and duration."""
    _, port = server
    names = ["LJ001-0002", "LJ001-0008", "LJ001-0011"]
    with SttSession(url_of(port)) as sess:
        sess.init(16000)
        finals = [segment(sess, clip(n)).final for n in names]
    assert wer([(refs()[n], f["text"]) for n, f in zip(names, finals, strict=True)]) <= 0.15, finals
    for n, f in zip(names, finals, strict=True):
        assert abs(f["t_ms"] - duration(n) * 1000) <= 40
    assert [f.get("segment") for f in finals] == [1, 2, 3]


def test_client_at_48000_hz_is_transcribed_correctly(server):
    """A client sending 48 kHz PCM (960-sample frames) is resampled by the server: correct text and
    t_ms in 16 kHz audio time."""
    _, port = server
    name = "LJ001-0004"
    r = stream(url_of(port), to_rate(clip(name), 48000), 48000)
    assert_correct(r.final, name)
    assert abs(r.final["t_ms"] - duration(name) * 1000) <= 40
    assert r.partials_before_end


# ---- HTTP beside the WebSocket ----------------------------------------------------------------


def test_health_reports_model_device_compute_type_and_sessions(server):
    """GET /health is JSON with ok, model, device, compute type and the live session count."""
    _, port = server
    status, ctype, body = http_get(port, "/health")
    assert status == 200
    assert ctype.startswith("application/json")
    h = json.loads(body)
    assert h["ok"] is True
    assert "tiny.en" in h["model"]
    assert h["device"] == "cpu"
    assert h["compute_type"] == "int8"
    base = h["active_sessions"]
    assert isinstance(base, int)
    with SttSession(url_of(port)) as sess:
        sess.init(16000)
        wait_sessions(port, base + 1)
    wait_sessions(port, base)


def test_metrics_is_prometheus_text_with_decode_times_and_errors_by_code(server):
    """GET /metrics is Prometheus text: the stt_decode_seconds histogram counts decodes and
    stt_errors_total counts errors sent to clients by code."""
    _, port = server
    before = metrics(port)
    with SttSession(url_of(port)) as sess:
        sess.init(16000)
        mark = sess.mark()
        sess.send_text("definitely not json")
        sess.wait_for("error", 10, after=mark)
        quick_final(sess, "LJ001-0002")
    after = metrics(port)
    key = 'stt_errors_total{dialect="stt",code="not_json"}'
    assert after[key] == before.get(key, 0) + 1
    count = 'stt_decode_seconds_count{kind="final"}'
    assert after[count] >= before[count] + 1
    assert after['stt_decode_seconds_bucket{kind="final",le="+Inf"}'] == after[count]
    assert after['stt_decode_seconds_sum{kind="final"}'] > before['stt_decode_seconds_sum{kind="final"}']
    _, _, text = http_get(port, "/metrics")
    assert "# TYPE stt_decode_seconds histogram" in text
    assert "# TYPE stt_errors_total counter" in text
    segments = 'stt_segments_total{dialect="stt"}'
    assert after[segments] >= before.get(segments, 0) + 1


@pytest.mark.parametrize("path", ["/stt/extra", "/healthz", "/metrics/x", "/favicon.ico"])
def test_other_paths_are_404(server, path):
    """Paths that are not served (anything but /stt, /health, /metrics and the live page) are 404."""
    _, port = server
    status, _, _ = http_get(port, path)
    assert status == 404


def test_websocket_handshake_on_another_path_is_refused(server):
    """A WebSocket client on a wrong path is refused at the handshake with 404."""
    _, port = server
    with pytest.raises(InvalidStatus) as info:
        SttSession(url_of(port, path="/no-such-path"))
    assert info.value.response.status_code == 404


# ---- bad input: each gets an error with its code, fatal ones the documented close code -------


def non_fatal_cases() -> list[tuple[str, Callable[[SttSession], None], str]]:
    return [
        ("non-JSON text", lambda s: (s.init(16000), s.send_text("hello?")), "not_json"),
        ("unknown type", lambda s: (s.init(16000), s.send_json({"type": "start"})), "unknown_type"),
        ("second init", lambda s: (s.init(16000), s.init(8000)), "already_initialized"),
        ("odd-length PCM", lambda s: (s.init(16000), s.send_bytes(b"\x01" * 641)), "odd_length"),
        ("end with no audio", lambda s: (s.init(16000), s.end()), "empty_segment"),
    ]


def fatal_cases() -> list[tuple[str, Callable[[SttSession], None], str, int]]:
    return [
        ("audio before init", lambda s: s.send_bytes(clip("LJ001-0002")[:320].tobytes()), "audio_before_init",
         1008),
        ("sample_rate 0", lambda s: s.init(0), "bad_sample_rate", 1008),
        ("negative sample_rate", lambda s: s.init(-16000), "bad_sample_rate", 1008),
        ("huge sample_rate", lambda s: s.init(10**9), "bad_sample_rate", 1008),
        ("sample_rate a string", lambda s: s.init("16000"), "bad_sample_rate", 1008),
    ]


@pytest.mark.parametrize(("what", "do", "code"), non_fatal_cases(), ids=[c[0] for c in non_fatal_cases()])
def test_recoverable_bad_input_gets_its_error_and_the_session_goes_on(server, what, do, code):
    """A recoverable mistake is answered with {"type":"error","code":...,"message":...}; the
    connection stays open and the next segment still gets a correct final."""
    _, port = server
    with SttSession(url_of(port)) as sess:
        do(sess)
        err = sess.wait_for("error", 10).msg
        assert err["code"] == code
        assert isinstance(err["message"], str)
        assert err["message"]
        assert_correct(quick_final(sess, "LJ001-0002"), "LJ001-0002")
        assert not sess.closed.is_set()
        assert [m["code"] for m in sess.messages("error")] == [code]


@pytest.mark.parametrize(("what", "do", "code", "close"), fatal_cases(), ids=[c[0] for c in fatal_cases()])
def test_fatal_bad_input_gets_its_error_then_the_documented_close(server, what, do, code, close):
    """A mistake the session cannot go on from is answered with its error code, then the connection
    is closed with the documented close code; no audio is taken and no final sent."""
    _, port = server
    with SttSession(url_of(port)) as sess:
        do(sess)
        err = sess.wait_for("error", 10).msg
        assert err["code"] == code
        assert err["message"]
        assert sess.wait_closed(10) == close
        assert sess.messages("final") == []
        assert sess.messages("ready") == []


def test_a_client_vanishing_mid_segment_is_cleaned_up(server):
    """A client that drops its TCP connection in the middle of a segment leaves no session or
    segment behind, and the server goes on serving others correctly."""
    _, port = server
    base = health(port)["active_sessions"]
    sess = SttSession(url_of(port))
    sess.init(16000)
    sess.send_audio(clip("LJ001-0004")[: 16000 * 2], speed=2.0)
    wait_sessions(port, base + 1)
    sess.abort()
    wait_sessions(port, base)
    deadline = time.monotonic() + 10
    while metrics(port)["stt_active_segments"] != 0:
        assert time.monotonic() < deadline, "the abandoned segment was never dropped"
        time.sleep(0.05)
    assert_correct(stream(url_of(port), clip("LJ001-0002"), speed=None, frame_ms=40).final, "LJ001-0002")


def test_bad_input_never_disturbs_another_session(server):
    """While one client streams a clip in real time, others send every kind of bad input and one
    vanishes mid-segment; the good client's partials and final are unaffected and error-free, and
    afterwards the server still serves a correct final."""
    proc, port = server
    name = "LJ001-0006"
    t, box = in_thread(lambda: stream(url_of(port), clip(name), session_id="good"))
    time.sleep(0.5)
    deadline = time.monotonic() + 4.0
    rounds = 0
    while time.monotonic() < deadline and rounds < 5:
        for _, do, code in non_fatal_cases():
            with SttSession(url_of(port)) as sess:
                do(sess)
                assert sess.wait_for("error", 10).msg["code"] == code
        for _, do, code, close in fatal_cases():
            with SttSession(url_of(port)) as sess:
                do(sess)
                assert sess.wait_for("error", 10).msg["code"] == code
                assert sess.wait_closed(10) == close
        gone = SttSession(url_of(port))
        gone.init(16000)
        gone.send_audio(clip("LJ001-0004")[:8000], speed=None)
        gone.abort()
        rounds += 1
        time.sleep(0.3)
    good = joined(t, box)
    assert rounds >= 1
    assert_correct(good.final, name)
    assert [m for m in good.messages if m["type"] == "error"] == []
    assert good.partials_before_end
    assert proc.alive()
    assert_correct(stream(url_of(port), clip("LJ001-0008")).final, "LJ001-0008")


# ---- limits, on a server with small ones ------------------------------------------------------


@pytest.fixture(scope="module")
def strict() -> Iterator[tuple[Proc, int]]:
    proc, port = start_server(env=STRICT)
    yield proc, port
    proc.stop()


def test_frame_over_max_frame_bytes_closes_1009_after_the_final(strict):
    """A binary frame over MAX_FRAME_BYTES ends the session with error frame_too_large and close 1009;
    what was said before it still gets its final first."""
    _, port = strict
    with SttSession(url_of(port)) as sess:
        sess.init(16000)
        sess.send_audio(clip("LJ001-0004")[: 16000 * 3], frame_ms=120, speed=None)  # 3840-byte frames
        mark = sess.mark()
        sess.send_bytes(b"\0" * 4098)
        final = sess.wait_for("final", 20, after=mark)
        err = sess.wait_for("error", 10, after=mark)
        assert err.msg["code"] == "frame_too_large"
        assert final.t <= err.t
        assert sess.wait_closed(10) == 1009
    # the first 3 s of "produced the block books, which were the immediate predecessors ...": the
    # words of that much, at most a third of them heard differently
    ref = normalise(refs()["LJ001-0004"]).split()
    words = normalise(final.msg["text"]).split()
    assert 3 <= len(words) < len(ref), final.msg["text"]
    assert wer([(" ".join(ref[:len(words)]), final.msg["text"])]) <= 1 / 3, final.msg["text"]
    assert 2900 <= final.msg["t_ms"] <= 3100
    with SttSession(url_of(port)) as idle:
        idle.init(16000)
        idle.send_bytes(b"\0" * 8192)
        assert idle.wait_for("error", 10).msg["code"] == "frame_too_large"
        assert idle.wait_closed(10) == 1009
        assert idle.messages("final") == []


def test_flood_of_tiny_frames_closes_1008(strict):
    """Hundreds of tiny frames a second, over MAX_FRAMES_PER_S: error flood and close 1008, completed
    promptly although the client's frames are still queued, so the session's slot is freed at once."""
    _, port = strict
    wait_sessions(port, 0)
    with SttSession(url_of(port)) as sess:
        sess.init(16000)
        for _ in range(1000):
            if sess.closed.is_set():
                break
            try:
                sess.send_bytes(b"\0\0")
            except Exception:
                break
        err = sess.wait_for("error", 10)
        assert err.msg["code"] == "flood"
        assert sess.wait_closed(10) == 1008
    wait_sessions(port, 0, timeout=10)


def test_idle_timeout_finishes_the_segment_then_closes_4408(strict):
    """A client that goes quiet for IDLE_TIMEOUT_S mid-segment gets that segment's final, then error
    idle_timeout and close 4408; one quiet since init gets the error and close only."""
    _, port = strict
    idle_s = float(STRICT["IDLE_TIMEOUT_S"])
    with SttSession(url_of(port)) as busy, SttSession(url_of(port)) as quiet:
        quiet.init(16000)
        busy.init(16000)
        busy.send_audio(clip("LJ001-0002"), frame_ms=120, speed=None)
        t0 = time.monotonic()
        final = busy.wait_for("final", idle_s + 10)
        err = busy.wait_for("error", idle_s + 10)
        assert busy.wait_closed(10) == 4408
        assert time.monotonic() - t0 >= idle_s - 0.5
        assert final.t <= err.t
        assert err.msg["code"] == "idle_timeout"
        assert_correct(final.msg, "LJ001-0002")
        assert quiet.wait_closed(idle_s + 10) == 4408
        assert [m["code"] for m in quiet.messages("error")] == ["idle_timeout"]
        assert quiet.messages("final") == []


@pytest.fixture
def busy_limits() -> Iterator[tuple[Proc, int]]:
    # Its own server: the held sessions are idle, and STRICT's 3 s idle timeout would close them
    # mid-test on a slow machine.
    proc, port = start_server(env={**STRICT, "IDLE_TIMEOUT_S": "120"})
    yield proc, port
    proc.stop()


def test_max_sessions_exceeded_is_server_busy_1013(busy_limits):
    """With MAX_SESSIONS open, one more connection gets error server_busy and close 1013; once a
    session ends, a new one is accepted again."""
    proc, port = busy_limits
    limit = int(STRICT["MAX_SESSIONS"])
    wait_sessions(port, 0)
    before = metrics(port).get('stt_errors_total{dialect="stt",code="server_busy"}', 0)
    held = [SttSession(url_of(port)) for _ in range(limit)]
    try:
        for s in held:
            s.init(16000)
        wait_sessions(port, limit)
        with SttSession(url_of(port)) as extra:
            with contextlib.suppress(ConnectionClosed):  # the refusal may beat the init
                extra.init(16000)
            assert extra.wait_for("error", 10).msg["code"] == "server_busy"
            assert extra.wait_closed(10) == 1013
        held.pop().close()
        wait_sessions(port, limit - 1)
        with SttSession(url_of(port)) as again:
            again.init(16000)
            again.wait_for("ready", 10)
            assert again.messages("error") == []
    finally:
        for s in held:
            s.close()
    assert metrics(port)['stt_errors_total{dialect="stt",code="server_busy"}'] == before + 1
    assert proc.alive()


def test_strict_server_still_serves_a_correct_final_after_all_that(strict):
    """After oversize frames, floods, idle timeouts and refused sessions, the server is alive, has no
    leftover sessions and serves a real-time client correctly (50 frames/s is under the limit)."""
    proc, port = strict
    assert proc.alive()
    wait_sessions(port, 0)
    r = stream(url_of(port), clip("LJ001-0004"))
    assert_correct(r.final, "LJ001-0004")
    assert r.partials_before_end


# ---- token auth -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secured() -> Iterator[tuple[Proc, int]]:
    proc, port = start_server(env={"STT_TOKEN": TOKEN})
    yield proc, port
    proc.stop()


@pytest.mark.parametrize(("how", "kwargs"), [
    ("no token", {}),
    ("wrong bearer", {"bearer": "wrong"}),
    ("wrong query token", {"token": "wrong"}),
    ("empty query token", {"token": ""}),
    ("token as a prefix", {"bearer": TOKEN[:-1]}),
])
def test_missing_or_wrong_token_is_refused_at_the_handshake(secured, how, kwargs):
    """With STT_TOKEN set, a client without the right token gets HTTP 401 before any WebSocket
    exists, so no audio can be sent; the refusal is counted as an error."""
    _, port = secured
    before = metrics(port, TOKEN)
    bearer = kwargs.pop("bearer", None)
    with pytest.raises(InvalidStatus) as info:
        SttSession(url_of(port, **kwargs), bearer=bearer)
    assert info.value.response.status_code == 401
    after = metrics(port, TOKEN)
    key = 'stt_errors_total{dialect="stt",code="unauthorized"}'
    assert after[key] == before.get(key, 0) + 1
    for counter in ('stt_sessions_total{dialect="stt"}', 'stt_audio_seconds_total{dialect="stt"}'):
        assert after.get(counter) == before.get(counter), counter


@pytest.mark.parametrize("how", ["bearer", "query"])
def test_right_token_by_bearer_header_or_query_is_served(secured, how):
    """The token is accepted as Authorization: Bearer and as ?token=; the client is then served."""
    _, port = secured
    url = url_of(port, token=TOKEN) if how == "query" else url_of(port)
    r = stream(url, clip("LJ001-0002"), bearer=TOKEN if how == "bearer" else None)
    assert_correct(r.final, "LJ001-0002")


# ---- shutdown and configuration -----------------------------------------------------------------


def test_sigterm_delivers_the_open_final_closes_1001_and_exits_0():
    """SIGTERM while a segment streams: the segment's final (of what was sent) still arrives, every
    connection closes with 1001, new connections are refused, and the process exits 0 within
    SHUTDOWN_TIMEOUT_S."""
    bound = 5.0
    proc, port = start_server(env={"SHUTDOWN_TIMEOUT_S": str(bound)})
    try:
        name = "LJ001-0004"
        talker = SttSession(url_of(port))
        idle = SttSession(url_of(port))
        idle.init(16000)
        talker.init(16000)
        stop = threading.Event()
        t, box = in_thread(lambda: talker.send_audio(clip(name), stop=stop))
        talker.wait_for(lambda r: r.type == "partial" and r.msg["t_ms"] >= 2000, 15)
        t_sig = time.monotonic()
        proc.signal(signal.SIGTERM)
        final = talker.wait_for("final", bound + 5)
        assert talker.wait_closed(bound + 5) == 1001
        assert idle.wait_closed(bound + 5) == 1001
        stop.set()
        joined(t, box)
        assert final.msg["text"]
        assert final.msg["t_ms"] >= 2000
        words = normalise(final.msg["text"]).split()
        assert wer([(" ".join(normalise(refs()[name]).split()[: len(words)]), final.msg["text"])]) <= 0.25
        assert idle.messages("final") == []
        with pytest.raises((OSError, InvalidStatus)):
            SttSession(url_of(port), open_timeout=3)
        code = proc.wait(bound + 3)
        assert code == 0, proc.output()[-3000:]
        assert time.monotonic() - t_sig <= bound + 2
        assert "Traceback" not in proc.output()
    finally:
        proc.stop()


def run_server_expecting_failure(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "HOST": "127.0.0.1", "PORT": str(free_port()), "DEVICE": "cpu", "WHISPER_MODEL": "",
            "STT_TOKEN": "", "LOG_FORMAT": "json", **env}
    return subprocess.run([str(VENV_BIN / "stt-server")], env=full, capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.mark.parametrize(("env", "variable"), [
    ({"PORT": "abc"}, "PORT"),
    ({"DEVICE": "tpu"}, "DEVICE"),
    ({"WHISPER_MODEL": "some-uncached-name", "HF_HUB_OFFLINE": "1"}, "WHISPER_MODEL"),
    ({"WHISPER_MODEL": "large-v3", "HF_HUB_OFFLINE": "1", "HF_HOME": "/nonexistent/hf"}, "WHISPER_MODEL"),
    ({"COMPUTE_TYPE": "float16"}, "COMPUTE_TYPE"),
    ({"MAX_SESSIONS": "0"}, "MAX_SESSIONS"),
    ({"FINAL_CONTEXT_S": "45"}, "FINAL_CONTEXT_S"),
    ({"VAD_ENGINE": "torch"}, "VAD_ENGINE"),
    ({"WEBHOOK_URL": "not a url"}, "WEBHOOK_URL"),
    ({"MQTT_HOST": "127.0.0.1", "MQTT_CA_FILE": "/nonexistent/ca.pem"}, "MQTT_CA_FILE"),
], ids=["port", "device", "unknown-model", "uncached-model", "compute-type", "max-sessions", "final-context",
        "vad-engine", "webhook-url", "mqtt-ca-file"])
def test_bad_configuration_exits_78_with_one_line_naming_the_variable(env, variable):
    """A configuration that cannot work exits with 78 (EX_CONFIG) and one line on stderr that names
    the variable, never a traceback."""
    done = run_server_expecting_failure(env)
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert done.returncode == 78, done.stdout + done.stderr
    assert len(lines) == 1, done.stderr
    assert variable in lines[0]
    assert lines[0].startswith("stt-server: configuration error: " + variable), lines[0]
    assert "Traceback" not in done.stdout + done.stderr


def test_listening_port_taken_exits_78(server):
    """PORT already in use by another server is a configuration error too: 78, one line, HOST/PORT."""
    _, port = server
    done = run_server_expecting_failure({"PORT": str(port)})
    assert done.returncode == 78, done.stdout + done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, done.stderr
    assert "PORT" in lines[0]
    assert "Traceback" not in done.stdout + done.stderr


def test_server_output_has_no_tracebacks(server):
    """Nothing the tests above sent made the shared server log a traceback."""
    proc, _ = server
    assert proc.alive()
    out = proc.output()
    assert "Traceback" not in out
    assert '"level": "error"' not in out
    assert "ERROR" not in out


def test_tells_systemd_ready_watchdog_and_stopping(tmp_path):
    """Under systemd (Type=notify, WatchdogSec=): READY=1 once /stt accepts connections, WATCHDOG=1 at
    half of WATCHDOG_USEC while it runs, STOPPING=1 on SIGTERM, then exit 0."""
    notify = NotifyListener(tmp_path / "notify")
    try:
        proc, port = start_server(env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"})
        try:
            notify.wait("READY=1", 30)
            assert_correct(stream(url_of(port), clip("LJ001-0002")).final, "LJ001-0002")
            t0 = time.monotonic()
            time.sleep(2.2)
            pings = [t for t in notify.times("WATCHDOG=1") if t >= t0]
            assert len(pings) >= 3, pings  # every 0.5 s for WATCHDOG_USEC=1 s
            proc.signal(signal.SIGTERM)
            assert proc.wait(20) == 0, proc.output()[-3000:]
            notify.wait("STOPPING=1", 1)
        finally:
            proc.stop()
    finally:
        notify.close()
