"""TLS as a home network would run it: a CA and a server certificate from ``scripts/make-certs.sh``,
the real stt-server with TLS_CERT_FILE/TLS_KEY_FILE, and clients that verify it against that CA:
wss:// on /stt, HTTPS for /health, Wyoming and Socket.IO over TLS, and the worker's ws backend with
WS_CA_FILE publishing to a real Mosquitto. A client that does not trust the CA never gets a session."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from stt_worker.backend_ws import WsBackend
from stt_worker.settings import WorkerSettings
from websockets.sync.client import connect
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import async_read_event, async_write_event
from wyoming.info import Describe, Info

from harness.procs import VENV_BIN, Mosquitto, Proc, free_port, start_server
from harness.speech import clip, refs, wer
from harness.stt_client import pcm_frames
from tests.worker import helpers as h

ROOT = Path(__file__).resolve().parents[2]
MAKE_CERTS = ROOT / "scripts" / "make-certs.sh"
NAME = "LJ001-0002"


def make_certs(d: Path, *names: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(MAKE_CERTS), "--dir", str(d), *names], capture_output=True, text=True,
                          check=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tls")
    make_certs(d, "localhost", "127.0.0.1")
    return d


@pytest.fixture(scope="module")
def trusting(certs: Path) -> ssl.SSLContext:
    """A client that trusts the home CA (and checks the host name, as every default context does)."""
    return ssl.create_default_context(cafile=str(certs / "ca.pem"))


@pytest.fixture(scope="module")
def tls_server(certs: Path) -> Iterator[dict[str, Any]]:
    ports = {"wyoming": free_port(), "socketio": free_port()}
    proc, port = start_server({"TLS_CERT_FILE": str(certs / "server.pem"),
                               "TLS_KEY_FILE": str(certs / "server.key"),
                               "WYOMING_PORT": str(ports["wyoming"]),
                               "SOCKETIO_PORT": str(ports["socketio"])})
    yield {"proc": proc, "port": port, **ports}
    proc.stop()
    assert "Traceback" not in proc.output(), proc.output()[-3000:]


def wss_final(url: str, ctx: ssl.SSLContext, name: str = NAME) -> dict[str, Any]:
    """One /stt segment over wss:// (frames unpaced, within the server's frame rate); its final."""
    with connect(url, ssl=ctx, proxy=None, open_timeout=10, max_size=None) as ws:
        ws.send(json.dumps({"type": "init", "sample_rate": 16000, "lang": "en"}))
        ready = json.loads(ws.recv(timeout=20))
        assert ready["type"] == "ready", ready
        for frame in pcm_frames(clip(name), 16000, 40):
            ws.send(frame)
        ws.send(json.dumps({"type": "end"}))
        while True:
            msg = json.loads(ws.recv(timeout=30))
            if msg["type"] == "final":
                return dict(msg)


def test_listening_says_wss(tls_server: dict[str, Any]) -> None:
    proc: Proc = tls_server["proc"]
    listening = [e for e in proc.json_events() if e.get("event") == "listening"]
    assert listening, listening
    assert listening[0]["scheme"] == "wss", listening
    assert listening[0]["page"] == "https", listening
    for name in ("wyoming", "socketio"):
        [event] = [e for e in proc.json_events() if e.get("event") == f"{name}_listening"]
        assert event["tls"] is True, event


def test_wss_session_verified_against_the_home_ca_transcribes(tls_server: dict[str, Any],
                                                             trusting: ssl.SSLContext) -> None:
    final = wss_final(f"wss://localhost:{tls_server['port']}/stt", trusting)
    assert wer([(refs()[NAME], final["text"])]) <= 0.15, final


def test_a_client_that_does_not_trust_the_ca_fails_the_handshake(tls_server: dict[str, Any]) -> None:
    """The system's trust store does not hold the home CA: the certificate is refused, no session."""
    with pytest.raises(ssl.SSLCertVerificationError):
        wss_final(f"wss://localhost:{tls_server['port']}/stt", ssl.create_default_context())


def test_a_name_not_in_the_certificate_fails_the_handshake(tls_server: dict[str, Any], certs: Path,
                                                           trusting: ssl.SSLContext) -> None:
    """The CA is trusted but the server is reached by a name its certificate does not carry."""
    with pytest.raises(ssl.SSLCertVerificationError, match=r"match|mismatch"), \
            connect(f"wss://localhost:{tls_server['port']}/stt", ssl=trusting, proxy=None,
                    server_hostname="kitchen.example", open_timeout=10):
        pass


def test_plain_ws_to_the_tls_port_gets_no_session(tls_server: dict[str, Any]) -> None:
    def plain_session() -> None:
        with connect(f"ws://127.0.0.1:{tls_server['port']}/stt", proxy=None, open_timeout=5) as ws:
            ws.send(json.dumps({"type": "init", "sample_rate": 16000}))
            ws.recv(timeout=5)

    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the client makes of TLS bytes
        plain_session()


def https_get(url: str, ctx: ssl.SSLContext) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=ctx))
    with opener.open(url, timeout=10) as resp:
        return resp.status, resp.read().decode()


def test_https_health_metrics_and_page(tls_server: dict[str, Any], trusting: ssl.SSLContext) -> None:
    port = tls_server["port"]
    status, body = https_get(f"https://localhost:{port}/health", trusting)
    assert status == 200, body
    assert json.loads(body)["ok"] is True, body
    assert json.loads(body)["model"], body
    status, body = https_get(f"https://localhost:{port}/metrics", trusting)
    assert status == 200
    assert "stt_active_sessions" in body
    status, body = https_get(f"https://localhost:{port}/", trusting)
    # the page opens its session at its own URL with http -> ws: wss:// when loaded over https
    assert status == 200
    assert 'endpointUrl("stt").href.replace(/^http/, "ws")' in body
    with pytest.raises(urllib.error.URLError) as info:
        https_get(f"https://localhost:{port}/health", ssl.create_default_context())
    assert isinstance(info.value.reason, ssl.SSLCertVerificationError), info.value


def test_socketio_over_tls(tls_server: dict[str, Any], trusting: ssl.SSLContext) -> None:
    """Engine.IO's first request (a polling handshake) answered over HTTPS by the Socket.IO port."""
    status, body = https_get(f"https://localhost:{tls_server['socketio']}/socket.io/?EIO=4&transport=polling",
                             trusting)
    assert status == 200, body
    assert '"sid"' in body, body


def test_wyoming_over_tls(tls_server: dict[str, Any], trusting: ssl.SSLContext) -> None:
    """wyoming's AsyncTcpClient has no TLS: an ssl asyncio connection with wyoming's own event
    framing. describe -> info, then a whole request -> transcript."""
    async def run() -> tuple[Any, Any]:
        reader, writer = await asyncio.open_connection("localhost", tls_server["wyoming"], ssl=trusting)
        try:
            await async_write_event(Describe().event(), writer)
            info = await asyncio.wait_for(async_read_event(reader), 20)
            await async_write_event(Transcribe(language="en").event(), writer)
            await async_write_event(AudioStart(rate=16000, width=2, channels=1).event(), writer)
            for frame in pcm_frames(clip(NAME), 16000, 40):
                chunk = AudioChunk(rate=16000, width=2, channels=1, audio=frame)
                await async_write_event(chunk.event(), writer)
            await async_write_event(AudioStop().event(), writer)
            while (ev := await asyncio.wait_for(async_read_event(reader), 30)) is not None:
                if Transcript.is_type(ev.type):
                    return info, Transcript.from_event(ev)
            raise AssertionError("the connection ended without a transcript")
        finally:
            writer.close()

    info, transcript = asyncio.run(run())
    assert info is not None, info
    assert Info.is_type(info.type), info
    assert Info.from_event(info).asr, info
    assert wer([(refs()[NAME], transcript.text)]) <= 0.15, transcript


def test_plain_tcp_wyoming_when_wyoming_tls_is_off(certs: Path) -> None:
    """WYOMING_TLS=0: /stt is wss://, the Wyoming port stays plain TCP for Home Assistant."""
    wport = free_port()
    proc, _port = start_server({"TLS_CERT_FILE": str(certs / "server.pem"),
                               "TLS_KEY_FILE": str(certs / "server.key"), "WYOMING_PORT": str(wport),
                               "WYOMING_TLS": "0"})

    async def describe() -> Any:
        reader, writer = await asyncio.open_connection("127.0.0.1", wport)
        await async_write_event(Describe().event(), writer)
        try:
            return await asyncio.wait_for(async_read_event(reader), 20)
        finally:
            writer.close()

    try:
        ev = asyncio.run(describe())
        assert ev is not None
        assert Info.is_type(ev.type)
        assert [e["tls"] for e in proc.json_events() if e.get("event") == "wyoming_listening"] == [False]
    finally:
        proc.stop()


# ---- the worker -------------------------------------------------------------------------------


def test_worker_over_wss_with_ws_ca_file_publishes_finals(tls_server: dict[str, Any], certs: Path,
                                                          broker: Mosquitto, tmp_path: Path) -> None:
    """STT_BACKEND=ws, WS_URL=wss://..., WS_CA_FILE=ca.pem, no fallback: every final comes from the
    server, over TLS, to MQTT; and no token_in_clear warning."""
    wav = h.speech_wav(tmp_path / "two.wav", h.SHORT)
    col = h.Collector(broker.port)
    env = h.worker_env(broker.port, wav, STT_BACKEND="ws", STT_FALLBACK="none",
                       WS_URL=f"wss://localhost:{tls_server['port']}/stt", WS_CA_FILE=str(certs / "ca.pem"),
                       WS_TOKEN="unused-by-this-server", WS_FINAL_TIMEOUT_S="20", WS_CONNECT_TIMEOUT_S="15")
    w = h.start_worker(env)
    try:
        assert w.wait(120) == 0, h.tail(w)
        finals = col.wait_finals(len(h.SHORT), 10, w)
    finally:
        w.stop()
        col.close()
    h.assert_transcribed(h.SHORT, finals)
    assert {f["backend"] for f in finals} == {"ws"}, finals
    assert h.events(w, "server_connected"), h.tail(w)
    assert not h.events(w, "token_in_clear")


def test_worker_without_the_ca_refuses_the_server(tls_server: dict[str, Any], broker: Mosquitto,
                                                  tmp_path: Path) -> None:
    """No WS_CA_FILE: the system store does not know the home CA; the worker says why, and never
    streams to that server."""
    wav = h.speech_wav(tmp_path / "one.wav", h.SHORT[:1])
    env = h.worker_env(broker.port, wav, STT_BACKEND="ws", STT_FALLBACK="none",
                       WS_URL=f"wss://localhost:{tls_server['port']}/stt", WS_CONNECT_TIMEOUT_S="3")
    w = h.start_worker(env)
    try:
        h.wait_log(w, "server_certificate_rejected", 60)
    finally:
        w.stop()
    assert not h.events(w, "server_connected")


@pytest.mark.parametrize(("url", "warned"), [
    ("ws://192.168.1.20:9000/stt", True),
    ("ws://jetson.lan:9000/stt", True),
    ("ws://127.0.0.1:9000/stt", False),
    ("ws://localhost:9000/stt", False),
    ("ws://[::1]:9000/stt", False),
    ("wss://jetson.lan:9000/stt", False),
])
def test_token_in_clear_warning(url: str, warned: bool) -> None:
    """Built with WS_TOKEN set, the ws backend warns once when the token would cross the network in
    clear; not for loopback or wss://. No token: no warning."""
    with structlog.testing.capture_logs() as logs:
        WsBackend(WorkerSettings(ws_url=url, ws_token="s3cret"), lambda _: None)  # type: ignore[arg-type]
        WsBackend(WorkerSettings(ws_url=url), lambda _: None)
    hits = [e for e in logs if e["event"] == "token_in_clear"]
    assert len(hits) == (1 if warned else 0), logs
    assert all("s3cret" not in str(e) for e in logs)


def test_token_in_clear_logged_by_the_worker_at_start(broker: Mosquitto, tmp_path: Path) -> None:
    """The real worker, STT_BACKEND=ws at a LAN address with WS_TOKEN: the warning is in its log."""
    wav = h.speech_wav(tmp_path / "one.wav", h.SHORT[:1])
    env = h.worker_env(broker.port, wav, STT_BACKEND="ws", STT_FALLBACK="none", WS_TOKEN="s3cret",
                       WS_URL="ws://192.0.2.1:9/stt", WS_CONNECT_TIMEOUT_S="1")
    w = h.start_worker(env)
    try:
        [warning] = h.wait_log(w, "token_in_clear", 60)
    finally:
        w.stop()
    assert warning["level"] == "warning"
    assert warning["url"] == "ws://192.0.2.1:9/stt"
    assert "s3cret" not in w.output()


# ---- configuration ------------------------------------------------------------------------------


def run_expecting_failure(exe: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "HOST": "127.0.0.1", "PORT": str(free_port()), "DEVICE": "cpu", "WHISPER_MODEL": "",
            "STT_TOKEN": "", "LOG_FORMAT": "json", "WYOMING_PORT": "0", "SOCKETIO_PORT": "0",
            "MQTT_HOST": "127.0.0.1", "AUDIO_SOURCE": "-", **env}
    return subprocess.run([str(VENV_BIN / exe)], env=full, capture_output=True, text=True, timeout=60,
                          check=False)


@pytest.fixture(scope="module")
def bad_files(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    other = d / "other"
    make_certs(other, "localhost")  # another CA's pair: its key is not server.pem's
    garbage = d / "garbage.pem"
    garbage.write_text("not a certificate\n")
    unreadable = d / "unreadable.key"
    unreadable.write_bytes((certs / "server.key").read_bytes())
    unreadable.chmod(0)
    encrypted = d / "encrypted.key"
    subprocess.run(["openssl", "pkey", "-in", str(certs / "server.key"), "-aes256", "-passout", "pass:x",
                    "-out", str(encrypted)], check=True, capture_output=True)
    return {"cert": certs / "server.pem", "key": certs / "server.key", "other_key": other / "server.key",
            "garbage": garbage, "unreadable": unreadable, "encrypted": encrypted, "missing": d / "nope.pem"}


@pytest.mark.parametrize(("env", "variable"), [
    ({"TLS_CERT_FILE": "cert"}, "TLS_KEY_FILE"),
    ({"TLS_KEY_FILE": "key"}, "TLS_CERT_FILE"),
    ({"TLS_CERT_FILE": "missing", "TLS_KEY_FILE": "key"}, "TLS_CERT_FILE"),
    ({"TLS_CERT_FILE": "cert", "TLS_KEY_FILE": "missing"}, "TLS_KEY_FILE"),
    ({"TLS_CERT_FILE": "garbage", "TLS_KEY_FILE": "key"}, "TLS_CERT_FILE"),
    ({"TLS_CERT_FILE": "cert", "TLS_KEY_FILE": "garbage"}, "TLS_KEY_FILE"),
    ({"TLS_CERT_FILE": "cert", "TLS_KEY_FILE": "other_key"}, "TLS_KEY_FILE"),
    ({"TLS_CERT_FILE": "cert", "TLS_KEY_FILE": "encrypted"}, "TLS_KEY_FILE"),
    ({"TLS_CERT_FILE": "cert", "TLS_KEY_FILE": "unreadable"}, "TLS_KEY_FILE"),
    ({"WYOMING_TLS": "1"}, "WYOMING_TLS"),
], ids=["cert-only", "key-only", "cert-missing", "key-missing", "cert-garbage", "key-garbage", "key-mismatch",
        "key-encrypted", "key-unreadable", "wyoming-tls-without-files"])
def test_bad_tls_configuration_exits_78(bad_files: dict[str, Path], env: dict[str, str],
                                        variable: str) -> None:
    if "unreadable" in env.values() and os.geteuid() == 0:
        env = {**env, "TLS_KEY_FILE": "missing"}  # root reads any file: the missing one stands in
    r = run_expecting_failure("stt-server", {k: str(bad_files.get(v, v)) for k, v in env.items()})
    assert r.returncode == 78, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert variable in lines[0], r.stderr


@pytest.mark.parametrize("which", ["missing", "garbage"])
def test_bad_ws_ca_file_exits_78(bad_files: dict[str, Path], which: str) -> None:
    r = run_expecting_failure("stt-worker", {"STT_BACKEND": "ws", "WS_URL": "wss://localhost:9/stt",
                                             "WS_CA_FILE": str(bad_files[which])})
    assert r.returncode == 78, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "WS_CA_FILE" in lines[0], r.stderr


def test_make_certs_keeps_the_ca_and_reissues_the_server_certificate(tmp_path: Path) -> None:
    """Run twice: the same CA, a new server certificate with the new names, signed by it; the
    variables for each side are printed."""
    first = make_certs(tmp_path, "jetson.lan", "192.168.1.20")
    ca = (tmp_path / "ca.pem").read_bytes()
    assert "TLS_CERT_FILE=" in first.stdout
    assert "WS_CA_FILE=" in first.stdout
    assert "WS_URL=wss://" in first.stdout
    second = make_certs(tmp_path, "kitchen.lan")
    assert "keeping the CA" in second.stdout
    assert (tmp_path / "ca.pem").read_bytes() == ca
    text = subprocess.run(["openssl", "x509", "-in", str(tmp_path / "server.pem"), "-noout", "-ext",
                           "subjectAltName"], capture_output=True, text=True, check=True).stdout
    assert "kitchen.lan" in text, text
    assert "jetson.lan" not in text, text
    subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "ca.pem"), str(tmp_path / "server.pem")],
                   check=True, capture_output=True)
    assert oct((tmp_path / "ca.key").stat().st_mode & 0o777) == "0o600"
    # the defaults: this machine's hostname, localhost and 127.0.0.1
    make_certs(tmp_path)
    text = subprocess.run(["openssl", "x509", "-in", str(tmp_path / "server.pem"), "-noout", "-ext",
                           "subjectAltName"], capture_output=True, text=True, check=True).stdout
    assert "localhost" in text, text
    assert "127.0.0.1" in text, text
    assert os.uname().nodename in text, text
