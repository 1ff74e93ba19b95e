"""One WebSocket connection of any dialect: moves frames between the socket and the dialect's sans-I/O
session machine (``/stt``'s ``SessionMachine``, seed 001's ``HandySession``) and carries out the
actions it returns on the shared engine (``SegmentRunner``). The machines share one shape: frames in
with the time, actions out, and ``partial``/``final`` turning engine results into their messages."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol

import structlog
from stt_core import protocol as p
from stt_core import session as s
from stt_core.engine import FinalResult, PartialResult
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from .context import Context, Dialect, SegmentRunner
from .peer_errors import PeerErrors

log = structlog.get_logger(__name__)


class WsSession(Protocol):
    """What a WebSocket dialect's machine offers its connection."""

    # messages that carried audio so far: anything else (health, bad frames) does not keep a session open
    audio_messages: int

    def opened(self) -> list[s.Action]: ...

    def receive_text(self, text: str, now: float) -> list[s.Action]: ...

    def receive_bytes(self, data: bytes, now: float) -> list[s.Action]: ...

    def partial(self, r: PartialResult) -> list[s.Action]: ...

    def final(self, r: FinalResult, reason: p.FinalReason, segment: int) -> list[s.Action]: ...

    def idle_timeout(self) -> list[s.Action]: ...

    def shutdown(self) -> list[s.Action]: ...


class Connection:
    def __init__(self, ctx: Context, ws: ServerConnection, machine: WsSession, dialect: Dialect) -> None:
        self.ctx = ctx
        self.ws = ws
        self.machine = machine
        self.dialect: Dialect = dialect
        self.segment = SegmentRunner(ctx, dialect)
        self._index = 0  # the segment the engine is on (the machine may have counted past it)
        # actions are carried out one batch at a time, so a shutdown cannot interleave with a final
        self._lock = asyncio.Lock()
        self._closed = False
        self._close_task: asyncio.Task[None] | None = None
        self.log = log.bind(peer=str(ws.remote_address[0]) if ws.remote_address else "?", dialect=dialect)
        self.peer_errors = PeerErrors(self.log, ctx.metrics, dialect)

    async def run(self) -> None:
        idle = self.ctx.settings.idle_timeout_s
        try:
            await self.apply(self.machine.opened())
            # Reading goes on after a close has started (the machine then ignores every frame): the
            # peer's close reply sits behind the frames it sent before it, and a connection that
            # stopped reading would never see it, holding the session until the close timeout.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + idle
            while True:
                try:
                    async with asyncio.timeout_at(None if self._closed else deadline):
                        message = await self.ws.recv()
                except TimeoutError:
                    await self.apply(self.machine.idle_timeout())
                    continue
                now = time.monotonic()
                heard = self.machine.audio_messages
                if isinstance(message, str):
                    actions = self.machine.receive_text(message, now)
                else:
                    actions = self.machine.receive_bytes(message, now)
                if self.machine.audio_messages != heard:
                    # only audio keeps a session: one that sends health requests (or junk) forever
                    # would hold a MAX_SESSIONS slot forever
                    deadline = loop.time() + idle
                await self.apply(actions)
        except ConnectionClosed:
            pass  # the peer went away; the finally below tidies its segment up
        finally:
            if self.segment.open:
                # the client vanished mid-segment: nobody is left to read a final
                self.log.info("segment_abandoned", segment=self._index)
                self.segment.cancel()
            if self._close_task is not None:
                await asyncio.gather(self._close_task, return_exceptions=True)
            self.peer_errors.summary()

    async def shutdown(self) -> None:
        """Server stopping: the open segment still gets its final, then close 1001."""
        await self.apply(self.machine.shutdown())
        if self._close_task is not None:
            await asyncio.gather(self._close_task, return_exceptions=True)

    async def apply(self, actions: list[s.Action]) -> None:
        async with self._lock:
            for action in actions:
                await self._do(action)

    async def _do(self, action: s.Action) -> None:
        if isinstance(action, s.Send):
            if isinstance(action.message, p.Error):
                self.peer_errors(action.message.code, action.message.message)
            elif isinstance(action.message, p.Ready):
                self.log.info("session_started", session_id=action.message.session_id,
                              sample_rate=action.message.sample_rate)
            await self._send(action.message)
        elif isinstance(action, s.OpenSegment):
            self._index = action.index
            # /stt's session id names the session for subscribers, once init has given one
            self.segment.site = getattr(self.machine, "session_id", "") or self.segment.site
            self.segment.start(action.sample_rate, action.options,
                               self._partial if action.enable_partials else None, action.index)
        elif isinstance(action, s.Audio):
            self.segment.feed(action.pcm)
        elif isinstance(action, s.EndSegment):
            await self._final(action.reason)
        elif isinstance(action, s.CancelSegment):
            self.segment.cancel()
        elif isinstance(action, s.PauseSegment):
            # the engine bounds what pauses may cost a segment (engine.Segment.pause); refusals counted
            engine_segment = self.segment.segment
            if engine_segment is not None and not engine_segment.pause():
                self.ctx.metrics.count("pauses_ignored_total", dialect=self.dialect)
        elif isinstance(action, s.ResumeSegment):
            self.segment.resume()
        elif isinstance(action, s.HealthWanted):
            await self._send(p.Health(**self.ctx.health_fields()))
        elif isinstance(action, s.Close):
            self._closed = True
            # not awaited here: the handshake needs run() to keep reading (see there)
            closing = self.ws.close(action.code.value, action.reason)
            self._close_task = asyncio.get_running_loop().create_task(closing)

    async def _final(self, reason: p.FinalReason) -> None:
        index = self._index
        result = await self.segment.finish(reason)
        if result is None:
            return
        self.log.info("final", segment=index, audio_ms=result.t_ms, decode_ms=result.decode_ms,
                      chars=len(result.text), reason=reason)
        for action in self.machine.final(result, reason, index):
            await self._do(action)

    async def _partial(self, result: PartialResult) -> None:
        for action in self.machine.partial(result):
            if isinstance(action, s.Send):
                await self._send(action.message)

    async def _send(self, message: p.Message) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(p.encode(message))
