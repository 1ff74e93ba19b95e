"""Is a server of WS_URL's or WYOMING_URI's list worth going back to? Cheap checks, made in the
background while the worker is on a less preferred server: nothing here touches a session.

``/health`` is asked over plain HTTP/1.1 on the WebSocket's own host and port (and TLS context, for
wss://): stt-server answers it without the token too (a bare ``{"ok": true}``), so a 200 is enough.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
from urllib.parse import urlsplit, urlunsplit


def public_url(url: str) -> str:
    """The URL without user info, query or fragment (a ``?token=``): fit for logs and the retained
    state, which every MQTT subscriber reads."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def health_path(url: str) -> str:
    """``/health`` beside the WebSocket path: ``/stt`` -> ``/health``, ``/box2/stt`` -> ``/box2/health``
    (a server behind a reverse proxy's prefix)."""
    path = urlsplit(url).path or "/"
    return path.rsplit("/", 1)[0] + "/health"


async def http_health(url: str, tls: ssl.SSLContext | None, timeout_s: float) -> bool:
    """Whether ``GET /health`` at the WebSocket URL's server answers 200 within ``timeout_s``."""
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    host = parts.hostname or "localhost"
    port = parts.port or (443 if secure else 80)
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port, ssl=tls if secure else None)
            host_header = f"[{host}]" if ":" in host else host
            writer.write(f"GET {health_path(url)} HTTP/1.1\r\nHost: {host_header}:{port}\r\n"
                         f"Connection: close\r\n\r\n".encode("ascii"))
            await writer.drain()
            status = (await reader.readline()).split()
            return len(status) >= 2 and status[1] == b"200"
    except (OSError, TimeoutError, ssl.SSLError, UnicodeError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def probe_delay(interval_s: float) -> float:
    """Jittered (half fixed, half random), so workers that lost the same server do not probe it in
    lock-step."""
    return interval_s / 2 + random.uniform(0, interval_s / 2)
