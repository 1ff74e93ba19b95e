"""`make demo`: run the real worker (local backend, embedded model) on the bundled recording and print
what an MQTT subscriber sees: partials as they come, each final with its latency.

The broker is the one at MQTT_HOST:MQTT_PORT (default localhost:1883). If nothing answers there, a
private mosquitto is started on a free port for the length of the demo.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from harness.procs import VENV_BIN, Mosquitto

HERE = Path(__file__).resolve().parent
WAV = HERE / "audio" / "demo.wav"
SITE = os.environ.get("SITE_ID", "demo")
BASE = os.environ.get("MQTT_BASE_TOPIC", "stt")
TTY = sys.stdout.isatty()
DIM, BOLD, GREEN, RESET = ("\033[2m", "\033[1m", "\033[32m", "\033[0m") if TTY else ("", "", "", "")


def answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), 1.0).close()
        return True
    except OSError:
        return False


def private_broker() -> Mosquitto:
    try:
        return Mosquitto()
    except (RuntimeError, TimeoutError) as exc:
        raise SystemExit(f"demo: could not start mosquitto ({exc}); run make setup") from None


class Printer:
    """Partials on one rewritten line at a terminal (one line each elsewhere), finals committed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.finals: list[dict[str, object]] = []
        self.partial_shown = False

    def on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        topic = msg.topic.removeprefix(f"{BASE}/{SITE}/")
        text = msg.payload.decode(errors="replace")
        with self.lock:
            if topic == "transcript/partial":
                p = json.loads(text)
                line = f"  {DIM}… {p['text']}{RESET}"
                if TTY:
                    sys.stdout.write("\r\033[K" + line[: shutil.get_terminal_size().columns + 8])
                    self.partial_shown = True
                else:
                    print(f"  partial  {p['text']}")
            elif topic == "transcript/final":
                f = json.loads(text)
                self.finals.append(f)
                if self.partial_shown:
                    sys.stdout.write("\r\033[K")
                    self.partial_shown = False
                print(f"  {GREEN}{BOLD}final{RESET}    {f['text']}  "
                      f"{DIM}(latency {f['latency_ms']} ms after end of speech, "
                      f"confidence {f['confidence']:.2f}, {f['backend']}){RESET}")
            elif topic in ("availability", "speech") and not TTY:
                print(f"  {topic:<8} {text}")
            sys.stdout.flush()


def main() -> None:
    host = os.environ.get("MQTT_HOST", "localhost")
    port = int(os.environ.get("MQTT_PORT", "1883"))
    broker = None
    if not answers(host, port):
        broker = private_broker()
        host, port = "127.0.0.1", broker.port
        wanted = f"{os.environ.get('MQTT_HOST', 'localhost')}:{os.environ.get('MQTT_PORT', '1883')}"
        print(f"demo: no broker at {wanted}; started a private mosquitto on port {port}")
    printer = Printer()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"stt-demo-{os.getpid()}")
    sub.on_message = printer.on_message
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{BASE}/{SITE}/#", qos=1)
    sub.connect(host, port)
    sub.loop_start()
    print(f"demo: the worker transcribes {WAV.name} (27 s, 4 utterances) in real time "
          "with the embedded model;")
    print(f"      a subscriber to {BASE}/{SITE}/# on {host}:{port} sees:\n")
    log = Path(tempfile.mkdtemp(prefix="stt-demo-")) / "worker.log"
    env = dict(os.environ, AUDIO_SOURCE=str(WAV), STT_BACKEND="local", MQTT_HOST=host, MQTT_PORT=str(port),
               SITE_ID=SITE, MQTT_BASE_TOPIC=BASE, LOG_FORMAT="json")
    exe = VENV_BIN / "stt-worker"
    try:
        with open(log, "wb") as fh:
            code = subprocess.run([str(exe)], env=env, stdout=fh, stderr=subprocess.STDOUT,
                                  check=False).returncode
        time.sleep(0.3)
    finally:
        sub.loop_stop()
        sub.disconnect()
        if broker is not None:
            broker.stop()
    lat = sorted(int(f["latency_ms"]) for f in printer.finals)  # type: ignore[call-overload]
    print()
    if code != 0 or not lat:
        print(f"demo: the worker exited with {code}; its log: {log}")
        print(log.read_text()[-2000:])
        raise SystemExit(1)
    hangover_ms = os.environ.get("VAD_HANGOVER_MS", "600")
    print(f"demo: {len(lat)} finals, median latency {lat[len(lat) // 2]} ms after the end of speech "
          f"(that includes the {hangover_ms} ms of silence that tells a sentence has ended).")
    print(f"      worker log (JSON lines): {log}")


if __name__ == "__main__":
    main()
