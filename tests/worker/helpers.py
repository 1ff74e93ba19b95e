"""Shared parts of the stt-worker tests: the real console script, a real MQTT subscriber, the speech set.

Everything here drives real processes: ``stt-worker`` from the venv, a Mosquitto the test started, the
real stt-server. The worker is configured through its environment only, as an operator would.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import wave
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt

from harness import speech
from harness.pacing import paced
from harness.procs import VENV_BIN, Proc
from harness.stt_client import pcm_frames
from tests.support.mqtt_msg import Msg

SITE = "testsite"
BASE = "stt"
TOPIC = f"{BASE}/{SITE}"
WORKER = str(VENV_BIN / "stt-worker")
RATE = 16_000

# short, clean sentences from the speech set (LJ001-0002 "in being comparatively modern.", ...)
SHORT = ["LJ001-0002", "LJ001-0008"]
MEDIUM = ["LJ001-0004", "LJ001-0011", "LJ001-0006"]

# the worker's final payload, as documented
FINAL_FIELDS = {"site_id", "utterance_id", "text", "confidence", "language", "backend", "model", "audio_s",
                "latency_ms", "started_at", "ended_at"}


# ---- MQTT ---------------------------------------------------------------------------------------


class Collector:
    """A paho-mqtt 2.x subscriber recording every message (arrival time, topic, payload, retain flag)."""

    def __init__(self, port: int, topics: Iterable[str] = (f"{BASE}/#",), *, client_id: str | None = None,
                 persistent: bool = False, timeout: float = 10.0) -> None:
        """``persistent``: a session the broker keeps while this client is away (needs ``client_id``),
        so QoS 1 messages published meanwhile are delivered on reconnection."""
        self.messages: list[Msg] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._topics = list(topics)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or "",
                                  protocol=mqtt.MQTTv311, clean_session=not persistent)
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            self.close()
            raise TimeoutError(f"could not subscribe to the broker on port {port}")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe([(t, 1) for t in self._topics])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        m = Msg(time.monotonic(), msg.topic, bytes(msg.payload), bool(msg.retain), bool(msg.dup))
        with self._cond:
            self.messages.append(m)
            self._cond.notify_all()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    # ---- reading ------------------------------------------------------------------------------

    def on(self, suffix: str) -> list[Msg]:
        """Messages on ``<base>/<site><suffix>``, in arrival order."""
        with self._cond:
            return [m for m in self.messages if m.topic == TOPIC + suffix]

    def payloads(self, suffix: str) -> list[str]:
        return [m.payload for m in self.on(suffix)]

    def finals(self) -> list[dict[str, Any]]:
        return [m.json() for m in self.on("/transcript/final")]

    def errors(self) -> list[dict[str, Any]]:
        return [m.json() for m in self.on("/error")]

    def wait_for(self, pred: Callable[[Collector], bool], timeout: float, what: str = "condition",
                 proc: Proc | None = None) -> None:
        """Wait until ``pred(self)`` holds; a worker that died meanwhile fails at once with its log."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    log = f"\nworker log:\n{tail(proc)}" if proc else ""
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}; "
                                         f"topics seen: {self.summary()}{log}")
                if proc is not None and not proc.alive() and not pred(self):
                    self._cond.wait(0.5)  # the last messages may still be in flight
                    if pred(self):
                        return
                    raise AssertionError(f"worker exited ({proc.p.returncode}) before {what}; "
                                         f"topics seen: {self.summary()}\nworker log:\n{tail(proc)}")
                self._cond.wait(min(left, 0.2))

    def wait_finals(self, n: int, timeout: float, proc: Proc | None = None) -> list[dict[str, Any]]:
        self.wait_for(lambda c: len(c.on("/transcript/final")) >= n, timeout, f"{n} finals", proc)
        return self.finals()

    def summary(self) -> dict[str, int]:
        with self._cond:
            out: dict[str, int] = {}
            for m in self.messages:
                out[m.topic] = out.get(m.topic, 0) + 1
            return out


def retained(port: int, topic_filter: str = f"{TOPIC}/#", settle: float = 1.0) -> dict[str, Msg]:
    """What a NEW subscriber is told on subscribing: the broker's retained messages, topic -> message."""
    c = Collector(port, [topic_filter])
    time.sleep(settle)
    c.close()
    return {m.topic: m for m in c.messages if m.retain}


# ---- the worker -----------------------------------------------------------------------------------


def worker_env(broker_port: int, source: str | Path, **extra: str) -> dict[str, str]:
    """The worker's environment: source, broker, site, JSON logs, the embedded model, no surprises
    inherited from the shell (an exported WHISPER_MODEL or STT_BACKEND)."""
    env = {
        "AUDIO_SOURCE": str(source),
        "MQTT_HOST": "127.0.0.1",
        "MQTT_PORT": str(broker_port),
        "MQTT_BASE_TOPIC": BASE,
        "SITE_ID": SITE,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "info",
        "STT_BACKEND": "local",
        "STT_FALLBACK": "local",
        "WHISPER_MODEL": "",
        "HF_HUB_OFFLINE": "1",
        "AUDIO_REALTIME": "0",
        "NOTIFY_SOCKET": "",
        "WATCHDOG_USEC": "",
        # no state file: a test's mute or backend choice must not leak into the next test's worker
        "STATE_DIRECTORY": "",
        "XDG_STATE_HOME": "",
    }
    env.update(extra)
    return env


def ws_worker_env(broker_port: int, server_port: int, **extra: str) -> dict[str, str]:
    """A worker on stdin (16 kHz mono S16LE) whose backend is the stt-server on ``server_port``."""
    return worker_env(broker_port, "-", STT_BACKEND="ws", WS_URL=f"ws://127.0.0.1:{server_port}/stt", **extra)


def start_worker(env: dict[str, str], *, stdin: int | None = subprocess.DEVNULL,
                 argv: list[str] | None = None) -> Proc:
    return Proc([WORKER, *(argv or [])], env=env, name="worker", stdin=stdin)


def wait_exit(proc: Proc, timeout: float) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.stop()
        raise AssertionError(f"worker still running after {timeout} s:\n{tail(proc)}") from None


def tail(proc: Proc | None, n: int = 4000) -> str:
    return proc.output()[-n:] if proc is not None else ""


def log_events(proc: Proc) -> list[dict[str, Any]]:
    return proc.json_events()


def events(proc: Proc, name: str) -> list[dict[str, Any]]:
    return [e for e in log_events(proc) if e.get("event") == name]


def wait_log(proc: Proc, name: str, timeout: float, n: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(found := events(proc, name)) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"no {name!r} log line within {timeout} s:\n{tail(proc)}")
        if not proc.alive():
            raise AssertionError(f"worker exited ({proc.p.returncode}) before logging {name!r}:\n"
                                 f"{tail(proc)}")
        time.sleep(0.1)
    return found


# ---- speech ---------------------------------------------------------------------------------------


def speech_wav(path: Path, ids: list[str], gap_s: float = 1.5, lead_s: float = 1.0) -> Path:
    """The clips in order, separated by silence, as one 16 kHz mono WAV."""
    wav, _ = speech.concat(ids, path, gap_s=gap_s, lead_s=lead_s)
    return wav


def speech_pcm(ids: list[str], gap_s: float = 1.5, lead_s: float = 1.0, tail_s: float = 0.0) -> np.ndarray:
    parts = [np.zeros(int(lead_s * RATE), np.int16)]
    for i in ids:
        parts += [speech.clip(i), np.zeros(int(gap_s * RATE), np.int16)]
    parts.append(np.zeros(int(tail_s * RATE), np.int16))
    return np.concatenate(parts)


def wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def wer_of(ids: list[str], texts: list[str]) -> float:
    """Word error rate of the finals' texts, joined in order, against the clips' references."""
    refs = speech.refs()
    return speech.wer([(" ".join(refs[i] for i in ids), " ".join(texts))])


def assert_transcribed(ids: list[str], finals: list[dict[str, Any]], max_wer: float = 0.15) -> None:
    """One final per clip (a sentence with a long pause may honestly become two), WER within bounds."""
    texts = [f["text"] for f in finals]
    assert len(ids) <= len(finals) <= 2 * len(ids), f"{len(finals)} finals for {len(ids)} clips: {texts}"
    err = wer_of(ids, texts)
    assert err <= max_wer, f"WER {err:.1%} > {max_wer:.0%}: {texts}"


def feed_stdin(proc: Proc, pcm: np.ndarray, *, speed: float | None = 1.0, frame_ms: int = 20,
               stop: threading.Event | None = None, close: bool = True) -> None:
    """Write S16LE samples to the worker's stdin, paced at ``speed`` x real time (None: at once)."""
    assert proc.p.stdin is not None
    try:
        for frame in paced(pcm_frames(pcm, RATE, frame_ms), frame_ms / 1000, speed, stop):
            proc.p.stdin.write(frame)
            proc.p.stdin.flush()
        if close:
            proc.p.stdin.close()
    except (BrokenPipeError, ValueError):
        pass  # the worker went away (a test that kills it); its exit is what the test checks


def say(proc: Proc, clip: str) -> None:
    """One recording into the worker's stdin in real time, with silence around it, the input kept open."""
    feed_stdin(proc, speech_pcm([clip], gap_s=1.3, lead_s=0.3), speed=1.0, close=False)


class StdinFeeder:
    """Feeds PCM to the worker's stdin from a thread, so the test can act while audio flows."""

    def __init__(self, proc: Proc, pcm: np.ndarray, *, speed: float | None = 1.0, close: bool = True) -> None:
        self.stop = threading.Event()
        kwargs = {"speed": speed, "stop": self.stop, "close": close}
        self.thread = threading.Thread(target=feed_stdin, args=(proc, pcm), kwargs=kwargs, daemon=True)
        self.thread.start()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "feeding stdin took too long"

    def cancel(self) -> None:
        self.stop.set()
        self.thread.join(5)


def env_without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}
