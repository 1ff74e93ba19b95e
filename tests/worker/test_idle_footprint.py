"""What an idle ws worker holds: it streams 16 kHz audio to a server and decodes nothing, so neither the
decoder's libraries (CTranslate2, PyAV, tokenizers) nor numpy (about 20 MB of RSS, bench/RESULTS.md
section 4) may be in it until an outage needs the local fallback or a microphone needs resampling."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from harness.procs import Mosquitto, Proc, start_server
from tests.worker import helpers as h

HEAVY = ("numpy", "ctranslate2", "faster_whisper", "/av/", "av.libs", "tokenizers", "soxr", "onnxruntime")


def mapped(proc: Proc) -> set[str]:
    """The files mapped into the process (shared libraries and extension modules)."""
    out = set()
    for line in Path(f"/proc/{proc.p.pid}/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith("/"):
            out.add(parts[5])
    return out


def test_an_idle_ws_worker_loads_no_decoder_and_no_numpy(broker: Mosquitto) -> None:
    """A ws worker on stdin (16 kHz mono, as a microphone opened at 16 kHz) transcribes a sentence through
    the server and idles: none of the heavy libraries is mapped; the final came from the server."""
    server, port = start_server()
    col = h.Collector(broker.port)
    env = h.ws_worker_env(broker.port, port,
                          WS_FINAL_TIMEOUT_S="30", WS_CONNECT_TIMEOUT_S="10")
    w = h.start_worker(env, stdin=subprocess.PIPE)
    try:
        h.wait_log(w, "worker_started", 60)
        h.say(w, "LJ001-0002")
        (final,) = col.wait_finals(1, 60, w)
        h.feed_stdin(w, np.zeros(16000, np.int16), speed=1.0, close=False)  # idle
        heavy = sorted(f for f in mapped(w) if any(name in f for name in HEAVY))
        h.feed_stdin(w, np.zeros(1600, np.int16), speed=None, close=True)
        assert h.wait_exit(w, 60) == 0, h.tail(w)
    finally:
        w.stop()
        col.close()
        server.stop()
    assert final["backend"] == "ws", final
    assert not final["fallback"], final
    assert heavy == [], heavy
