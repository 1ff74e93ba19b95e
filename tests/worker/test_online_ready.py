"""`online` means ready (issue 12): Home Assistant shows the worker's entities as usable the moment its
availability says `online`, so a command sent at that very moment must be applied. The test does what
a quick user (or an automation on `online`) does: it sends Mute from inside the callback that received
`online`, before anything else can happen, then checks the worker is muted."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt

from harness.procs import Mosquitto
from tests.worker import helpers as h


def test_a_command_sent_the_moment_online_arrives_is_applied(broker: Mosquitto) -> None:
    states: list[dict[str, Any]] = []
    sent = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    subscribed = threading.Event()

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/availability") and msg.payload == b"online" and not msg.retain:
            client.publish(f"{h.TOPIC}/mute/set", "ON", qos=1)  # at once, from paho's own thread
            sent.set()
        elif msg.topic.endswith("/state"):
            states.append(json.loads(msg.payload))

    c.on_connect = lambda client, *_: client.subscribe(
        [(f"{h.TOPIC}/availability", 1), (f"{h.TOPIC}/state", 1)])
    c.on_subscribe = lambda *_: subscribed.set()
    c.on_message = on_message
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    assert subscribed.wait(10)
    # the local backend loads its model after MQTT connects: the window where `online` used to be early
    w = h.start_worker(h.worker_env(broker.port, "-"), stdin=subprocess.PIPE)
    try:
        h.wait_log(w, "worker_started", 60)
        assert sent.wait(15), f"no online\n{h.tail(w)}"
        deadline = time.monotonic() + 15
        while not (states and states[-1]["muted"]):
            assert time.monotonic() < deadline, f"the command was lost: {states}\n{h.tail(w)}"
            time.sleep(0.1)
    finally:
        w.stop()
        c.loop_stop()
        c.disconnect()
    online = h.events(w, "mqtt_online")
    assert online, h.tail(w)
    events = [e["event"] for e in h.log_events(w)]
    # said only after the backend was up (the model loaded): its name is in the first state
    assert events.index("mqtt_online") > events.index("mqtt_connected")
    assert "muted" in events
