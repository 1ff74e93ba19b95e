"""The server: one engine, ``/stt`` over WebSocket with plain HTTP beside it, a Wyoming listener for
Home Assistant Assist, and an ordered shutdown of all of them."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
from typing import TYPE_CHECKING, Protocol

import structlog
from stt_core import __version__
from stt_core import protocol as p
from stt_core.build import EngineInfo
from stt_core.daemon.notify import Notifier
from stt_core.engine import Engine
from stt_core.errors import ConfigError
from stt_core.session import CloseCode
from websockets.asyncio.server import ServerConnection, serve

from . import ws_dialects
from .context import REFUSALS, Context, peer_address
from .http import NEMO_PATH, WS_PATH, WS_PATHS, dialect_of, route
from .settings import ServerSettings
from .wyoming_server import WyomingListener

if TYPE_CHECKING:
    from .socketio_server import SocketIoListener

log = structlog.get_logger(__name__)


class Listener(Protocol):
    """Wyoming's and Socket.IO's listeners, as the server starts them."""

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None) -> list[tuple[str, int]]: ...


class Server:
    def __init__(self, settings: ServerSettings, engine: Engine, info: EngineInfo) -> None:
        self.settings = settings
        self.ctx = Context(settings, engine, info)
        self._advertising: asyncio.Task[None] | None = None
        if settings.stt_token is None:
            # seed 002's single-user mode: its clients need a key, and look for it in the log
            log.warning("single_user_key", path=NEMO_PATH, key=self.ctx.api_key,
                        hint="seed 002 clients connect with ?token=<key>; set STT_TOKEN to choose it")

    async def handle(self, ws: ServerConnection) -> None:
        peer = peer_address(ws.remote_address)
        refusal = self.ctx.refusal(peer)
        if refusal is not None:
            self.ctx.metrics.error(refusal, dialect=dialect_of(ws.request))
            # counted, not logged above debug: a client retrying in a loop must not flood the journal
            log.debug("refused", code=refusal, peer=peer, dialect=dialect_of(ws.request))
            with contextlib.suppress(Exception):
                await ws.send(p.encode(p.Error(code=refusal, message=REFUSALS[refusal])))
                await ws.close(CloseCode.TRY_AGAIN.value, refusal)
            return
        conn = ws_dialects.connection(self.ctx, ws)
        self.ctx.admit(conn, peer)
        self.ctx.metrics.count("sessions_total", dialect=conn.dialect)
        try:
            await conn.run()
        finally:
            self.ctx.leave(conn)


    async def serve(self, notifier: Notifier | None = None) -> None:
        st = self.settings
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.ctx.stopping.set)
        # the other listeners first: once the main port answers, every dialect does
        await self.ctx.transcripts.start()
        wyoming = await self._start_wyoming()
        sio = await self._start_socketio()
        async with serve(self.handle, st.host, st.port, process_request=lambda _, r: route(self.ctx, r),
                         # websockets' own limit sits above ours so the session can answer with an error
                         max_size=max(st.max_frame_bytes * 4, 1 << 20), ping_interval=20, ping_timeout=20,
                         server_header=f"stt-server/{__version__}", ssl=st.tls) as server:
            bound = [sock.getsockname() for sock in server.sockets]
            info = self.ctx.info
            log.info("listening", address=[f"{a[0]}:{a[1]}" for a in bound], paths=list(WS_PATHS),
                     scheme="wss" if st.tls else "ws", page="https" if st.tls else "http",
                     model=info.model, device=info.device, compute_type=info.compute_type)
            notifier = notifier or Notifier()
            notifier.ready(f"serving {WS_PATH} on port {st.port}"
                           + (f", Wyoming on {st.wyoming_listen_port}" if wyoming else "")
                           + (f", Socket.IO on {st.socketio_listen_port}" if sio else ""))
            watchdog = loop.create_task(self._watchdog(notifier)) if notifier.watchdog_interval else None
            await self.ctx.stopping.wait()
            notifier.stopping()
            log.info("shutting_down", sessions=len(self.ctx.sessions))
            # 1. stop accepting; 2. finals in flight are finished and sent, sessions closed (/stt with
            # 1001), all within SHUTDOWN_TIMEOUT_S; 3. whatever is left is closed by the context manager.
            server.close(close_connections=False)
            if self._advertising is not None:
                await asyncio.gather(self._advertising, return_exceptions=True)
            if wyoming is not None:
                await wyoming.close()
            if sio is not None:
                # its open utterances get their transcriptions, within the shutdown bound
                try:
                    async with asyncio.timeout(st.shutdown_timeout_s):
                        await sio.close()
                except TimeoutError:
                    log.warning("socketio_shutdown_timeout")
            try:
                async with asyncio.timeout(st.shutdown_timeout_s):
                    await asyncio.gather(*(c.shutdown() for c in list(self.ctx.sessions)),
                                         return_exceptions=True)
            except TimeoutError:
                log.warning("shutdown_timeout", left=len(self.ctx.sessions))
            # the sessions' last finals are queued by now: the subscribers get their bounded chance
            await self.ctx.transcripts.close()
            if watchdog is not None:
                watchdog.cancel()
        self.ctx.engine.close()
        log.info("stopped")

    async def _bind(self, listener: Listener, name: str, variable: str, port: int, explicit: bool,
                    *, tls: ssl.SSLContext | None) -> bool:
        """An extra listener on HOST:port. A port asked for that cannot be had is the operator's to fix
        (exit 78); the default one taken by something else only costs a warning, so that /stt users
        are not stopped by it."""
        host = self.settings.host
        try:
            bound = await listener.start(host, port, tls)
        except OSError as exc:
            if explicit:
                why = exc.strerror or str(exc)
                raise ConfigError(variable, f"cannot listen on {host}:{port}: {why}") from None
            log.warning(f"{name}_port_taken", port=port, error=exc.strerror or str(exc),
                        hint=f"set {variable} to another port, or 0 to turn it off")
            return False
        log.info(f"{name}_listening", address=[f"{a[0]}:{a[1]}" for a in bound],
                 tls=tls is not None)
        return True

    async def _start_wyoming(self) -> WyomingListener | None:
        """The Wyoming listener on WYOMING_PORT, advertised over mDNS where it is reachable."""
        st = self.settings
        port = st.wyoming_listen_port
        if port == 0:
            return None
        listener = WyomingListener(self.ctx)
        tls = st.wyoming_tls_context
        if not await self._bind(listener, "wyoming", "WYOMING_PORT", port, st.wyoming_explicit, tls=tls):
            return None
        if tls is not None and st.wyoming_tls is None:
            log.warning("wyoming_tls", port=port, hint="Home Assistant's Wyoming integration and "
                        "STT_BACKEND=wyoming workers cannot connect over TLS: WYOMING_TLS=0 keeps it plain")
        if st.advertise_wyoming:
            # in the background: mDNS probing takes a second or two, and serving need not wait for it
            self._advertising = asyncio.get_running_loop().create_task(
                self._advertise(listener, st.host, port, st.wyoming_zeroconf_name))
        return listener

    async def _start_socketio(self) -> SocketIoListener | None:
        """Seed 004's Socket.IO server on SOCKETIO_PORT."""
        st = self.settings
        port = st.socketio_listen_port
        if port == 0:
            return None
        from .socketio_server import SocketIoListener  # python-socketio and aiohttp only when on

        listener = SocketIoListener(self.ctx)
        bound = await self._bind(listener, "socketio", "SOCKETIO_PORT", port, st.socketio_explicit,
                                 tls=st.tls)
        return listener if bound else None

    @staticmethod
    async def _advertise(listener: WyomingListener, host: str, port: int, name: str | None) -> None:
        try:
            await listener.advertise(host, port, name)
        except Exception as exc:  # mDNS is a convenience: the listener works without it
            log.warning("zeroconf_failed", error=str(exc))

    async def _watchdog(self, notifier: Notifier) -> None:
        assert notifier.watchdog_interval is not None
        while True:
            notifier.watchdog()
            await asyncio.sleep(notifier.watchdog_interval)
