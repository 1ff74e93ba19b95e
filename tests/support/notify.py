"""What systemd would receive: a datagram socket at a path given to the daemon as NOTIFY_SOCKET,
collecting each notification (READY=1, WATCHDOG=1, STOPPING=1, STATUS=...) with its arrival time."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path


class NotifyListener:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.received: list[tuple[float, str]] = []  # (time.monotonic(), one line such as "READY=1")
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._read, name="notify-listener", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.monotonic()
            with self._cond:
                self.received.extend((now, line) for line in data.decode().splitlines())
                self._cond.notify_all()

    def times(self, line: str) -> list[float]:
        with self._cond:
            return [t for t, got in self.received if got == line]

    def wait(self, line: str, timeout: float) -> float:
        """When ``line`` first arrived, waiting up to ``timeout`` for it."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for t, got in self.received:
                    if got == line:
                        return t
                left = end - time.monotonic()
                if left <= 0:
                    got = [g for _, g in self.received]
                    raise AssertionError(f"no {line!r} within {timeout} s; got {got}")
                self._cond.wait(left)

    def close(self) -> None:
        self._closed = True
        self._thread.join(2)
        self.sock.close()
        self.path.unlink(missing_ok=True)
