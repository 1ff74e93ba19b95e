"""Cross-site WebSocket hijacking: a page on another site, open in a browser on the LAN, must not
reach the server through its visitor's browser. The handshake checks ``Origin``: the server's own
page passes, ALLOWED_ORIGINS pass, a client that sends none (not a browser) passes, anything else is
HTTP 403 on every WebSocket path and on Socket.IO."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import socketio
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from harness.procs import start_server
from harness.stt_client import http_get

PATHS = ["/stt", "/ws", "/api/v1/audio/stream/transcribe", "/ws/transcribe"]


@pytest.mark.parametrize("path", PATHS)
def test_a_page_on_another_site_is_refused_before_the_handshake(server, path: str):
    _, port = server
    with pytest.raises(InvalidStatus) as err:
        connect(f"ws://127.0.0.1:{port}{path}", origin="http://evil.example")  # type: ignore[arg-type]
    assert err.value.response.status_code == 403
    assert b"origin_not_allowed" in err.value.response.body
    metrics = http_get(port, "/metrics")[2]
    assert 'code="origin_not_allowed"' in metrics


def test_the_servers_own_page_and_clients_without_an_origin_pass(server):
    _, port = server
    with connect(f"ws://127.0.0.1:{port}/stt", origin=f"http://127.0.0.1:{port}") as ws:  # type: ignore[arg-type]
        assert ws.ping().wait(10)  # the handshake went through and the session answers
    with connect(f"ws://127.0.0.1:{port}/stt") as ws:
        assert ws.ping().wait(10)
    with pytest.raises(InvalidStatus):  # same host, another port: another origin
        connect(f"ws://127.0.0.1:{port}/stt", origin=f"http://127.0.0.1:{port + 1}")  # type: ignore[arg-type]


def test_allowed_origins_are_let_in_on_websocket_and_socketio():
    proc, port = start_server({"ALLOWED_ORIGINS": "http://kiosk.lan:8080, https://app.example",
                               "SOCKETIO_PORT": "0"})
    try:
        with connect(f"ws://127.0.0.1:{port}/ws", origin="https://app.example") as ws:  # type: ignore[arg-type]
            assert ws.ping().wait(10)
        with pytest.raises(InvalidStatus):
            connect(f"ws://127.0.0.1:{port}/ws", origin="https://other.example")  # type: ignore[arg-type]
    finally:
        proc.stop()


def test_socketio_refuses_a_foreign_origin(socketio_port):
    async def attempt(origin: str | None) -> bool:
        c = socketio.AsyncClient()
        try:
            await c.connect(f"http://127.0.0.1:{socketio_port}", transports=["websocket"], wait_timeout=5,
                            headers={"Origin": origin} if origin else {})
        except socketio.exceptions.ConnectionError:
            if c.eio.http is not None:  # the refused client's HTTP session, closed as it is left
                await c.eio.http.close()
            return False
        with contextlib.suppress(Exception):
            await c.disconnect()
        return True

    assert asyncio.run(attempt(None)) is True
    assert asyncio.run(attempt("http://evil.example")) is False


def test_a_bad_allowed_origins_exits_78():
    import subprocess

    from harness.procs import VENV_BIN, free_port

    done = subprocess.run([str(VENV_BIN / "stt-server")], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HOST": "127.0.0.1", "PORT": str(free_port()),
                               "DEVICE": "cpu", "ALLOWED_ORIGINS": "evil.example/path"}, check=False)
    assert done.returncode == 78, done.stderr
    assert "ALLOWED_ORIGINS" in done.stderr
