"""Long utterances reach MQTT whole (issue 12): cut by the worker's own gate at VAD_MAX_UTTERANCE_S,
every piece is published in order and names the piece it continues; cut by the server at
MAX_SEGMENT_S, the pieces' texts come back joined in the utterance's one final."""

from __future__ import annotations

import itertools
import subprocess

from harness.procs import Mosquitto, start_server
from tests.worker import helpers as h
from tests.worker.test_resilience import SPEED

# three sentences with 0.2 s between them (under the 600 ms hangover): one utterance of about 12 s
CLIPS = ["LJ001-0004", "LJ001-0011", "LJ001-0006"]


def speak(w: h.Proc) -> None:
    h.wait_log(w, "worker_started", 60)
    h.feed_stdin(w, h.speech_pcm(CLIPS, gap_s=0.2, lead_s=0.6, tail_s=1.5), speed=SPEED, close=True)
    assert h.wait_exit(w, 120) == 0, h.tail(w)


def test_the_gates_cut_publishes_every_piece_in_order_as_a_continuation(broker: Mosquitto) -> None:
    col = h.Collector(broker.port)
    w = h.start_worker(h.worker_env(broker.port, "-", VAD_MAX_UTTERANCE_S="4"), stdin=subprocess.PIPE)
    try:
        speak(w)
    finally:
        w.stop()
        col.close()
    finals = col.finals()
    assert len(finals) >= 3, [f["text"] for f in finals]
    assert finals[0]["continues"] is None
    assert finals[0]["part"] == 1
    for before, after in itertools.pairwise(finals):
        assert before["end"] == "max_length", finals
        assert after["continues"] == before["utterance_id"], finals
        assert after["part"] == before["part"] + 1
    # (the last piece may say max_length too: when the speech ends right at a cut, the piece opened
    # after it hears only silence and is discarded)
    # nothing said is lost at the cuts: the pieces together are the sentences (words split at a cut
    # may come out as two, hence the looser bound)
    assert h.wer_of(CLIPS, [f["text"] for f in finals]) <= 0.3, [f["text"] for f in finals]


def test_the_servers_cut_comes_back_joined_in_one_final(broker: Mosquitto) -> None:
    server, port = start_server({"MAX_SEGMENT_S": "3"})
    col = h.Collector(broker.port)
    env = h.ws_worker_env(broker.port, port,
                          WS_FINAL_TIMEOUT_S="30", WS_CONNECT_TIMEOUT_S="10")
    w = h.start_worker(env, stdin=subprocess.PIPE)
    try:
        speak(w)
    finally:
        w.stop()
        col.close()
        server.stop()
    finals = col.finals()
    assert len(finals) == 1, [f["text"] for f in finals]
    assert finals[0]["backend"] == "ws"
    assert not finals[0]["fallback"], "the server's cut was taken for a failure"
    assert "max_segment" in server.output(), "the server did not cut the segment"
    assert h.wer_of(CLIPS, [finals[0]["text"]]) <= 0.3, finals[0]["text"]
