"""Child processes the tests start for real: mosquitto and the console scripts."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float, proc: Proc | None = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited early: {proc.output()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listened on {port} within {timeout} s")


class Proc:
    """A child in its own process group with its output in a file; always ended by ``stop``."""

    def __init__(self, argv: list[str], *, env: dict[str, str] | None = None, name: str = "proc",
                 stdin: int | None = subprocess.DEVNULL, clean_env: bool = False) -> None:
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix=f"stt-{name}-"))
        self.log = self.dir / "output.log"
        self._fh = open(self.log, "wb")  # noqa: SIM115 - lives as long as the process
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")} if clean_env else dict(os.environ)
        base.update(env or {})
        self.p = subprocess.Popen(argv, env=base, stdout=self._fh, stderr=subprocess.STDOUT, stdin=stdin,
                                  start_new_session=True)

    def alive(self) -> bool:
        return self.p.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.p.pid, sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        self.signal(signal.SIGTERM)
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.p.wait(5)
            return None

    def wait(self, timeout: float) -> int:
        return self.p.wait(timeout)

    def output(self) -> str:
        self._fh.flush()
        return self.log.read_text(errors="replace")

    def json_events(self) -> list[dict[str, Any]]:
        """The JSON log lines (LOG_FORMAT=json), in order; other lines (a library on stderr) are skipped."""
        out = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    out.append(json.loads(line))
        return out


class Mosquitto:
    """A real broker on a free loopback port; ``restart`` keeps the port. ``persistent``: sessions and
    queued QoS 1 messages kept across its own restarts, as a packaged Mosquitto keeps them."""

    def __init__(self, port: int | None = None, *, persistent: bool = False) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise RuntimeError("mosquitto is not installed: run make setup")
        self.exe = exe
        self.port = port or free_port()
        self.conf = Path(tempfile.mkdtemp(prefix="stt-mosquitto-")) / "mosquitto.conf"
        persistence = "persistence false\n"
        if persistent:
            data = self.conf.parent / "data"
            data.mkdir()
            # mosquitto started as root drops to the `mosquitto` user: without these it cannot save its
            # database (mkdtemp makes 0700 folders) and the sessions are lost over a restart
            self.conf.parent.chmod(0o755)
            data.chmod(0o777)
            persistence = f"persistence true\npersistence_location {data}/\nautosave_interval 1\n"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n{persistence}")
        self.proc: Proc | None = None
        self.start()

    def start(self) -> None:
        self.proc = Proc([self.exe, "-c", str(self.conf)], name="mosquitto")
        wait_port(self.port, 10, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


def start_server(env: dict[str, str] | None = None, port: int | None = None, *,
                 prefix: list[str] | None = None, start_timeout: float = 60) -> tuple[Proc, int]:
    """The real stt-server console script on a free port, embedded model, CPU; ``prefix``: a command it
    runs under (strace)."""
    port = port or free_port()
    # WYOMING_PORT=0 and SOCKETIO_PORT=0 unless a test asks: several test servers at once would all
    # want 10300 and 2700
    full = {"HOST": "127.0.0.1", "PORT": str(port), "DEVICE": "cpu", "LOG_FORMAT": "json",
            "WYOMING_PORT": "0", "SOCKETIO_PORT": "0"}
    full.update(env or {})
    for var in ("WHISPER_MODEL", "STT_TOKEN"):
        if var not in full:
            full[var] = ""
    proc = Proc([*(prefix or []), str(VENV_BIN / "stt-server")], env=full, name="server")
    wait_port(port, start_timeout, proc)
    return proc, port
