"""A quiet room: the worker's connection sends no audio while nobody speaks, and the server closes such
a session after IDLE_TIMEOUT_S (its idle timer counts audio only, so that hostile clients cannot hold
sessions). For the worker that is no outage: it reconnects at once, never says it lost the server,
never loads its local fallback for it (150 MB on a Pi), and the next sentence goes to the server."""

from __future__ import annotations

import json
import subprocess
import time

import numpy as np

from harness.procs import Mosquitto, start_server
from tests.worker import helpers as h


def test_the_servers_idle_close_is_not_an_outage(broker: Mosquitto) -> None:
    server, port = start_server({"IDLE_TIMEOUT_S": "1.5"})
    col = h.Collector(broker.port)
    env = h.ws_worker_env(broker.port, port,
                          WS_FINAL_TIMEOUT_S="30", WS_CONNECT_TIMEOUT_S="10")
    w = h.start_worker(env, stdin=subprocess.PIPE)
    try:
        h.wait_log(w, "worker_started", 60)
        h.feed_stdin(w, np.zeros(16000 * 6, np.int16), speed=1.0, close=False)  # 6 s of a quiet room
        deadline = time.monotonic() + 15
        # the server closed the quiet session twice, and the worker came back each time
        while len([e for e in server.json_events() if e.get("event") == "session_started"]) < 3:
            assert time.monotonic() < deadline, server.output()[-3000:]
            time.sleep(0.2)
        h.feed_stdin(w, h.speech_pcm(["LJ001-0002"], gap_s=1.3, lead_s=0.3), speed=1.0, close=True)
        assert h.wait_exit(w, 60) == 0, h.tail(w)
    finally:
        w.stop()
        col.close()
        server.stop()
    finals = col.finals()
    assert len(finals) == 1, finals
    assert finals[0]["backend"] == "ws"
    assert not finals[0]["fallback"]
    assert not h.events(w, "model_loaded"), "the local fallback was loaded for a quiet room"
    states = [json.loads(p) for p in col.payloads("/state")]
    assert all(s["backend_connected"] for s in states if s["listening"]), states
    assert not h.events(w, "server_unreachable")
