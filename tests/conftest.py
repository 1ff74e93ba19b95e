"""Fixtures with real parts: a Mosquitto per test, the stt-server once per session, the real model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.procs import Mosquitto, Proc, start_server


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    m = Mosquitto()
    yield m
    m.stop()


@pytest.fixture(scope="session")
def server() -> Iterator[tuple[Proc, int]]:
    """One real stt-server for the tests that only use it (tests that kill a server start their own)."""
    proc, port = start_server()
    yield proc, port
    proc.stop()
