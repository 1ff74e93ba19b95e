"""The local fallback lives for an outage, not for ever: loaded when the server goes away, unloaded
FALLBACK_KEEP_S after the server is back and nothing is left on it, and loaded again for the next outage.
A worker that kept it would carry its model for good, and each outage's heap fragments on top (the soak's
drift, bench/RESULTS.md); nothing said may be lost on the way. The libraries the model needed
(CTranslate2, PyAV, tokenizers) stay mapped once imported: what goes back is the model and its buffers."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np

from harness.procs import Mosquitto, Proc, start_server
from tests.worker import helpers as h

CLIPS = ["LJ001-0002", "LJ001-0008", "LJ001-0011"]


def rss_mb(proc: Proc) -> float:
    for line in Path(f"/proc/{proc.p.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


# tiny.en's weights in memory (int8: 39 M parameters): what a release must give back at the least
WEIGHTS_MB = 30.0


def settle_below(w: Proc, ceiling: float, timeout: float = 30.0) -> float:
    """The worker's RSS once it has fallen to ``ceiling`` (the release's stop and trim run in the
    background), or as it is at the timeout."""
    deadline = time.monotonic() + timeout
    while (rss := rss_mb(w)) > ceiling and time.monotonic() < deadline:
        time.sleep(0.5)
    return rss


def test_the_fallback_is_unloaded_after_the_outage_and_loaded_again_for_the_next(broker: Mosquitto) -> None:
    """Outage 1: the utterance is transcribed by the fallback. The server returns: FALLBACK_KEEP_S later
    the fallback is released and the model's memory goes back to the system. Outage 2: the model is
    loaded again and transcribes; released again, the worker holds no more than after the first release
    (a model or heap kept per outage would add tens of MB). The server returns: the next final is the
    server's. Every final arrives, in order, once."""
    server, port = start_server()
    col = h.Collector(broker.port)
    env = h.ws_worker_env(broker.port, port,
                          FALLBACK_KEEP_S="1", RECONNECT_MAX_S="1", WS_CONNECT_TIMEOUT_S="10")
    w = h.start_worker(env, stdin=subprocess.PIPE)
    try:
        h.wait_log(w, "worker_started", 60)
        h.wait_log(w, "server_connected", 30)
        loaded, released = [], []
        for outage, clip in enumerate(CLIPS[:2], start=1):
            server.stop()
            h.say(w, clip)
            col.wait_finals(outage, 90, w)
            loaded.append(rss_mb(w))
            server, _ = start_server(port=port)
            h.wait_log(w, "fallback_released", 60, n=outage)
            released.append(settle_below(w, loaded[-1] - WEIGHTS_MB))
        h.say(w, CLIPS[2])  # the server's again
        col.wait_finals(3, 60, w)
        h.feed_stdin(w, np.zeros(16000, np.int16), speed=None, close=True)
        assert h.wait_exit(w, 60) == 0, h.tail(w)
    finally:
        w.stop()
        col.close()
        server.stop()
    finals = col.finals()
    assert [f["backend"] for f in finals] == ["local", "local", "ws"], finals
    assert [f["fallback"] for f in finals] == [True, True, False], finals
    assert len({f["utterance_id"] for f in finals}) == 3
    h.assert_transcribed(CLIPS, finals)
    assert len(h.events(w, "local_models")) == 2, "the fallback was not loaded again for outage 2"
    for was, now in zip(loaded, released, strict=True):
        assert now <= was - WEIGHTS_MB, f"the release gave back {was - now:.0f} MB: {loaded} -> {released}"
    assert released[1] <= released[0] + 20, f"memory kept per outage: {loaded} -> {released}"
