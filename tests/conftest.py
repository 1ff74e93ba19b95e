"""Fixtures with real parts: a Mosquitto per test, the stt-server once per session, the real model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.procs import Mosquitto, Proc, free_port, start_server

_ports: dict[str, int] = {}


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    m = Mosquitto()
    yield m
    m.stop()


@pytest.fixture(scope="session")
def server() -> Iterator[tuple[Proc, int]]:
    """One real stt-server for the tests that only use it (tests that kill a server start their own),
    with its Wyoming listener and its Socket.IO server on free ports (``wyoming_port``,
    ``socketio_port``)."""
    _ports["wyoming"], _ports["socketio"] = free_port(), free_port()
    proc, port = start_server({"WYOMING_PORT": str(_ports["wyoming"]),
                               "SOCKETIO_PORT": str(_ports["socketio"])})
    yield proc, port
    proc.stop()


@pytest.fixture(scope="session")
def wyoming_port(server: tuple[Proc, int]) -> int:
    """The session server's Wyoming port."""
    return _ports["wyoming"]


@pytest.fixture(scope="session")
def socketio_port(server: tuple[Proc, int]) -> int:
    """The session server's Socket.IO port (seed 004)."""
    return _ports["socketio"]
