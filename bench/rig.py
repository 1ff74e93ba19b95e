"""The real parts a run needs, started once and always stopped: a private Mosquitto, one stt-server, the
stt-worker console script, an MQTT subscriber that timestamps every message, and a psutil sampler."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from harness.procs import VENV_BIN, Mosquitto, Proc, start_server
from harness.stt_client import ws_url

BASE_TOPIC = "stt"
# every stream of a capacity level (up to 16) comes from this one host: MAX_SESSIONS_PER_IP above them
BENCH_SESSIONS_PER_IP = 64


class Rig:
    """Mosquitto and stt-server on demand, shared by every measurement of a run."""

    def __init__(self) -> None:
        self._broker: Mosquitto | None = None
        self._server: tuple[Proc, int] | None = None

    @property
    def broker_port(self) -> int:
        if self._broker is None:
            self._broker = Mosquitto()
        return self._broker.port

    @property
    def server_port(self) -> int:
        if self._server is None:
            self._server = start_server({"MAX_SESSIONS_PER_IP": str(BENCH_SESSIONS_PER_IP)})
        return self._server[1]

    @property
    def server_proc(self) -> Proc:
        _ = self.server_port
        assert self._server is not None
        return self._server[0]

    @property
    def server_url(self) -> str:
        return ws_url(self.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server[0].stop()
            self._server = None
        if self._broker is not None:
            self._broker.stop()
            self._broker = None

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_worker(rig: Rig, wav: Path, site: str, backend: str) -> Proc:
    """The real worker console script playing ``wav`` in real time, publishing to the rig's broker."""
    env = {
        "AUDIO_SOURCE": str(wav),
        "AUDIO_REALTIME": "1",
        "MQTT_HOST": "127.0.0.1",
        "MQTT_PORT": str(rig.broker_port),
        "MQTT_BASE_TOPIC": BASE_TOPIC,
        "SITE_ID": site,
        "STT_BACKEND": backend,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "info",
    }
    if backend == "ws":
        env["WS_URL"] = rig.server_url
    return Proc([str(VENV_BIN / "stt-worker")], env=env, name=f"worker-{site}")


# ---- the worker's log ---------------------------------------------------------------------------


def log_events(proc: Proc) -> list[dict[str, Any]]:
    return proc.json_events()


def wall(ts: str) -> float:
    """An ISO timestamp (structlog's, or a final's ``ended_at``) as time.time() seconds."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def event_wall(proc: Proc, name: str) -> float | None:
    for e in log_events(proc):
        if e.get("event") == name and "timestamp" in e:
            return wall(e["timestamp"])
    return None


def wait_event(proc: Proc, name: str, timeout: float) -> float:
    """Wall time of the first ``name`` log line, waiting for it to appear."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = event_wall(proc, name)
        if t is not None:
            return t
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited before {name!r}: {proc.output()[-1500:]}")
        time.sleep(0.05)
    raise TimeoutError(f"no {name!r} from {proc.name} within {timeout} s: {proc.output()[-1500:]}")


# ---- MQTT ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    t: float  # time.time() on arrival
    topic: str
    payload: str

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.payload)
        return out


class Subscriber:
    """Every message under ``topic`` with the wall time it arrived (paho's network thread)."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: list[Message] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{time.time_ns()}")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rc, p: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("MQTT subscription not acknowledged")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        m = Message(time.time(), msg.topic, msg.payload.decode(errors="replace"))
        with self._lock:
            self.messages.append(m)

    def on(self, suffix: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


# ---- CPU and memory -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    t: float  # time.time()
    cpu_s: float  # user + system CPU seconds so far
    rss: int  # bytes


@dataclass
class Sampler:
    """psutil figures of one process every ``interval`` s, on a thread, until ``stop`` or its exit."""

    pid: int
    interval: float = 0.25
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._proc = psutil.Process(self.pid)
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"sampler-{self.pid}")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self._proc.oneshot():
                    c = self._proc.cpu_times()
                    self.samples.append(Sample(time.time(), c.user + c.system, self._proc.memory_info().rss))
            except psutil.Error:
                return
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def window(self, t0: float, t1: float) -> list[Sample]:
        return [s for s in self.samples if t0 <= s.t <= t1]

    def cpu_percent(self, t0: float, t1: float) -> float | None:
        """CPU used between t0 and t1, in % of one core (the samples nearest inside the window)."""
        inside = self.window(t0, t1)
        if len(inside) < 2 or inside[-1].t - inside[0].t <= 0:
            return None
        return 100.0 * (inside[-1].cpu_s - inside[0].cpu_s) / (inside[-1].t - inside[0].t)

    def rss_mb(self, t0: float, t1: float) -> tuple[float | None, float | None]:
        """(last, peak) resident memory in MB within the window."""
        inside = self.window(t0, t1)
        if not inside:
            return None, None
        return inside[-1].rss / 2**20, max(s.rss for s in inside) / 2**20
