"""Fixtures of the Home Assistant / Hermes tests: workers and HA clients that are always cleaned up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.procs import Mosquitto
from tests.ha.live import Ha, Worker


@pytest.fixture
def start_worker(broker: Mosquitto, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Starts the real stt-worker against the test's broker (state kept in this test's tmp dir);
    every worker started is stopped at the end, its output shown if the test failed."""
    started: list[Worker] = []

    def start(**env: Any) -> Worker:
        w = Worker(broker.port, tmp_path / "state", **env)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()
        # captured, so shown only when the test failed
        print(f"---- worker output (exit {w.proc.p.returncode}) ----\n{w.output()[-6000:]}")


@pytest.fixture
def ha(broker: Mosquitto) -> Iterator[Ha]:
    """Home Assistant's side of the broker: subscribed before the worker starts."""
    client = Ha(broker.port)
    yield client
    client.close()
