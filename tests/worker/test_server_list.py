"""WS_URL and WYOMING_URI with several servers, most preferred first: the worker passes over one that is
down without falling back to its local engine, and goes back to the preferred one when it comes up,
between utterances (a switch in the middle of one would fail it over to the local engine, which every
final here says did not happen). Real servers, a real worker fed on stdin, a real Mosquitto."""

from __future__ import annotations

import json
import subprocess

import pytest

from harness.procs import Mosquitto, Proc, free_port, start_server
from tests.worker import helpers as h
from tests.worker.test_resilience import SPEED, clip_wer, end_input, sentence


def server_finals(server: Proc) -> int:
    """Segments the server decoded to a final (its ``final`` log line)."""
    return sum(1 for e in server.json_events() if e.get("event") == "final")


def state(c: h.Collector) -> dict[str, object]:
    payloads = c.payloads("/state")
    return json.loads(payloads[-1]) if payloads else {}


def list_env(broker: Mosquitto, **extra: str) -> dict[str, str]:
    # failover comes from a dead server here, not the final timeout: keep that one generous
    return h.worker_env(broker.port, "-", STT_FALLBACK="local", RECONNECT_MAX_S="1", WS_CONNECT_TIMEOUT_S="2",
                        WS_FINAL_TIMEOUT_S="15", **extra)


def assert_all_remote(finals: list[dict[str, object]], backend: str, clips: list[str]) -> None:
    assert [(f["backend"], f["fallback"]) for f in finals] == [(backend, False)] * len(clips), finals
    for clip, f in zip(clips, finals, strict=True):
        assert clip_wer(clip, str(f["text"])) <= 0.25, (clip, f["text"])


def test_ws_list_passes_over_a_dead_server_and_returns_to_it(broker: Mosquitto):
    """WS_URL=<dead>,<live>. Sentence 1 goes to the live (second) server, no local fallback. The first
    server is then started on the dead port while sentences 2-4 are spoken without a break: the worker
    moves back to it by itself (one ``server_switch``), never in the middle of a sentence. Sentence 5 is
    the first server's. Every final is the server's (backend ws, fallback false), in order, and each
    server decoded its share of the five."""
    clips = ["LJ001-0002", "LJ001-0008", "LJ001-0004", "LJ001-0011", "LJ001-0002"]
    first_port = free_port()
    second, second_port = start_server()
    first: Proc | None = None
    first_url, second_url = f"ws://127.0.0.1:{first_port}/stt", f"ws://127.0.0.1:{second_port}/stt"
    col = h.Collector(broker.port)
    w = h.start_worker(list_env(broker, STT_BACKEND="ws", WS_URL=f"{first_url},{second_url}"),
                       stdin=subprocess.PIPE)
    try:
        connected = h.wait_log(w, "server_connected", 60)
        assert connected[0]["url"] == second_url, connected
        h.wait_log(w, "worker_started", 60)
        h.feed_stdin(w, sentence(clips[0]), speed=SPEED, close=False)
        col.wait_finals(1, 30, w)
        assert state(col)["server_url"] == second_url

        feeder = h.StdinFeeder(w, h.speech_pcm(clips[1:4], gap_s=1.3, lead_s=0.6), speed=SPEED, close=False)
        first, _ = start_server(port=first_port)
        feeder.join(60)
        h.wait_log(w, "server_switch", 60)
        col.wait_for(lambda c: state(c).get("server_url") == first_url, 10, "the state naming server 1", w)
        col.wait_finals(4, 60, w)
        h.feed_stdin(w, sentence(clips[4]), speed=SPEED, close=False)
        col.wait_finals(5, 30, w)
        end_input(w)
    finally:
        w.stop()
        second.stop()
        if first is not None:
            first.stop()
        col.close()
    finals = col.finals()
    assert_all_remote(finals, "ws", clips)
    assert h.events(w, "failover") == [], "an utterance went to the local engine"
    switches = h.events(w, "server_switch")
    assert [(e["url"], e["to"]) for e in switches] == [(second_url, first_url)], switches
    assert col.errors() == []
    assert first is not None
    # sentence 1 on the second server, sentence 5 on the first, the three between split at the switch
    assert server_finals(second) >= 1
    assert server_finals(first) >= 1
    assert server_finals(second) + server_finals(first) == len(clips)


def test_wyoming_list_passes_over_a_dead_server_and_returns_to_it(broker: Mosquitto):
    """The same for WYOMING_URI=<dead>,<live>: each utterance connects to the first server that takes
    it; once the first is up, a describe probe brings the worker back to it for the next utterance."""
    clips = ["LJ001-0008", "LJ001-0002"]
    first_wyoming, second_wyoming = free_port(), free_port()
    second, _ = start_server({"WYOMING_PORT": str(second_wyoming)})
    first: Proc | None = None
    first_uri, second_uri = f"tcp://127.0.0.1:{first_wyoming}", f"tcp://127.0.0.1:{second_wyoming}"
    col = h.Collector(broker.port)
    w = h.start_worker(list_env(broker, STT_BACKEND="wyoming", WYOMING_URI=f"{first_uri},{second_uri}"),
                       stdin=subprocess.PIPE)
    try:
        h.wait_log(w, "worker_started", 60)
        h.feed_stdin(w, sentence(clips[0]), speed=SPEED, close=False)
        col.wait_finals(1, 30, w)
        assert state(col)["server_url"] == second_uri
        first, _ = start_server({"WYOMING_PORT": str(first_wyoming)})
        h.wait_log(w, "server_switch", 60)
        col.wait_for(lambda c: state(c).get("server_url") == first_uri, 10, "the state naming server 1", w)
        h.feed_stdin(w, sentence(clips[1]), speed=SPEED, close=False)
        col.wait_finals(2, 30, w)
        end_input(w)
    finally:
        w.stop()
        second.stop()
        if first is not None:
            first.stop()
        col.close()
    assert_all_remote(col.finals(), "wyoming", clips)
    assert h.events(w, "failover") == []
    assert first is not None
    assert (server_finals(second), server_finals(first)) == (1, 1), "one utterance on each server"


@pytest.mark.parametrize(("env", "variable"), [
    ({"STT_BACKEND": "ws", "WS_URL": "ws://a:9000/stt,http://b:9000/stt"}, "WS_URL"),
    ({"STT_BACKEND": "ws", "WS_URL": "ws://a:9000/stt,"}, "WS_URL"),
    ({"STT_BACKEND": "ws", "WS_URL": "ws://a:9000/stt,ws://a:9000/stt"}, "WS_URL"),
    ({"STT_BACKEND": "wyoming", "WYOMING_URI": "tcp://a:10300,tcp://b"}, "WYOMING_URI"),
])
def test_a_bad_entry_exits_78_naming_the_variable(broker: Mosquitto, env: dict[str, str], variable: str):
    w = h.start_worker(h.worker_env(broker.port, "-", **env))
    try:
        assert h.wait_exit(w, 30) == 78, h.tail(w)
    finally:
        w.stop()
    lines = [line for line in w.output().splitlines() if "configuration error" in line]
    assert len(lines) == 1, w.output()
    assert variable in lines[0], lines
