"""``STT_BACKEND=ws``: the GPU server's ``/stt`` protocol over one persistent WebSocket.

The connection is kept open between utterances (no handshake on the hot path) and reconnected in the
background with jittered, capped backoff. Audio is streamed while the gate is open, so the server's
partials flow live. Every utterance's audio is also kept here until its final arrives: when the server
vanishes, refuses or stays silent, the failover hands that audio to the local engine.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from collections.abc import Callable

import structlog
from stt_core import protocol as p
from stt_core.backoff import Backoff
from stt_core.errors import PeerError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .backend import BackendUnavailable, PartialSink, Transcript
from .settings import WorkerSettings

log = structlog.get_logger(__name__)

# at most this much queued audio is merged into one binary frame (200 ms at 16 kHz)
COALESCE_BYTES = 6400


class WsBackend:
    name = "ws"

    def __init__(self, settings: WorkerSettings,
                 on_connection_change: Callable[[bool], None] | None = None) -> None:
        self.settings = settings
        self.ws: ClientConnection | None = None
        self._model = "?"
        self._task: asyncio.Task[None] | None = None
        # what the writer sends, in order: audio (bytes) and control messages (str)
        self._outbox: collections.deque[bytes | str] = collections.deque()
        self._outbox_ready = asyncio.Event()
        self._open: WsStream | None = None  # the stream whose audio is being sent
        self._awaiting: collections.deque[WsStream] = collections.deque()  # sent `end`, final due, in order
        self._segment = 0  # segments begun on this connection (the server numbers them the same way)
        self.server_protocol = 1  # from the server's `ready`; 2 understands pause/resume
        self._on_change = on_connection_change
        self.backoff = Backoff(initial=0.5, cap=settings.reconnect_max_s)
        self._connected_once = asyncio.Event()

    @property
    def model(self) -> str:
        return self._model

    @property
    def connected(self) -> bool:
        return self.ws is not None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())
        # give a server that is up the chance to be used by the very first utterance
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.ws_connect_timeout_s):
                await self._connected_once.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.ws is not None:
            await self.ws.close()

    def open(self, on_partial: PartialSink | None) -> WsStream:
        stream = WsStream(self, on_partial)
        if self.ws is None:
            stream.fail("server not connected")
        else:
            if self._open is not None:
                # the previous utterance has ended (the gate holds one at a time) but its final is not
                # asked for yet (finals go out in order, behind slower ones): end its segment now, or
                # this utterance's audio would be appended to it
                self.send_end(self._open)
            self._open = stream
        return stream

    # ---- connection -------------------------------------------------------------------------

    async def _run(self) -> None:
        s = self.settings
        headers = {"Authorization": f"Bearer {s.ws_token.get_secret_value()}"} if s.ws_token else None
        while True:
            try:
                async with connect(s.ws_url, additional_headers=headers, open_timeout=s.ws_connect_timeout_s,
                                   ping_interval=10, ping_timeout=10, max_size=1 << 20) as ws:
                    await ws.send(p.encode_init(session_id=f"{s.site_id}", sample_rate=16_000,
                                                lang=s.whisper_lang))
                    self.ws = ws
                    self._segment = 0
                    self.server_protocol = 1  # until its `ready` says otherwise
                    self.backoff.reset()
                    log.info("server_connected", url=s.ws_url)
                    self._changed(True)
                    self._connected_once.set()
                    writer = asyncio.get_running_loop().create_task(self._writer(ws))
                    try:
                        await self._reader(ws)
                    finally:
                        writer.cancel()
            except asyncio.CancelledError:
                raise
            except InvalidStatus as exc:
                log.warning("server_refused", url=s.ws_url, status=exc.response.status_code)
            except (OSError, TimeoutError, ConnectionClosed) as exc:
                log.warning("server_unreachable", url=s.ws_url, error=str(exc) or type(exc).__name__)
            except Exception as exc:  # never let the reconnect loop die
                log.warning("server_error", url=s.ws_url, error=repr(exc))
            was = self.ws is not None
            self._lost("connection to the server lost")
            if was:
                self._changed(False)
            await asyncio.sleep(self.backoff.next_delay())

    def _changed(self, up: bool) -> None:
        if self._on_change is not None:
            self._on_change(up)

    def _lost(self, why: str) -> None:
        self.ws = None
        self._outbox.clear()
        for stream in [*self._awaiting, *([self._open] if self._open else [])]:
            stream.fail(why)
        self._awaiting.clear()
        self._open = None

    async def _writer(self, ws: ClientConnection) -> None:
        while True:
            if not self._outbox:
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
                continue
            item = self._outbox.popleft()
            if isinstance(item, bytes):
                # Audio that queued up (a WAV read faster than real time, a slow link) goes out as
                # fewer, larger frames: the server limits frames per second, not bytes. Control
                # messages keep their place between the audio around them.
                chunks = [item]
                size = len(item)
                while size < COALESCE_BYTES and self._outbox and isinstance(self._outbox[0], bytes):
                    nxt = self._outbox.popleft()
                    assert isinstance(nxt, bytes)
                    chunks.append(nxt)
                    size += len(nxt)
                item = b"".join(chunks)
            await ws.send(item)

    def _post(self, item: bytes | str) -> None:
        self._outbox.append(item)
        self._outbox_ready.set()

    async def _reader(self, ws: ClientConnection) -> None:
        async for raw in ws:
            if not isinstance(raw, str):
                continue
            try:
                msg = p.decode_server_message(raw)
            except PeerError as exc:
                log.warning("server_message_invalid", detail=exc.message)
                continue
            self._received(msg)

    def _received(self, msg: p.Ready | p.Partial | p.Final | p.Health | p.Error) -> None:
        if isinstance(msg, p.Ready):
            self.server_protocol = msg.protocol
            known, self._model = self._model, msg.model
            if known != msg.model:
                self._changed(True)  # the worker's retained state names the model: say it again
        elif isinstance(msg, p.Partial):
            self._on_partial(msg)
        elif isinstance(msg, p.Final):
            self._on_final(msg)
        elif isinstance(msg, p.Error):
            log.warning("server_error_message", code=msg.code, detail=msg.message)
            if msg.code in ("server_busy", "shutting_down", "unauthorized"):
                self._lost(f"server said {msg.code}")
        # health messages need no action

    def _on_partial(self, msg: p.Partial) -> None:
        target = self._open
        if target is None:
            return
        if msg.segment and target.segment != msg.segment:
            return  # a late partial of an utterance that has already ended
        target.partial(msg.text, msg.t_ms)

    def _on_final(self, msg: p.Final) -> None:
        if msg.model:
            self._model = msg.model
        if self._awaiting:
            self._awaiting.popleft().resolve(msg)
        elif self._open is not None and msg.reason == "max_segment":
            # the server closed a runaway segment itself; the rest of ours is a new segment
            self._segment += 1

    # ---- used by WsStream -------------------------------------------------------------------

    def send_audio(self, stream: WsStream, pcm16: bytes) -> bool:
        if self.ws is None or stream is not self._open:
            return False
        if not stream.sent_any:
            self._segment += 1
            stream.segment = self._segment
        self._post(pcm16)
        return True

    def send_end(self, stream: WsStream) -> bool:
        if self.ws is None or stream is not self._open:
            return False
        self._open = None
        if not stream.sent_any:
            return False  # nothing was sent: the server would answer empty_segment
        stream.ended = True
        self._awaiting.append(stream)
        self._post(json.dumps({"type": "end"}))
        return True

    def send_hint(self, stream: WsStream, kind: str) -> None:
        """`pause` / `resume` (protocol 2): lets the server start the final during the hangover.
        A server that never said `ready` with protocol >= 2 is not sent them."""
        if self.ws is not None and stream is self._open and stream.sent_any and self.server_protocol >= 2:
            self._post(json.dumps({"type": kind}))

    def give_up(self, stream: WsStream) -> None:
        """A final that never came: the connection's state is now unknown, so start afresh."""
        if stream in self._awaiting and self.ws is not None:
            asyncio.get_running_loop().create_task(self.ws.close(1000, "final timeout"))


class WsStream:
    def __init__(self, backend: WsBackend, on_partial: PartialSink | None) -> None:
        self.backend = backend
        self.on_partial = on_partial
        self.sent_any = False
        self.ended = False  # `end` sent: the final is due
        self.segment = 0
        self.failure: str | None = None
        self._final: asyncio.Future[p.Final] = asyncio.get_running_loop().create_future()
        self._failure_listeners: list[Callable[[str], None]] = []

    def on_failure(self, fn: Callable[[str], None]) -> None:
        self._failure_listeners.append(fn)
        if self.failure is not None:
            fn(self.failure)

    def feed(self, pcm16: bytes) -> None:
        if self.failure is None:
            if self.backend.send_audio(self, pcm16):
                self.sent_any = True
            else:
                self.fail("server not connected")

    def pause(self) -> None:
        if self.failure is None:
            self.backend.send_hint(self, "pause")

    def resume(self) -> None:
        if self.failure is None:
            self.backend.send_hint(self, "resume")

    def partial(self, text: str, t_ms: int) -> None:
        if self.on_partial is not None and self.failure is None:
            asyncio.get_running_loop().create_task(self.on_partial(text, t_ms))

    def resolve(self, msg: p.Final) -> None:
        if not self._final.done():
            self._final.set_result(msg)

    def fail(self, why: str) -> None:
        if self.failure is None:
            self.failure = why
            if not self._final.done():
                self._final.set_exception(BackendUnavailable(why))
            for fn in self._failure_listeners:
                fn(why)

    async def finish(self) -> Transcript:
        if self.failure is None and not self.ended and not self.backend.send_end(self):
            self.fail("server not connected" if self.sent_any or self.backend.ws is None else "no audio sent")
        try:
            async with asyncio.timeout(self.backend.settings.ws_final_timeout_s):
                msg = await self._final
        except TimeoutError:
            self.backend.give_up(self)
            self.fail(f"no final within {self.backend.settings.ws_final_timeout_s} s")
            raise BackendUnavailable(self.failure or "timeout") from None
        if msg.reason == "error":
            # the server closed the segment early on an error: its text may be cut; the failover
            # has all the audio
            self.fail("the server ended the segment on an error")
            raise BackendUnavailable(self.failure or "error")
        return Transcript(text=msg.text, confidence=msg.confidence,
                          language=msg.language or self.backend.settings.whisper_lang,
                          backend="ws", model=msg.model or self.backend.model, decode_ms=msg.decode_ms,
                          speculative=msg.speculative)

    def cancel(self) -> None:
        # an utterance dropped by the gate (too short): end it so the connection's state stays in step
        if self.failure is None and self.backend.send_end(self):
            self._final.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)
        self.fail("cancelled")
