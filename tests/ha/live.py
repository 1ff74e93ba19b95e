"""Real parts for the Home Assistant and Hermes tests: the worker console script, a microphone made of
a pipe, and an MQTT client that plays Home Assistant (or a Rhasspy-era automation).

* ``Mic`` writes 16 kHz PCM into the worker's stdin (``AUDIO_SOURCE=-``) at the pace of a real
  microphone: silence, and the speech clips a test asks for, when it asks. A test can thus act while a
  sentence is being spoken (mute mid-utterance, stopListening) as a person would.
* ``Ha`` is a paho-mqtt client recording every message, with waits on conditions.
* ``start_worker`` runs ``.venv/bin/stt-worker`` with its configuration in the environment only.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt

from harness import speech
from harness.procs import VENV_BIN, Proc
from tests.support.mqtt_msg import Msg

SITE = "hasite"
BASE = "stt"
TOPIC = f"{BASE}/{SITE}"
PREFIX = "homeassistant"
WORKER = str(VENV_BIN / "stt-worker")
RATE = 16_000
FRAME_MS = 30

# short, clean sentences of the speech set: LJ001-0002 "in being comparatively modern." (1.9 s),
# LJ001-0008 "has never been surpassed." (1.8 s); a longer one to act in the middle of
SHORT = "LJ001-0002"
SHORT2 = "LJ001-0008"
LONG = "LJ001-0006"  # 5.7 s


# ---- MQTT -------------------------------------------------------------------------------------


class Ha:
    """An MQTT client playing Home Assistant: records everything under ``topics``, publishes commands."""

    def __init__(self, port: int, topics: Iterable[str] = (f"{PREFIX}/#", f"{BASE}/#", "hermes/#"),
                 timeout: float = 10.0) -> None:
        self.messages: list[Msg] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._topics = list(topics)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311,
                                  client_id=f"ha-{os.getpid()}-{time.time_ns()}")
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe([(t, 1) for t in self._topics])
        self.client.on_subscribe = lambda c, u, m, r, p: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            self.close()
            raise TimeoutError(f"could not subscribe on port {port}")

    def _on_message(self, client: mqtt.Client, userdata: Any, m: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Msg(time.monotonic(), m.topic, bytes(m.payload), bool(m.retain)))
            self._cond.notify_all()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def publish(self, topic: str, payload: str | bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    # ---- reading what arrived
    def mark(self) -> int:
        with self._cond:
            return len(self.messages)

    def index(self, msg: Msg) -> int:
        with self._cond:
            return next(i for i, m in enumerate(self.messages) if m is msg)

    def on(self, topic: str, since: int = 0) -> list[Msg]:
        with self._cond:
            return [m for m in self.messages[since:] if m.topic == topic]

    def latest(self, topic: str) -> Msg | None:
        found = self.on(topic)
        return found[-1] if found else None

    def wait(self, pred: Callable[[Msg], bool], timeout: float, since: int = 0, what: str = "") -> Msg:
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages[since:]:
                    if pred(m):
                        return m
                left = end - time.monotonic()
                if left <= 0:
                    seen = sorted({m.topic for m in self.messages[since:]})
                    raise TimeoutError(f"no message {what} within {timeout} s; topics seen: {seen}")
                self._cond.wait(left)

    def wait_topic(self, topic: str, timeout: float, since: int = 0,
                   where: Callable[[Msg], bool] = lambda m: True) -> Msg:
        return self.wait(lambda m: m.topic == topic and where(m), timeout, since, what=f"on {topic}")

    def wait_state(self, timeout: float, since: int = 0, **fields: Any) -> dict[str, Any]:
        """The first retained state (at or after ``since``) whose fields have these values."""
        def ok(m: Msg) -> bool:
            try:
                s = m.json()
            except ValueError:
                return False
            return all(s.get(k) == v for k, v in fields.items())

        return self.wait_topic(f"{TOPIC}/state", timeout, since, where=ok).json()  # type: ignore[no-any-return]

    def configs(self, prefix: str = PREFIX) -> dict[str, dict[str, Any]]:
        """The discovery configs as Home Assistant holds them now: the last payload per topic,
        an empty one deleting the entity."""
        out: dict[str, dict[str, Any]] = {}
        with self._cond:
            msgs = list(self.messages)
        for m in msgs:
            if m.topic.startswith(prefix + "/") and m.topic.endswith("/config"):
                if m.raw:
                    out[m.topic] = m.json()
                else:
                    out.pop(m.topic, None)
        return out


# ---- the microphone -----------------------------------------------------------------------------


class Mic:
    """Feeds the worker's stdin like a microphone: 30 ms frames in real time, silence unless a test
    has asked for speech. ``say`` returns when the speech starts being fed."""

    def __init__(self, stdin: Any) -> None:
        self.stdin = stdin
        self._q: queue.Queue[np.ndarray] = queue.Queue()
        self._stop = threading.Event()
        self.speaking_until = 0.0
        self._thread = threading.Thread(target=self._run, name="mic", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        frame = RATE * FRAME_MS // 1000
        silence = np.zeros(frame, dtype="<i2").tobytes()
        pending = b""
        t0, sent = time.monotonic(), 0
        try:
            while not self._stop.is_set():
                if not pending:
                    try:
                        pcm = self._q.get_nowait()
                        pending = pcm.astype("<i2").tobytes()
                        self.speaking_until = time.monotonic() + len(pcm) / RATE
                    except queue.Empty:
                        pass
                chunk = pending[: frame * 2] if pending else silence
                pending = pending[frame * 2:]
                self.stdin.write(chunk.ljust(frame * 2, b"\0"))
                self.stdin.flush()
                sent += 1
                ahead = t0 + sent * FRAME_MS / 1000 - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
                elif ahead < -0.2:
                    # the worker was not reading (its model loading on a busy machine, the pipe full):
                    # a real microphone's frames of that time are gone, not sent later at full speed,
                    # which would make speech queued now play faster than real time
                    t0 -= ahead
        except (BrokenPipeError, ValueError, OSError):
            return  # the worker has gone

    def say(self, *clips: str, gap_s: float = 0.0) -> float:
        """Queue clips of the speech set (with ``gap_s`` of silence between); returns their length in s."""
        parts = []
        for c in clips:
            parts += [speech.clip(c), np.zeros(int(gap_s * RATE), dtype=np.int16)]
        pcm = np.concatenate(parts)
        self._q.put(pcm)
        return len(pcm) / RATE

    def close(self) -> None:
        """End of input: the worker finishes its last utterance and exits by itself."""
        self._stop.set()
        self._thread.join(5)
        with contextlib.suppress(OSError):
            self.stdin.close()


# ---- the worker ---------------------------------------------------------------------------------


def worker_env(port: int, state_dir: Path, **extra: str) -> dict[str, str]:
    env = {"MQTT_HOST": "127.0.0.1", "MQTT_PORT": str(port), "SITE_ID": SITE, "MQTT_BASE_TOPIC": BASE,
           "STT_BACKEND": "local", "STT_FALLBACK": "local", "LOG_FORMAT": "json", "LOG_LEVEL": "info",
           "HA_DISCOVERY": "1", "HA_DISCOVERY_PREFIX": PREFIX, "HERMES": "0",
           # muted/backend are kept across restarts here, and only here: never in the user's state
           "STATE_DIRECTORY": str(state_dir),
           "WHISPER_MODEL": "", "STT_ENV_FILE": ""}
    env.update(extra)
    return env


class Worker:
    """The real ``stt-worker`` on a microphone made of a pipe (or on a WAV, with ``wav``)."""

    def __init__(self, port: int, state_dir: Path, *, wav: Path | None = None, **env: str) -> None:
        full = worker_env(port, state_dir, **env)
        full["AUDIO_SOURCE"] = str(wav) if wav else "-"
        if wav:
            full.setdefault("AUDIO_REALTIME", "1")
        self.proc = Proc([WORKER], env=full, name="worker", stdin=None if wav else subprocess.PIPE)
        self.mic = Mic(self.proc.p.stdin) if not wav else None

    def say(self, *clips: str, gap_s: float = 0.0) -> float:
        assert self.mic is not None
        return self.mic.say(*clips, gap_s=gap_s)

    def alive(self) -> bool:
        return self.proc.alive()

    def output(self) -> str:
        return self.proc.output()

    def logs(self, event: str) -> list[dict[str, Any]]:
        out = []
        for line in self.output().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("event") == event:
                out.append(rec)
        return out

    def end_input(self, timeout: float = 30.0) -> int:
        """Close the microphone: the worker must exit 0 by itself."""
        if self.mic is not None:
            self.mic.close()
        return self.proc.wait(timeout)

    def stop(self) -> int | None:
        if self.mic is not None:
            self.mic._stop.set()
        return self.proc.stop()


def remove_discovery(port: int, state_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    full.update(worker_env(port, state_dir, **env))
    full["AUDIO_SOURCE"] = "-"
    return subprocess.run([WORKER, "--remove-discovery"], env=full, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, check=False)
