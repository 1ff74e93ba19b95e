"""What the server tests read from a running stt-server's HTTP side, checked as it is read: the live
session count from /health and every sample of /metrics."""

from __future__ import annotations

import re
import time

from harness.stt_client import health, http_get


def wait_sessions(port: int, n: int, timeout: float = 10.0) -> None:
    """Wait until the server reports ``n`` active sessions (connections it has not yet cleaned up)."""
    deadline = time.monotonic() + timeout
    while (got := health(port)["active_sessions"]) != n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"active_sessions stayed {got}, expected {n}")
        time.sleep(0.05)


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^{}]*\})? (-?[0-9.]+(?:[eE][+-]?[0-9]+)?|[+-]Inf|NaN)$")


def metrics(port: int, token: str | None = None) -> dict[str, float]:
    """GET /metrics parsed as Prometheus text: ``{'name{labels}': value}``; asserts every sample line
    is well formed and the content type is the exposition format's. ``token``: a server's STT_TOKEN
    (with one set, /metrics needs it)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else None
    status, ctype, body = http_get(port, "/metrics", headers)
    assert status == 200, body
    assert ctype.startswith("text/plain"), ctype
    out: dict[str, float] = {}
    for line in body.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out
