"""Transcript subscribers that are not the speaker: the server publishes every session's finals (and,
with MQTT_PARTIALS, partials) to a real Mosquitto in the worker's topic layout, with the session's id
as the site, and POSTs each final to WEBHOOK_URL, retrying a receiver that answers 503."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from stt_core.engine import FinalResult
from stt_server.metrics import Metrics
from stt_server.settings import ServerSettings
from stt_server.transcript import site_of
from stt_server.transcripts import Transcripts
from websockets.sync.client import connect

from harness.procs import Mosquitto, Proc, free_port, start_server
from harness.speech import clip, pick
from harness.stt_client import stream, ws_url
from tests.worker.helpers import Collector


class Hook:
    """A webhook receiver that refuses its first ``fail`` requests with 503, as a receiver that is
    restarting does, and records every body it accepts."""

    def __init__(self, fail: int) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.attempts = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.attempts += 1
                if hook.attempts <= fail:
                    self.send_response(503)
                else:
                    hook.bodies.append({"content_type": self.headers["Content-Type"], **json.loads(body)})
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                """No access log on the test's output."""

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.http.server_address[1]
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()


@pytest.fixture(scope="module")
def rig() -> Iterator[tuple[Proc, int, Mosquitto, Hook]]:
    broker, hook = Mosquitto(), Hook(fail=2)
    proc, port = start_server({"MQTT_HOST": "127.0.0.1", "MQTT_PORT": str(broker.port), "MQTT_PARTIALS": "1",
                               "WEBHOOK_URL": f"http://127.0.0.1:{hook.port}/api/webhook/secret-id"})
    yield proc, port, broker, hook
    proc.stop()
    broker.stop()
    hook.close()


def wait(pred: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_final_goes_to_mqtt_under_the_session_id_and_to_the_webhook_after_retries(rig):
    proc, port, broker, hook = rig
    sub = Collector(broker.port, ["stt/#"])
    try:
        name = pick(1, 3.0, 6.0)[0]
        result = stream(ws_url(port), clip(name), session_id="kitchen")
        wait(lambda: any(m.topic == "stt/kitchen/transcript/final" for m in sub.messages))
        final = next(m.json() for m in sub.messages if m.topic == "stt/kitchen/transcript/final")
        assert final["text"] == result.final["text"]
        assert (final["site_id"], final["dialect"], final["reason"]) == ("kitchen", "stt", "end")
        assert final["audio_s"] > 1
        assert any(m.topic == "stt/kitchen/transcript/partial" for m in sub.messages)
        online = [m for m in sub.messages if m.topic == "stt/stt-server/availability"]
        assert online[-1].payload == "online"
        assert online[-1].retain
        wait(lambda: hook.bodies)
        assert hook.attempts == 3  # two 503s, then delivered
        body = hook.bodies[0]
        assert body.pop("content_type") == "application/json"
        assert body == final
        assert "secret-id" not in proc.output()  # the webhook id is a secret: not in the log
    finally:
        sub.close()


def test_a_seed_001_session_is_published_under_a_site_of_its_own(rig):
    """A dialect without a session id gets one per connection, the same for all its finals."""
    _, port, broker, _ = rig
    sub = Collector(broker.port, ["stt/+/transcript/final"])
    try:
        silence = np.zeros(16000, np.int16)
        pcm = np.concatenate([silence, clip(pick(1, 2.0, 5.0)[0]), silence, silence])
        with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            for i in range(0, len(pcm), 3200):
                ws.send(pcm[i:i + 3200].tobytes())
            final = json.loads(next(m for m in iter(lambda: ws.recv(timeout=30), None)
                                    if json.loads(m)["type"] == "final"))
        wait(lambda: sub.messages)
        published = sub.messages[0]
        assert published.topic.startswith("stt/handy-")
        assert published.json()["text"] == final["text"]
    finally:
        sub.close()


def test_the_server_says_offline_when_it_stops_and_a_broker_outage_costs_no_session():
    """Availability goes offline on a clean stop; with the broker down the session is served."""
    broker = Mosquitto()
    proc, port = start_server({"MQTT_HOST": "127.0.0.1", "MQTT_PORT": str(broker.port)})
    try:
        sub = Collector(broker.port, ["stt/stt-server/availability"])
        wait(lambda: [m.payload for m in sub.messages] == ["online"])
        broker.stop()
        result = stream(ws_url(port), clip(pick(1, 1.5, 4.0)[0]), speed=None)
        assert result.final["text"]
        broker.start()
        sub.close()
        sub = Collector(broker.port, ["stt/stt-server/availability"])
        wait(lambda: [m.payload for m in sub.messages][-1:] == ["online"])
        proc.stop()
        wait(lambda: [m.payload for m in sub.messages][-1:] == ["offline"])
        sub.close()
    finally:
        proc.stop()
        broker.stop()


def test_an_unreachable_webhook_never_holds_a_session_up():
    """``final`` only queues; a receiver that is not there costs the sink its retries, counted."""
    dead = free_port()
    settings = ServerSettings(webhook_url=f"http://127.0.0.1:{dead}/hook", webhook_retries=1,
                              webhook_timeout_s=1.0)

    async def run() -> tuple[int, Metrics]:
        metrics = Metrics()
        t = Transcripts(settings, metrics)
        await t.start()
        for i in range(50):
            t.final("stt", "s1", FinalResult(f"words {i}", 0.9, 1000, "en", 10), i, "end")
        # no await since: every final is on the sink's queue, none has touched the network
        queued = t.sinks[0].queue.qsize()  # type: ignore[attr-defined]
        await t.close()
        return queued, metrics

    queued, metrics = asyncio.run(run())
    assert queued == 50
    assert metrics.errors[("stt", "webhook_failed")] >= 1


def test_a_site_is_one_topic_level_whatever_a_client_calls_itself():
    assert site_of("kitchen") == "kitchen"
    assert site_of("a/b+c#d e") == "a_b_c_d_e"
    assert site_of("") == "_"
    assert len(site_of("x" * 500)) == 64
