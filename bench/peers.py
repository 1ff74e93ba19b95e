"""Peers on the same machine, clips, model and pacing, in the same run as our server: wyoming-faster-whisper
(Home Assistant's Wyoming protocol; batch: one transcript after ``audio-stop``) beside our own Wyoming
listener, driven by the same client, and WhisperLive (streaming re-decodes over WebSocket). Each peer
lives in its own venv under bench/.venvs/ (not a project dependency), made on first use and reused
while its requirement list is unchanged.

Both get the embedded tiny.en directory, int8 on CPU, beam 5, English, CTranslate2's default threads
(as our server). WhisperLive runs as its README shows, ``TranscriptionServer().run(...)`` with
``single_model=True``, and ``max_clients`` raised so capacity is limited by speed, not by a cap.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stt_core.model import embedded_model_dir

from harness.procs import Proc, free_port, start_server, wait_port

from . import whisperlive_client, wyoming_client
from .baseline import Baseline
from .capacity import StreamFn, run_levels
from .clips import load_all
from .plan import Plan
from .rig import BENCH_SESSIONS_PER_IP

VENVS = Path(__file__).resolve().parent / ".venvs"

WHISPERLIVE_SERVER = """
import logging, sys
logging.basicConfig(level=logging.WARNING)
from whisper_live.server import TranscriptionServer
TranscriptionServer().run("127.0.0.1", int(sys.argv[1]), backend="faster_whisper",
                          faster_whisper_custom_model_path=sys.argv[2], single_model=True,
                          max_clients=64, max_connection_time=3600)
"""


@dataclass(frozen=True)
class Peer:
    name: str
    # pip install arguments, one list per call (WhisperLive goes in --no-deps: its pins want CUDA and
    # a dozen packages its faster_whisper server never imports)
    installs: tuple[tuple[str, ...], ...]
    dists: tuple[str, ...]  # distributions whose versions the report names

    @property
    def venv(self) -> Path:
        return VENVS / self.name

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


WYOMING = Peer(
    "wyoming-faster-whisper",
    (("wyoming-faster-whisper==3.8.1",),),
    ("wyoming-faster-whisper", "wyoming", "faster-whisper", "ctranslate2"),
)
WHISPERLIVE = Peer(
    "whisperlive",
    (
        ("--no-deps", "whisper-live==0.10.0"),
        (
            "torch==2.13.0",
            "faster-whisper",
            "ctranslate2",
            "websockets",
            "websocket-client",
            "fastapi",
            "uvicorn",
            "onnxruntime",
            "scipy",
            "av",
            "huggingface_hub",
            "numpy",
        ),
    ),
    ("whisper-live", "faster-whisper", "ctranslate2", "torch"),
)
PEERS = (WYOMING, WHISPERLIVE)


def ensure_venv(peer: Peer) -> None:
    stamp = peer.venv / ".bench-installed"
    want = json.dumps(peer.installs)
    if stamp.is_file() and stamp.read_text() == want and peer.python.exists():
        return
    print(f"bench: making {peer.venv} (once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(peer.venv)], check=True)
    subprocess.run([str(peer.python), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    for args in peer.installs:
        subprocess.run([str(peer.python), "-m", "pip", "install", "-q", *args], check=True)
    stamp.write_text(want)


def versions(peer: Peer) -> dict[str, str]:
    code = (
        "import json, sys, importlib.metadata as m\n"
        "print(json.dumps({d: m.version(d) for d in sys.argv[1:]}))"
    )
    r = subprocess.run(
        [str(peer.python), "-c", code, *peer.dists], capture_output=True, text=True, check=True
    )
    out: dict[str, str] = json.loads(r.stdout)
    return out


def start(peer: Peer) -> tuple[Proc, StreamFn]:
    port, model = free_port(), str(embedded_model_dir())
    env = {"HF_HUB_OFFLINE": "1"}
    if peer is WYOMING:
        exe = peer.venv / "bin" / "wyoming-faster-whisper"
        argv = [
            str(exe),
            "--model",
            model,
            "--stt-library",
            "faster-whisper",
            "--uri",
            f"tcp://127.0.0.1:{port}",
            "--data-dir",
            tempfile.mkdtemp(prefix="bench-wyoming-"),
            "--language",
            "en",
            "--beam-size",
            "5",
            "--compute-type",
            "int8",
            "--cpu-threads",
            "0",
        ]
        fn = wyoming_client.stream_fn(port)
    else:
        argv = [str(peer.python), "-c", WHISPERLIVE_SERVER, str(port), model]
        fn = whisperlive_client.stream_fn(port)
    proc = Proc(argv, env=env, name=peer.name)
    wait_port(port, 180, proc)
    return proc, fn


OURS_WYOMING = "stt-bridge (Wyoming)"


def ours_over_wyoming(plan: Plan, base: Baseline | None, clips: list[Any]) -> dict[str, Any]:
    """Our server's Wyoming listener, driven by the same client as wyoming-faster-whisper below."""
    wport = free_port()
    proc, _ = start_server({"WYOMING_PORT": str(wport), "MAX_SESSIONS_PER_IP": str(BENCH_SESSIONS_PER_IP)})
    try:
        print(f"bench: peer {OURS_WYOMING}", flush=True)
        return run_levels(wyoming_client.stream_fn(wport), plan, clips, base)
    finally:
        proc.stop()


def run(plan: Plan, base: Baseline | None) -> dict[str, Any]:
    clips = load_all(plan.capacity_clips)
    out: dict[str, Any] = {OURS_WYOMING: ours_over_wyoming(plan, base, clips)}
    for peer in PEERS:
        try:
            ensure_venv(peer)
            proc, fn = start(peer)
        except (subprocess.CalledProcessError, RuntimeError, TimeoutError) as exc:
            out[peer.name] = {"error": f"could not start: {exc}"}
            continue
        try:
            print(f"bench: peer {peer.name}", flush=True)
            out[peer.name] = {"versions": versions(peer), **run_levels(fn, plan, clips, base)}
        finally:
            proc.stop()
    return out
