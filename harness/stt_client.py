"""A small ``/stt`` client written only from the documented protocol, for tests and benchmarks.

``stream(url, pcm, rate)`` is the whole happy path: init, 20 ms S16LE frames paced in real time,
``{"type":"end"}``, wait for the final. ``SttSession`` is the same client in pieces, for tests that
misbehave on purpose: a reader thread collects every server message with its arrival time while the
caller paces audio out, and the close code the server chose is kept.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soxr
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from .pacing import paced


def ws_url(port: int, path: str = "/stt", token: str | None = None, host: str = "127.0.0.1") -> str:
    return f"ws://{host}:{port}{path}" + (f"?token={token}" if token is not None else "")


def to_rate(pcm: np.ndarray, rate: int, src: int = 16000) -> np.ndarray:
    """int16 samples at ``src`` resampled to ``rate`` with libsoxr (what a 48 kHz sound card would send)."""
    if rate == src:
        return pcm
    out = soxr.resample(pcm.astype(np.float32) / 32768.0, src, rate)
    pcm16: np.ndarray = (np.clip(out, -1.0, 32767 / 32768) * 32768.0).astype(np.int16)
    return pcm16


def pcm_frames(pcm: np.ndarray, rate: int, frame_ms: int = 20) -> list[bytes]:
    """int16 samples cut into S16LE frames of ``frame_ms`` (the last one may be shorter)."""
    n = rate * frame_ms // 1000
    data = pcm.astype("<i2")
    return [data[i:i + n].tobytes() for i in range(0, len(data), n)]


@dataclass
class Received:
    t: float  # time.monotonic() when the message arrived
    msg: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.msg.get("type"))


class SttSession:
    """One WebSocket connection to ``/stt``. Raises websockets' ``InvalidStatus`` when the handshake is
    refused (e.g. 401)."""

    def __init__(self, url: str, *, bearer: str | None = None, open_timeout: float = 10.0) -> None:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else None
        self.ws: ClientConnection = connect(url, additional_headers=headers, proxy=None,
                                            open_timeout=open_timeout, max_size=None, close_timeout=5,
                                            legacy=True)
        self.received: list[Received] = []
        self._cond = threading.Condition()
        self.closed = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True, name="stt-client-reader")
        self._reader.start()

    # ---- receiving --------------------------------------------------------------------------

    def _read(self) -> None:
        try:
            for raw in self.ws:
                msg = json.loads(raw) if isinstance(raw, str) else {"type": "_binary", "size": len(raw)}
                with self._cond:
                    self.received.append(Received(time.monotonic(), msg))
                    self._cond.notify_all()
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            with self._cond:
                self._cond.notify_all()

    def mark(self) -> int:
        """An index into ``received``: ``wait_for(..., after=mark)`` only looks at later messages."""
        with self._cond:
            return len(self.received)

    def wait_for(self, kind: str | Callable[[Received], bool], timeout: float = 30.0,
                 after: int = 0) -> Received:
        """The first message (from index ``after``) of type ``kind`` or matching it; TimeoutError if none
        came, or if the connection closed without one."""
        pred = (lambda r: r.type == kind) if isinstance(kind, str) else kind
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for r in self.received[after:]:
                    if pred(r):
                        return r
                left = deadline - time.monotonic()
                if left <= 0 or self.closed.is_set():
                    seen = [r.msg for r in self.received[after:]]
                    raise TimeoutError(f"no {kind!r} message within {timeout} s "
                                       f"(closed={self.closed.is_set()}, code={self.close_code}); got {seen}")
                self._cond.wait(min(left, 0.1))

    def messages(self, kind: str | None = None, after: int = 0) -> list[dict[str, Any]]:
        with self._cond:
            return [r.msg for r in self.received[after:] if kind is None or r.type == kind]

    def wait_closed(self, timeout: float = 10.0) -> int | None:
        """Wait for the connection to end; the close code the server sent (None if none was received)."""
        if not self.closed.wait(timeout):
            raise TimeoutError(f"connection still open after {timeout} s; got {self.messages()}")
        return self.close_code

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    @property
    def close_reason(self) -> str | None:
        return self.ws.close_reason

    # ---- sending ----------------------------------------------------------------------------

    def send_json(self, obj: dict[str, Any]) -> None:
        self.ws.send(json.dumps(obj))

    def send_text(self, text: str) -> None:
        self.ws.send(text)

    def send_bytes(self, data: bytes) -> None:
        self.ws.send(data)

    def init(self, sample_rate: Any = 16000, *, session_id: str | None = None, lang: str | None = "en",
             enable_partials: bool = True, **extra: Any) -> None:
        msg: dict[str, Any] = {"type": "init", "sample_rate": sample_rate, "lang": lang,
                               "enable_partials": enable_partials, **extra}
        if session_id is not None:
            msg["session_id"] = session_id
        self.send_json(msg)

    def send_audio(self, pcm: np.ndarray, rate: int = 16000, *, frame_ms: int = 20, speed: float | None = 1.0,
                   stop: threading.Event | None = None) -> int:
        """Send int16 samples as ``frame_ms`` frames, paced at ``speed`` x real time (None: no pacing).
        Stops quietly when the server closes the connection or ``stop`` is set; returns frames sent."""
        sent = 0
        for frame in paced(pcm_frames(pcm, rate, frame_ms), frame_ms / 1000, speed, stop):
            try:
                self.ws.send(frame)
            except ConnectionClosed:
                break
            sent += 1
        return sent

    def end(self) -> float:
        """Send ``{"type":"end"}``; returns when it was sent (time.monotonic())."""
        self.send_json({"type": "end"})
        return time.monotonic()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()
        self._reader.join(5)

    def abort(self) -> None:
        """Vanish like a client whose Wi-Fi dropped: the TCP connection goes, no close frame is sent."""
        with contextlib.suppress(OSError):
            self.ws.socket.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.ws.socket.close()
        # websockets' own reader thread notices the lost socket on its own time; nobody waits for it

    def __enter__(self) -> SttSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class StreamResult:
    final: dict[str, Any]
    partials: list[dict[str, Any]]
    partial_times: list[float]  # when each partial arrived, seconds after the first frame was sent
    end_at: float  # when `end` was sent, seconds after the first frame
    latency_s: float  # from sending `end` to the final's arrival
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def partials_before_end(self) -> list[dict[str, Any]]:
        return [p for p, t in zip(self.partials, self.partial_times, strict=True) if t < self.end_at]


def segment(sess: SttSession, pcm: np.ndarray, rate: int = 16000, *, frame_ms: int = 20,
            speed: float | None = 1.0, timeout: float = 30.0) -> StreamResult:
    """One segment on an initialised session: audio, end, the final."""
    mark = sess.mark()
    t0 = time.monotonic()
    sess.send_audio(pcm, rate, frame_ms=frame_ms, speed=speed)
    end_t = sess.end()
    final = sess.wait_for("final", timeout, after=mark)
    with sess._cond:
        got = sess.received[mark:]
    partials = [r for r in got if r.type == "partial" and r.t <= final.t]
    return StreamResult(final=final.msg, partials=[r.msg for r in partials],
                        partial_times=[r.t - t0 for r in partials], end_at=end_t - t0,
                        latency_s=final.t - end_t, messages=[r.msg for r in got])


def stream(url: str, pcm: np.ndarray, rate: int = 16000, *, frame_ms: int = 20, speed: float | None = 1.0,
           enable_partials: bool = True, bearer: str | None = None, session_id: str | None = None,
           timeout: float = 30.0) -> StreamResult:
    """The whole protocol once: connect, init, paced audio, end, final; then close normally."""
    with SttSession(url, bearer=bearer) as sess:
        sess.init(rate, session_id=session_id, enable_partials=enable_partials)
        return segment(sess, pcm, rate, frame_ms=frame_ms, speed=speed, timeout=timeout)


def http_get(port: int, path: str, headers: dict[str, str] | None = None,
             host: str = "127.0.0.1") -> tuple[int, str, str]:
    """(status, content type, body) of a plain GET, without any proxy from the environment."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(f"http://{host}:{port}{path}", headers=headers or {})
    try:
        with opener.open(req, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def health(port: int) -> dict[str, Any]:
    status, _, body = http_get(port, "/health")
    assert status == 200, body
    out: dict[str, Any] = json.loads(body)
    return out
