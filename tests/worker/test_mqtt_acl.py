"""The README's Mosquitto ACL (config/mosquitto/stt-bridge.acl), run on a real broker with passwords:
only Home Assistant's user may command a worker; a listener may read its transcripts and nothing
else; the worker itself is granted every subscription it makes."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from harness.procs import Proc, free_port, wait_port
from tests.worker import helpers as h

ACL = Path(__file__).resolve().parents[2] / "config" / "mosquitto" / "stt-bridge.acl"
USERS = {"stt-worker": "w-pass", "homeassistant": "ha-pass", "nodered": "nr-pass"}


@pytest.fixture
def acl_broker() -> Iterator[int]:
    assert shutil.which("mosquitto_passwd"), "mosquitto_passwd is missing: run make setup"
    # not pytest's tmp_path: mosquitto started as root reads its files as the `mosquitto` user
    d = Path(tempfile.mkdtemp(prefix="stt-acl-"))
    passwd = d / "passwd"
    for i, (user, pw) in enumerate(USERS.items()):
        subprocess.run(["mosquitto_passwd", "-b", *([] if i else ["-c"]), str(passwd), user, pw], check=True)
    shutil.copy(ACL, d / "stt-bridge.acl")
    port = free_port()
    (d / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n"
        f"acl_file {d}/stt-bridge.acl\npersistence false\n")
    d.chmod(0o755)
    for f in d.iterdir():
        f.chmod(0o644)
    proc = Proc(["mosquitto", "-c", str(d / "mosquitto.conf")], name="mosquitto-acl")
    wait_port(port, 10, proc)
    yield port
    proc.stop()
    shutil.rmtree(d, ignore_errors=True)


class Client:
    """A logged-in MQTT client that records what it is delivered."""

    def __init__(self, port: int, user: str, subscribe: str | None = None) -> None:
        self.messages: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.c.username_pw_set(user, USERS[user])

        def on_connect(client: mqtt.Client, *_: Any) -> None:
            if subscribe:
                client.subscribe(subscribe, qos=1)
            else:
                ready.set()

        def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
            with self.lock:
                self.messages.append((msg.topic, msg.payload.decode()))

        self.c.on_connect = on_connect
        self.c.on_subscribe = lambda *_: ready.set()
        self.c.on_message = on_message
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert ready.wait(10), f"{user} could not connect"

    def send(self, topic: str, payload: str) -> None:
        self.c.publish(topic, payload, qos=1).wait_for_publish(5)

    def got(self, topic: str) -> list[str]:
        with self.lock:
            return [p for t, p in self.messages if t == topic]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def muted_states(ha: Client) -> list[bool]:
    return [json.loads(p)["muted"] for p in ha.got(f"{h.TOPIC}/state")]


def wait(pred: Any, timeout: float, what: str, w: Proc) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{h.tail(w)}"
        assert w.alive(), h.tail(w)
        time.sleep(0.1)


def test_only_home_assistant_may_command_and_a_listener_reads_transcripts(acl_broker: int) -> None:
    port = acl_broker
    ha = Client(port, "homeassistant", f"{h.BASE}/#")
    nodered = Client(port, "nodered", f"{h.TOPIC}/transcript/final")
    env = h.worker_env(port, "-", MQTT_USERNAME="stt-worker", MQTT_PASSWORD=USERS["stt-worker"])
    w = h.start_worker(env, stdin=subprocess.PIPE)
    try:
        wait(lambda: ha.got(f"{h.TOPIC}/availability")[-1:] == ["online"], 60, "online", w)
        ha.send(f"{h.TOPIC}/mute/set", "ON")
        wait(lambda: muted_states(ha)[-1:] == [True], 15, "muted by Home Assistant", w)
        before = len(muted_states(ha))
        nodered.send(f"{h.TOPIC}/mute/set", "OFF")  # the broker drops it: nodered may not write there
        nodered.send(f"{h.TOPIC}/set", json.dumps({"muted": False}))
        time.sleep(2.0)
        assert muted_states(ha)[before:] == [], "a listener's command reached the worker"
        assert not h.events(w, "unmuted")
        ha.send(f"{h.TOPIC}/set", json.dumps({"muted": False}))  # the JSON command topic is granted too
        wait(lambda: muted_states(ha)[-1:] == [False], 15, "unmuted by Home Assistant", w)
        h.feed_stdin(w, h.speech_pcm(["LJ001-0002"], gap_s=1.3, lead_s=0.6), speed=2.0, close=False)
        wait(lambda: bool(nodered.got(f"{h.TOPIC}/transcript/final")), 60, "a final for the listener", w)
    finally:
        w.stop()
        ha.close()
        nodered.close()
    # (Mosquitto grants a subscription its ACL forbids and then delivers nothing on it, so what the
    # worker may read is shown above by the commands that reached it, not by its SUBACKs)
    assert not h.events(w, "mqtt_refused")
    assert "modern" in json.loads(nodered.got(f"{h.TOPIC}/transcript/final")[0])["text"].lower()
