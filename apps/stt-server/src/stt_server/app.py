"""The server: one engine, a WebSocket endpoint at /stt, plain HTTP beside it, an ordered shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

import structlog
from stt_core import __version__
from stt_core import protocol as p
from stt_core.build import EngineInfo
from stt_core.daemon.notify import Notifier
from stt_core.engine import Engine
from stt_core.session import CloseCode
from websockets.asyncio.server import ServerConnection, serve

from .connection import Connection
from .http import route
from .metrics import Metrics
from .settings import ServerSettings

log = structlog.get_logger(__name__)


class Server:
    def __init__(self, settings: ServerSettings, engine: Engine, info: EngineInfo) -> None:
        self.settings = settings
        self.engine = engine
        self.info = info
        self.metrics = Metrics()
        engine.on_decode = self.metrics.observe_decode
        self.connections: set[Connection] = set()
        self._stopping = asyncio.Event()

    def health_fields(self) -> dict[str, Any]:
        return {"ok": not self._stopping.is_set(), "model": self.info.model, "device": self.info.device,
                "compute_type": self.info.compute_type, "active_sessions": len(self.connections)}

    def health(self) -> dict[str, object]:
        return {**self.health_fields(), "version": __version__, "protocol": p.PROTOCOL_VERSION,
                "partial_interval_ms": self.settings.partial_interval_ms}

    def metrics_text(self) -> str:
        return self.metrics.render(active_sessions=len(self.connections),
                                   active_segments=self.engine.active_segments)

    async def handle(self, ws: ServerConnection) -> None:
        if len(self.connections) >= self.settings.max_sessions or self._stopping.is_set():
            code = "server_busy" if not self._stopping.is_set() else "shutting_down"
            self.metrics.error(code)
            with contextlib.suppress(Exception):
                await ws.send(p.encode(p.Error(code=code, message="too many sessions; retry later")))
                await ws.close(CloseCode.TRY_AGAIN.value, code)
            return
        conn = Connection(self, ws)
        self.connections.add(conn)
        self.metrics.count("sessions_total")
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)

    async def serve(self, notifier: Notifier | None = None) -> None:
        st = self.settings
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        async with serve(self.handle, st.host, st.port, process_request=lambda _, r: route(self, r),
                         # websockets' own limit sits above ours so the session can answer with an error
                         max_size=max(st.max_frame_bytes * 4, 1 << 20), ping_interval=20, ping_timeout=20,
                         server_header=f"stt-server/{__version__}") as server:
            bound = [s.getsockname() for s in server.sockets]
            log.info("listening", address=[f"{a[0]}:{a[1]}" for a in bound], path="/stt",
                     model=self.info.model, device=self.info.device, compute_type=self.info.compute_type)
            notifier = notifier or Notifier()
            notifier.ready(f"serving /stt on port {st.port}")
            watchdog = loop.create_task(self._watchdog(notifier)) if notifier.watchdog_interval else None
            await self._stopping.wait()
            notifier.stopping()
            log.info("shutting_down", sessions=len(self.connections))
            # 1. stop accepting; 2. finals in flight are finished and sent, sessions closed with 1001,
            # all within SHUTDOWN_TIMEOUT_S; 3. whatever is left is closed by the context manager.
            server.close(close_connections=False)
            try:
                async with asyncio.timeout(st.shutdown_timeout_s):
                    await asyncio.gather(*(c.shutdown() for c in list(self.connections)),
                                         return_exceptions=True)
            except TimeoutError:
                log.warning("shutdown_timeout", left=len(self.connections))
            if watchdog is not None:
                watchdog.cancel()
        self.engine.close()
        log.info("stopped")

    async def _watchdog(self, notifier: Notifier) -> None:
        assert notifier.watchdog_interval is not None
        while True:
            notifier.watchdog()
            await asyncio.sleep(notifier.watchdog_interval)
