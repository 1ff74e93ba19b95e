"""Who may read what and how many sessions one address may hold, against the real stt-server:
with STT_TOKEN set, /metrics and the detail of /health need the token (a bare liveness stays open
for health checks); MAX_SESSIONS_PER_IP refuses the next session from an address that holds its
share, on /stt, the seed dialects, Wyoming and Socket.IO alike, counted in /metrics."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import socketio
from stt_server.context import peer_address
from websockets.sync.client import ClientConnection, connect
from wyoming.error import Error
from wyoming.event import async_read_event, async_write_event
from wyoming.info import Describe, Info

from harness.procs import Proc, free_port, start_server
from harness.stt_client import SttSession, http_get, ws_url
from tests.support.server_http import metrics, wait_sessions

TOKEN = "access-t0ken"
PER_IP = 2


@pytest.fixture(scope="module")
def secured() -> Iterator[int]:
    proc, port = start_server({"STT_TOKEN": TOKEN})
    yield port
    proc.stop()


def test_health_without_the_token_is_a_bare_liveness(secured: int) -> None:
    """What a container health check or a probe needs (ok), and nothing about the sessions (when
    someone is talking) or the build."""
    status, ctype, body = http_get(secured, "/health")
    assert status == 200
    assert ctype == "application/json"
    assert json.loads(body) == {"ok": True, "status": "ok"}
    for wrong in ({"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        assert json.loads(http_get(secured, "/health", wrong)[2]) == {"ok": True, "status": "ok"}


@pytest.mark.parametrize("how", ["bearer", "query"])
def test_health_detail_with_the_token(secured: int, how: str) -> None:
    path, headers = ("/health", {"Authorization": f"Bearer {TOKEN}"}) if how == "bearer" \
        else (f"/health?token={TOKEN}", None)
    status, _, body = http_get(secured, path, headers)
    health = json.loads(body)
    assert status == 200
    assert health["ok"] is True
    assert {"model", "device", "compute_type", "active_sessions", "version"} <= health.keys(), health


@pytest.mark.parametrize(("path", "headers"), [
    ("/metrics", None),
    ("/metrics", {"Authorization": "Bearer wrong"}),
    ("/metrics?token=", None),
    (f"/metrics?token={TOKEN}x", None),
])
def test_metrics_without_the_right_token_is_401(secured: int, path: str,
                                                headers: dict[str, str] | None) -> None:
    status, ctype, body = http_get(secured, path, headers)
    assert status == 401, body
    assert ctype == "application/json"
    assert json.loads(body)["error"] == "unauthorized"
    assert "stt_" not in body


def test_metrics_with_the_token_is_200(secured: int) -> None:
    status, ctype, body = http_get(secured, f"/metrics?token={TOKEN}")
    assert status == 200
    assert ctype.startswith("text/plain")
    assert "stt_active_sessions" in body
    assert 'stt_errors_total{dialect="http",code="unauthorized"}' in body  # the refused scrapes
    assert "stt_active_sessions" in metrics(secured, TOKEN)


def test_without_stt_token_health_and_metrics_stay_public(server: tuple[Proc, int]) -> None:
    """No token configured (the default): nothing changes for existing probes and scrapers."""
    _, port = server
    status, _, body = http_get(port, "/health")
    assert status == 200
    assert "model" in json.loads(body)
    assert "active_sessions" in json.loads(body)
    assert http_get(port, "/metrics")[0] == 200


# ---- MAX_SESSIONS_PER_IP ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def capped() -> Iterator[dict[str, int]]:
    ports = {"wyoming": free_port(), "socketio": free_port()}
    proc, port = start_server({"MAX_SESSIONS_PER_IP": str(PER_IP), "MAX_SESSIONS": "10",
                               "WYOMING_PORT": str(ports["wyoming"]),
                               "SOCKETIO_PORT": str(ports["socketio"])})
    yield {"port": port, **ports}
    proc.stop()


def from_address(source: str, port: int, path: str = "/stt") -> ClientConnection:
    """A WebSocket to the server from a chosen loopback source address (127.0.0.0/8 is all this host)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    return connect(ws_url(port, path), sock=sock, proxy=None, open_timeout=10, max_size=None)


def refused(ws: ClientConnection) -> dict[str, Any]:
    """The error a refused connection gets, after which the server closes it with 1013."""
    msg = json.loads(ws.recv(timeout=10))
    with pytest.raises(Exception, match="1013"):
        ws.recv(timeout=10)
    return dict(msg)


def ip_busy(port: int) -> dict[str, float]:
    return {k: v for k, v in metrics(port).items() if 'code="ip_busy"' in k}


def test_the_session_past_the_per_ip_cap_is_refused(capped: dict[str, int]) -> None:
    """PER_IP sessions from one address are served; the next gets error ip_busy and close 1013, and
    is counted; another address is still served; once one closes, the address may open one again."""
    port = capped["port"]
    wait_sessions(port, 0)
    before = ip_busy(port).get('stt_errors_total{dialect="stt",code="ip_busy"}', 0)
    held = [SttSession(ws_url(port)) for _ in range(PER_IP)]
    try:
        for s in held:
            s.init(16000)
            s.wait_for("ready", 10)
        with connect(ws_url(port), proxy=None, open_timeout=10) as extra:
            msg = refused(extra)
        assert msg["type"] == "error", msg
        assert msg["code"] == "ip_busy", msg
        assert "MAX_SESSIONS_PER_IP" in msg["message"]
        assert ip_busy(port)['stt_errors_total{dialect="stt",code="ip_busy"}'] == before + 1
        # another address is not this one's share
        with from_address("127.0.0.2", port) as other:
            other.send(json.dumps({"type": "init", "sample_rate": 16000}))
            assert json.loads(other.recv(timeout=10))["type"] == "ready"
    finally:
        held.pop().close()
    wait_sessions(port, PER_IP - 1)
    again = SttSession(ws_url(port))
    try:
        again.init(16000)
        assert again.wait_for("ready", 10)
    finally:
        again.close()
        for s in held:
            s.close()
    wait_sessions(port, 0)


def test_the_cap_counts_every_dialect(capped: dict[str, int]) -> None:
    """An address holding its share on /stt and seed 001's /ws is refused on seed 003's path, on
    Wyoming (an error event) and on Socket.IO (connect refused), each counted under its dialect."""
    port = capped["port"]
    wait_sessions(port, 0)
    stt = SttSession(ws_url(port))
    handy = connect(ws_url(port, "/ws"), proxy=None, open_timeout=10, legacy=True)
    try:
        stt.init(16000)
        stt.wait_for("ready", 10)
        wait_sessions(port, 2)
        with connect(ws_url(port, "/ws/transcribe"), proxy=None, open_timeout=10) as hybrid:
            assert refused(hybrid)["code"] == "ip_busy"

        async def wyoming() -> Any:
            reader, writer = await asyncio.open_connection("127.0.0.1", capped["wyoming"])
            try:
                await async_write_event(Describe().event(), writer)
                return await asyncio.wait_for(async_read_event(reader), 10)
            finally:
                writer.close()

        ev = asyncio.run(wyoming())
        assert ev is not None, ev
        assert Error.is_type(ev.type), ev
        assert Error.from_event(ev).code == "ip_busy", ev

        async def sio() -> list[Any]:
            c = socketio.AsyncClient(reconnection=False)
            said: list[Any] = []
            c.on("connect_error", said.append)  # the refusal's data
            try:
                await c.connect(f"http://127.0.0.1:{capped['socketio']}", transports=["websocket"],
                                wait_timeout=10)
            except socketio.exceptions.ConnectionError:
                pass
            finally:
                await c.disconnect()
            return said

        said = asyncio.run(sio())
        # python-socketio hands the refusal's dict over as the text of its message
        assert len(said) == 1, said
        assert "ip_busy" in str(said[0]), said
        counted = ip_busy(port)
        for dialect in ("hybrid", "wyoming", "socketio"):
            assert counted.get(f'stt_errors_total{{dialect="{dialect}",code="ip_busy"}}', 0) >= 1, counted
    finally:
        stt.close()
        handy.close()
    wait_sessions(port, 0)

    async def served() -> Any:  # the share is free again: Wyoming answers describe with info
        reader, writer = await asyncio.open_connection("127.0.0.1", capped["wyoming"])
        try:
            await async_write_event(Describe().event(), writer)
            return await asyncio.wait_for(async_read_event(reader), 10)
        finally:
            writer.close()

    ev = asyncio.run(served())
    assert ev is not None, ev
    assert Info.is_type(ev.type), ev


@pytest.mark.parametrize(("peer", "address"), [
    (("192.0.2.7", 5000), "192.0.2.7"),
    (("::ffff:192.0.2.7", 5000, 0, 0), "192.0.2.7"),
    (("::1", 5000, 0, 0), "::1"),
    (("fe80::1%eth0", 5000, 0, 2), "fe80::1"),
    ("192.0.2.7", "192.0.2.7"),
    (None, None),
    ((), None),
])
def test_peer_address(peer: Any, address: str | None) -> None:
    """What a connection counts under: IPv4 clients of a dual-stack listener under their IPv4 address."""
    assert peer_address(peer) == address
