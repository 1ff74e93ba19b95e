"""STT_BACKEND=wyoming against real Wyoming servers: stt-server's own listener (killed mid-sentence,
then back on the same port) and wyoming-faster-whisper, the peer Home Assistant users run today.
Audio goes in through stdin in phases, so the test decides what happens between which sentences."""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile

from stt_core.model import embedded_model_dir

from harness.procs import VENV_BIN, Mosquitto, Proc, free_port, start_server, wait_port
from tests.worker import helpers as h
from tests.worker.test_resilience import SPEED, clip_wer, end_input, kill_mid_second_sentence, sentence


def wyoming_env(broker: Mosquitto, port: int) -> dict[str, str]:
    # failover here comes from a dead server, not from the final timeout: keep that one generous
    return h.worker_env(broker.port, "-", STT_BACKEND="wyoming", WYOMING_URI=f"tcp://127.0.0.1:{port}",
                        STT_FALLBACK="local", RECONNECT_MAX_S="1", WS_CONNECT_TIMEOUT_S="2",
                        WS_FINAL_TIMEOUT_S="15")


def test_our_wyoming_server_killed_mid_sentence_then_restarted(broker: Mosquitto):
    """Sentence 1 goes to stt-server's Wyoming listener (backend wyoming, with partials from its
    transcript chunks). The server is SIGKILLed in the middle of sentence 2: that sentence still gets
    its final from the local engine with the audio kept so far (fallback true), and so does sentence 3;
    the state says server_connected=false meanwhile. The server comes back on the same port: the probe
    finds it (server_connected=true) and sentence 4 is the server's again. Nothing lost, in order."""
    clips = ["LJ001-0008", "LJ001-0004", "LJ001-0002", "LJ001-0011"]
    wport = free_port()
    server, port = start_server({"WYOMING_PORT": str(wport)})
    col = h.Collector(broker.port)
    w = h.start_worker(wyoming_env(broker, wport), stdin=subprocess.PIPE)
    try:
        kill_mid_second_sentence(w, col, server, clips)
        col.wait_for(lambda c: any(json.loads(p)["server_connected"] is False for p in c.payloads("/state")),
                     10, "state server_connected=false", w)

        server, _ = start_server({"WYOMING_PORT": str(wport)}, port=port)
        col.wait_for(lambda c: json.loads(c.payloads("/state")[-1])["server_connected"] is True, 30,
                     "the restarted server found again", w)
        h.feed_stdin(w, sentence(clips[3]), speed=SPEED, close=False)
        col.wait_finals(4, 30, w)
        end_input(w)
    finally:
        w.stop()
        server.stop()
        col.close()
    finals = col.finals()
    assert [(f["backend"], f["fallback"]) for f in finals] == [
        ("wyoming", False), ("local", True), ("local", True), ("wyoming", False)], finals
    for clip, f in zip(clips, finals, strict=True):
        assert clip_wer(clip, f["text"]) <= 0.25, (clip, f["text"])
    partials = [json.loads(p) for p in col.payloads("/transcript/partial")]
    assert any(p["backend"] == "wyoming" for p in partials), "no partial from the server's chunks"
    assert col.errors() == []
    assert h.events(w, "failover"), "no failover was logged"


def start_wyoming_faster_whisper() -> tuple[Proc, int]:
    """The real peer, from this venv (a dev dependency), on the embedded model, offline."""
    port = free_port()
    argv = [str(VENV_BIN / "wyoming-faster-whisper"), "--model", str(embedded_model_dir()),
            "--stt-library", "faster-whisper", "--uri", f"tcp://127.0.0.1:{port}",
            "--data-dir", tempfile.mkdtemp(prefix="wfw-"), "--language", "en", "--device", "cpu",
            "--compute-type", "int8"]
    proc = Proc(argv, env={"HF_HUB_OFFLINE": "1"}, name="wyoming-faster-whisper")
    wait_port(port, 120, proc)
    return proc, port


def test_wyoming_faster_whisper_as_the_server_with_failover(broker: Mosquitto):
    """The same worker against wyoming-faster-whisper: its finals come through (backend wyoming, its
    model's name), with no partials since it sends no transcript chunks; killed, the next sentence
    falls back to the local engine."""
    clips = ["LJ001-0008", "LJ001-0002"]
    peer, port = start_wyoming_faster_whisper()
    col = h.Collector(broker.port)
    w = h.start_worker(wyoming_env(broker, port), stdin=subprocess.PIPE)
    try:
        h.wait_log(w, "worker_started", 60)
        h.feed_stdin(w, sentence(clips[0]), speed=SPEED, close=False)
        col.wait_finals(1, 60, w)
        peer.signal(signal.SIGKILL)
        peer.wait(10)
        h.feed_stdin(w, sentence(clips[1]), speed=SPEED, close=False)
        col.wait_finals(2, 60, w)
        end_input(w)
    finally:
        w.stop()
        peer.stop()
        col.close()
    finals = col.finals()
    assert [(f["backend"], f["fallback"]) for f in finals] == [("wyoming", False), ("local", True)], finals
    assert finals[0]["model"] != "?"
    for clip, f in zip(clips, finals, strict=True):
        assert clip_wer(clip, f["text"]) <= 0.25, (clip, f["text"])
    first = finals[0]["utterance_id"]
    assert not [p for p in col.payloads("/transcript/partial") if json.loads(p)["utterance_id"] == first]
