"""stt-worker when things go wrong around it: killed, its server killed, stalled or restarted, its
broker restarted, no fallback allowed, stopped mid-sentence. Real processes throughout; audio goes in
through stdin (AUDIO_SOURCE=-) in phases, so the test decides what happens between which sentences."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np

from harness import speech
from harness.procs import Mosquitto, Proc, free_port, start_server
from tests.worker import helpers as h

SPEED = 2.0  # stdin is fed at twice real time: the server allows 400 frames/s, this is 67


def sentence(clip: str, lead_s: float = 0.6, gap_s: float = 1.3) -> np.ndarray:
    return h.speech_pcm([clip], gap_s=gap_s, lead_s=lead_s)


def ws_env(broker: Mosquitto, port: int, **extra: str) -> dict[str, str]:
    # Failover here comes from a dead or refusing server, not from the final timeout: keep that one
    # generous so a slow decode on a loaded core is not mistaken for an outage.
    extra = {"WS_FINAL_TIMEOUT_S": "15", **extra}
    return h.ws_worker_env(broker.port, port,
                           STT_FALLBACK="local", RECONNECT_MAX_S="1", WS_CONNECT_TIMEOUT_S="2", **extra)


def end_input(w: Proc, timeout: float = 60) -> None:
    """Close stdin: the worker finishes what it heard and exits 0."""
    assert w.p.stdin is not None
    w.p.stdin.close()
    assert h.wait_exit(w, timeout) == 0, h.tail(w)


def sentences_ended(c: h.Collector) -> int:
    """speech=OFF after speech=ON (the OFF announced at start is nobody's sentence)."""
    flags = c.payloads("/speech")
    return flags[flags.index("ON"):].count("OFF") if "ON" in flags else 0


def clip_wer(clip: str, text: str) -> float:
    return speech.wer([(speech.refs()[clip], text)])


def kill_mid_second_sentence(w: Proc, col: h.Collector, server: Proc, clips: list[str]) -> None:
    """Sentence 1 is heard and gets its final; the server is SIGKILLed in the middle of sentence 2;
    sentence 3 follows while it is away; returns once all three have their finals."""
    h.wait_log(w, "worker_started", 60)
    h.feed_stdin(w, sentence(clips[0]), speed=SPEED, close=False)
    col.wait_finals(1, 30, w)
    feeder = h.StdinFeeder(w, sentence(clips[1]), speed=SPEED, close=False)
    col.wait_for(lambda c: c.payloads("/speech").count("ON") >= 2, 30, "sentence 2 under way", w)
    time.sleep(0.5)  # well inside the sentence, which lasts 2.6 s at SPEED=2
    server.signal(signal.SIGKILL)
    feeder.join(30)
    h.feed_stdin(w, sentence(clips[2]), speed=SPEED, close=False)
    col.wait_finals(3, 60, w)


def test_kill_9_leaves_the_last_will_offline_retained(broker: Mosquitto):
    """SIGKILL gives the worker no chance to say goodbye: the broker publishes its Last Will, so the
    availability topic goes to `offline`, retained, and a subscriber arriving later is told so."""
    col = h.Collector(broker.port)
    w = h.start_worker(h.worker_env(broker.port, "-"), stdin=subprocess.PIPE)
    try:
        col.wait_for(lambda c: c.payloads("/availability")[-1:] == ["online"], 60, "online", w)
        assert h.retained(broker.port)[f"{h.TOPIC}/availability"].payload == "online"
        w.signal(signal.SIGKILL)
        assert w.wait(10) == -signal.SIGKILL
        col.wait_for(lambda c: c.payloads("/availability")[-1:] == ["offline"], 10, "the Last Will")
    finally:
        w.stop()
        col.close()
    assert h.events(w, "worker_stopping") == [], "the worker was not killed outright"
    assert h.retained(broker.port)[f"{h.TOPIC}/availability"].payload == "offline"


def test_server_killed_mid_sentence_then_restarted(broker: Mosquitto):
    """STT_BACKEND=ws with STT_FALLBACK=local. Sentence 1 goes to the server (backend ws). The server is
    SIGKILLed in the middle of sentence 2: that sentence still gets its final, from the local engine
    with the audio kept so far (backend local, fallback true), and so does sentence 3, spoken while the
    server is away; the state says backend_connected=false meanwhile. The server comes back on the same
    port: the worker reconnects by itself (state backend_connected=true) and sentence 4 is the server's
    again. Nothing is lost, nothing out of order, no error event."""
    clips = ["LJ001-0008", "LJ001-0004", "LJ001-0002", "LJ001-0011"]
    server, port = start_server()
    col = h.Collector(broker.port)
    w = h.start_worker(ws_env(broker, port), stdin=subprocess.PIPE)
    try:
        kill_mid_second_sentence(w, col, server, clips)
        col.wait_for(lambda c: any(not json.loads(p)["backend_connected"] for p in c.payloads("/state")), 10,
                     "state backend_connected=false", w)

        server, _ = start_server(port=port)
        col.wait_for(lambda c: json.loads(c.payloads("/state")[-1])["backend_connected"] is True, 30,
                     "reconnection to the restarted server", w)
        h.feed_stdin(w, sentence(clips[3]), speed=SPEED, close=False)
        col.wait_finals(4, 30, w)
        end_input(w)
    finally:
        w.stop()
        server.stop()
        col.close()
    finals = col.finals()
    assert [(f["backend"], f["fallback"]) for f in finals] == [
        ("ws", False), ("local", True), ("local", True), ("ws", False)], finals
    h.assert_transcribed(clips, finals)
    for clip, f in zip(clips, finals, strict=True):
        assert clip_wer(clip, f["text"]) <= 0.25, (clip, f["text"])
    assert col.errors() == []
    assert h.events(w, "failover"), "no failover was logged"


def test_a_stalled_server_gets_each_sentence_as_its_own_segment(broker: Mosquitto):
    """The server is frozen (SIGSTOP) during sentence 1 and thawed only after sentence 3 has ended, so
    finals lag behind speech by several sentences. Each sentence must still reach the server as its own
    segment: three finals, all from the server (backend ws, no fallback), each with its own sentence's
    words, none with the next one's appended."""
    clips = ["LJ001-0004", "LJ001-0002", "LJ001-0008"]
    server, port = start_server()
    col = h.Collector(broker.port)
    w = h.start_worker(ws_env(broker, port, WS_FINAL_TIMEOUT_S="20"), stdin=subprocess.PIPE)
    try:
        h.wait_log(w, "server_connected", 60)
        feeder = h.StdinFeeder(w, h.speech_pcm(clips, gap_s=1.3, lead_s=0.6), speed=SPEED, close=False)
        col.wait_for(lambda c: "ON" in c.payloads("/speech"), 30, "sentence 1 under way", w)
        time.sleep(0.4)  # sentence 1 lasts 2.6 s at SPEED=2: freeze well before its end
        server.signal(signal.SIGSTOP)
        try:
            col.wait_for(lambda c: sentences_ended(c) >= 3, 30, "three sentences spoken", w)
            assert col.finals() == [], "a final came from a frozen server"
        finally:
            server.signal(signal.SIGCONT)
        feeder.join(30)
        col.wait_finals(3, 30, w)
        end_input(w)
    finally:
        w.stop()
        server.stop()
        col.close()
    finals = col.finals()
    assert [(f["backend"], f["fallback"]) for f in finals] == [("ws", False)] * 3, finals
    for clip, f in zip(clips, finals, strict=True):
        assert clip_wer(clip, f["text"]) <= 0.25, (clip, f["text"])


def test_broker_restart_loses_no_final_and_keeps_the_order():
    """The broker is stopped right after sentence 1's final; sentences 2 and 3 are spoken and decoded
    while it is away; it comes back on the same port; sentence 4 follows. Every final reaches the
    broker exactly in the order spoken (duplicates, which QoS 1 allows, aside), with the right text,
    and the availability topic is `online` again after the reconnection."""
    clips = ["LJ001-0002", "LJ001-0008", "LJ001-0004", "LJ001-0011"]
    broker = Mosquitto(persistent=True)
    col = h.Collector(broker.port, client_id=f"collector-{time.monotonic_ns()}", persistent=True)
    w = h.start_worker(h.worker_env(broker.port, "-"), stdin=subprocess.PIPE)
    try:
        h.wait_log(w, "worker_started", 60)
        h.feed_stdin(w, sentence(clips[0]), speed=SPEED, close=False)
        col.wait_finals(1, 30, w)
        broker.stop()
        h.feed_stdin(w, h.speech_pcm(clips[1:3], gap_s=1.3, lead_s=0.6), speed=SPEED, close=False)
        h.wait_log(w, "utterance", 30, n=3)  # both decoded while the broker is away: queued
        broker.start()
        h.feed_stdin(w, sentence(clips[3]), speed=SPEED, close=False)
        # paho backs off while the broker is away (up to 20-30 s between attempts): allow for it
        col.wait_for(lambda c: len({f["utterance_id"] for f in c.finals()}) >= 4, 120, "4 distinct finals", w)
        col.wait_for(lambda c: c.payloads("/availability")[-1:] == ["online"], 10, "online again", w)
        end_input(w)
    finally:
        w.stop()
        col.close()
        broker.stop()
    assert h.events(w, "mqtt_disconnected"), "the worker never noticed the broker going away"
    spoken = [e["utterance_id"] for e in h.events(w, "utterance")]
    received: list[str] = []
    texts: dict[str, str] = {}
    for f in col.finals():
        if f["utterance_id"] not in texts:
            received.append(f["utterance_id"])
            texts[f["utterance_id"]] = f["text"]
    assert received == spoken, f"published {received}, spoken {spoken}"
    for clip, uid in zip(clips, received, strict=True):
        assert clip_wer(clip, texts[uid]) <= 0.25, (clip, texts[uid])


def test_no_fallback_and_no_server_every_sentence_becomes_an_error_event(broker: Mosquitto, tmp_path: Path):
    """STT_FALLBACK=none and nothing listening at WS_URL: no final can be made, and none of the three
    sentences is dropped silently: each is published on <base>/<site>/error with code
    backend_unavailable, its utterance id, site and audio length. The worker still runs to the end of
    the file and exits 0; the state says backend_connected=false."""
    ids = [*h.SHORT, "LJ001-0004"]
    wav = h.speech_wav(tmp_path / "three.wav", ids)
    col = h.Collector(broker.port)
    env = h.worker_env(broker.port, wav, STT_BACKEND="ws", STT_FALLBACK="none",
                       WS_URL=f"ws://127.0.0.1:{free_port()}/stt", WS_CONNECT_TIMEOUT_S="1")
    w = h.start_worker(env)
    try:
        assert h.wait_exit(w, 60) == 0, h.tail(w)
    finally:
        w.stop()
    time.sleep(0.3)
    col.close()
    errors = col.errors()
    assert col.finals() == []
    assert len(ids) <= len(errors) <= 2 * len(ids), errors
    speech_on = col.payloads("/speech").count("ON")
    assert len(errors) == speech_on, f"{speech_on} utterances heard, {len(errors)} reported"
    for e in errors:
        assert e["code"] == "backend_unavailable", e
        assert e["site_id"] == h.SITE, e
        assert e["utterance_id"], e
        assert e["audio_s"] > 0.5, e
        assert e["message"], e
    assert len({e["utterance_id"] for e in errors}) == len(errors)
    states = [json.loads(p) for p in col.payloads("/state")]
    assert states, states
    assert not any(s["backend_connected"] for s in states), states


def test_sigterm_mid_sentence_publishes_its_final_then_offline(broker: Mosquitto):
    """SIGTERM while a sentence is being spoken: the worker ends that utterance where it is, publishes
    its final (the words heard so far), then `offline` (retained), and exits 0 within 5 s."""
    clip = "LJ001-0004"
    col = h.Collector(broker.port)
    w = h.start_worker(h.worker_env(broker.port, "-"), stdin=subprocess.PIPE)
    feeder = None
    try:
        h.wait_log(w, "worker_started", 60)
        feeder = h.StdinFeeder(w, sentence(clip, gap_s=3.0), speed=1.0, close=False)
        col.wait_for(lambda c: "ON" in c.payloads("/speech"), 30, "speech", w)
        time.sleep(2.0)  # under half of the 5 s sentence, leaving room for a late ON
        assert col.finals() == []
        t0 = time.monotonic()
        w.signal(signal.SIGTERM)
        rc = w.wait(10)
        took = time.monotonic() - t0
    finally:
        if feeder is not None:
            feeder.cancel()
        w.stop()
    time.sleep(0.3)
    col.close()
    assert rc == 0, (rc, took, h.tail(w))
    assert took <= 5.0, (rc, took, h.tail(w))
    (final,) = col.finals()
    ref = speech.normalise(speech.refs()[clip]).split()
    words = speech.normalise(final["text"]).split()
    assert 2 <= len(words) < len(ref), final["text"]
    assert clip_wer(clip, final["text"]) > 0.2, "the whole sentence: SIGTERM came too late to test anything"
    assert speech.wer([(" ".join(ref[:len(words)]), " ".join(words))]) <= 0.35, final["text"]
    assert [e["end"] for e in h.events(w, "utterance")] == ["flush"]
    assert col.payloads("/availability")[-1] == "offline"
    after = h.retained(broker.port)
    assert after[f"{h.TOPIC}/availability"].payload == "offline"
    assert after[f"{h.TOPIC}/speech"].payload == "OFF"
