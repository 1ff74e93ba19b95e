"""``STT_BACKEND=ws``: the GPU server's ``/stt`` protocol over one persistent WebSocket.

The connection is kept open between utterances (no handshake on the hot path) and reconnected in the
background with jittered, capped backoff. Audio is streamed while the gate is open, so the server's
partials flow live.

What the protocol means (which segment is whose, which final answers which utterance, the runaway
segments the server cuts, when a hint may be sent) is decided in ``stt_core.client.ClientSession``,
without I/O, and tested there against the server's own session machine. This module only carries its
frames and turns its events into the worker's backend events.

Nothing said is lost when the server vanishes, refuses, cuts a segment short or stays silent: the
utterance's stream fails (``StreamFailed``) and the worker's utterance machine, which keeps every
utterance's audio until its final, hands that audio to the local engine. The utterance machine also
owns the final timeout (it cancels a stream whose final is too late); nothing here waits for a final.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import structlog
from stt_core.client import (
    Action,
    ClientSession,
    Failed,
    FinalFor,
    PartialFor,
    SendBytes,
    SendText,
    ServerModel,
    ServerProblem,
)
from stt_core.daemon.backoff import Backoff
from stt_core.options import SpeechOptions
from stt_core.protocol import CloseCode
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State

from .backend import (
    BackendName,
    ConnectionChanged,
    Emit,
    FinalText,
    PartialText,
    StreamFailed,
)
from .probe import http_health, probe_delay, public_url
from .settings import WorkerSettings

log = structlog.get_logger(__name__)

# at most this much queued audio is merged into one binary frame (200 ms at 16 kHz)
COALESCE_BYTES = 6400
PING_INTERVAL_S = 10.0
# on a less preferred server, the preferred ones are checked this often (at most; RECONNECT_MAX_S if lower)
PROBE_MAX_S = 10.0


@dataclass(frozen=True)
class _Handoff:
    """A connection to a preferred server, made and waiting to take over the session."""

    index: int
    ws: ClientConnection


class WsBackend:
    """The ``Backend`` of ``backend.py`` over ``/stt``. Everything it reports goes out through
    ``emit``, on the event loop: from its tasks, or from inside a stream's call (a stream opened
    while disconnected fails in ``open``; the worker's ``emit`` takes events up after the call).
    Streams are called on the event loop too.

    WS_URL may list several servers, most preferred first. The connection loop goes round them: each
    is tried once per round, the next at once when one refuses, is unreachable or drops the
    connection, and the jittered, capped backoff only between rounds. While connected to a less
    preferred server, the preferred ones are checked in the background (``/health``, then a
    WebSocket handshake); one that answers is switched to only when no stream is open (between
    utterances), the new connection made before the old one is let go, so no utterance meets a gap."""

    name: BackendName = "ws"

    def __init__(self, settings: WorkerSettings, emit: Emit) -> None:
        self.settings = settings
        self._emit = emit
        # /stt takes the speech options once per connection, in init: the worker's are fixed
        options = settings.speech_options()
        self.session = ClientSession(session_id=settings.site_id, options=options)
        self.session_language = options.language
        self.backoff = Backoff(initial=0.5, cap=settings.reconnect_max_s)
        self.urls = settings.ws_urls
        self._index = 0  # the server of the connection in use, or of the last one tried
        self._ws: ClientConnection | None = None
        self._model = "?"
        self._draft_model: str | None = None
        self._task: asyncio.Task[None] | None = None
        # what the writer sends, in order: audio (bytes) and text messages (str)
        self._outbox: collections.deque[bytes | str] = collections.deque()
        self._outbox_ready = asyncio.Event()
        # the first connection is up, or the first round found none
        self._settled = asyncio.Event()
        # the streams that await their final on this connection: a switch waits until there are none
        self._open: set[str] = set()
        self._quiet_reconnect = False  # the last connection ended on the server's idle timer
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing: set[asyncio.Task[None]] = set()  # connections let go after a switch
        self._probe_s = min(PROBE_MAX_S, settings.reconnect_max_s)
        token = settings.ws_token
        self._headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else None
        # built once, with the backend: a wss:// server is verified (system store or WS_CA_FILE)
        self._tls = settings.ws_tls
        for url in self.urls:
            if token is not None and not url.startswith("wss://") and not is_loopback(url):
                # anyone on the network path can read the token and open sessions as this worker
                log.warning("token_in_clear", url=public_url(url),
                            hint="serve the server with TLS_CERT_FILE/TLS_KEY_FILE and use a wss:// WS_URL "
                                 "(scripts/make-certs.sh; WS_CA_FILE for a home CA)")

    @property
    def model(self) -> str:
        return self._model

    @property
    def draft_model(self) -> str | None:
        return self._draft_model

    @property
    def connected(self) -> bool:
        return self._ws is not None and self.session.is_connected

    @property
    def url(self) -> str:
        """The server in use (or tried last), as the retained state shows it (no query: no token)."""
        return public_url(self.urls[self._index])

    async def start(self) -> None:
        """Start the connection loop and give a server that is up the chance to be used by the very
        first utterance (up to ``WS_CONNECT_TIMEOUT_S`` a server of the list); an unreachable one is
        not an error."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ws-backend")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.ws_connect_timeout_s * len(self.urls)):
                await self._settled.wait()

    async def stop(self) -> None:
        """Close the connection. The worker is stopping: streams still open get no event (a failure
        now would start a failover on the way out)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._outbox.clear()
        await asyncio.gather(*self._closing, return_exceptions=True)

    def open(self, utterance_id: str, options: SpeechOptions) -> WsStream:
        # options are not sent per utterance: /stt decodes every segment of a connection with init's
        stream = WsStream(self, utterance_id)
        events = self.session.open(utterance_id)  # fails at once while disconnected
        if not events:
            self._track(utterance_id)
        self._dispatch(events)
        return stream

    def _track(self, key: str) -> None:
        self._open.add(key)
        self._idle.clear()

    def _untrack(self, key: str) -> None:
        self._open.discard(key)
        if not self._open:
            self._idle.set()

    # ---- connection -------------------------------------------------------------------------

    async def _connect(self, index: int) -> ClientConnection:
        s, url = self.settings, self.urls[index]
        return await connect(url, additional_headers=self._headers, open_timeout=s.ws_connect_timeout_s,
                             ping_interval=PING_INTERVAL_S, ping_timeout=PING_INTERVAL_S,
                             max_size=1 << 20, ssl=self._tls if url.startswith("wss://") else None)

    async def _run(self) -> None:
        while True:
            index = 0
            while index < len(self.urls):  # one round: each server once, most preferred first
                handoff = await self._attempt(index)
                while handoff is not None:  # switched to a preferred server: the round goes on from it
                    index = handoff.index
                    handoff = await self._attempt(index, handoff.ws)
                index += 1
            self._settled.set()
            await asyncio.sleep(self.backoff.next_delay())

    async def _attempt(self, index: int, attached: ClientConnection | None = None) -> _Handoff | None:
        """Connect to server ``index`` (or take ``attached``, a connection a switch has already made
        the session's) and serve it until it ends: None, or the switch to a preferred server."""
        url = public_url(self.urls[index])
        self._index = index
        try:
            while True:
                ws = attached or await self._connect(index)
                attached_now, attached = attached is not None, None
                handoff: _Handoff | None = None
                try:
                    handoff = await self._serve(ws, index, attached=attached_now)
                finally:
                    if handoff is None:
                        await ws.close()
                    else:  # the old server's close handshake must not hold up the new one's audio
                        self._close_later(ws)
                if handoff is not None or not self._quiet_reconnect:
                    return handoff
                # the server closed a session that had been quiet (IDLE_TIMEOUT_S): the same server
                # again at once, and nobody is told of an outage that was none
        except asyncio.CancelledError:
            raise
        except InvalidStatus as exc:
            log.warning("server_refused", url=url, status=exc.response.status_code)
        except ssl.SSLCertVerificationError as exc:
            # before OSError (it is one): the operator's to fix, said as such
            log.warning("server_certificate_rejected", url=url, error=exc.verify_message or str(exc),
                        hint="WS_CA_FILE names the CA that signed the server's certificate")
        except (OSError, TimeoutError, ConnectionClosed) as exc:
            log.warning("server_unreachable", url=url, error=str(exc) or type(exc).__name__)
        except Exception as exc:  # never let the reconnect loop die
            log.warning("server_error", url=url, error=repr(exc))
        if self._quiet_reconnect:  # the reconnection after a quiet close failed: an outage after all
            self._quiet_reconnect = False
            self._emit(ConnectionChanged(backend="ws", connected=False))
        return None

    def _attach(self, ws: ClientConnection, index: int) -> None:
        """Make ``ws`` the session's connection: its init first in the outbox."""
        self._outbox.clear()
        self._ws, self._index = ws, index
        self._dispatch(self.session.connected())
        log.info("server_connected", url=self.url, preference=index + 1, servers=len(self.urls))
        self._emit(ConnectionChanged(backend="ws", connected=True))  # the state names the server
        self._settled.set()

    async def _serve(self, ws: ClientConnection, index: int, attached: bool) -> _Handoff | None:
        """One connection, until it ends or a preferred server takes over: a reader task, a writer
        task and, on a less preferred server, a watcher of the preferred ones."""
        if not attached:
            self._attach(ws, index)
        loop = asyncio.get_running_loop()
        reader = loop.create_task(self._reader(ws), name="ws-reader")
        writer = loop.create_task(self._writer(ws), name="ws-writer")
        handoff: _Handoff | None = None
        try:
            handoff, done = await self._until_end_or_switch(reader, writer, index)
        finally:
            if handoff is None:
                self._ws = None
            reader.cancel()
            writer.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)
        if handoff is not None:
            return handoff
        # A room where nobody speaks for IDLE_TIMEOUT_S sends no audio, and the server closes such a
        # session (its idle timer counts audio only). That is no outage: with no utterance open,
        # the worker reconnects at once and does not announce a disconnection (which would load
        # the local fallback's model, 150 MB, for nothing).
        self._quiet_reconnect = ws.close_code == CloseCode.IDLE.value and not self._open
        self._outbox.clear()
        self._open.clear()
        self._idle.set()
        self._dispatch(self.session.lost("connection to the server lost"))
        if self._quiet_reconnect:
            log.info("server_idle_close", url=public_url(self.urls[index]), hint="reconnecting at once")
            return None
        self._emit(ConnectionChanged(backend="ws", connected=False))
        for task in done:
            task.result()  # a ConnectionClosed or the like: logged by _attempt
        log.info("server_closed", url=public_url(self.urls[index]), code=ws.close_code,
                 reason=ws.close_reason)
        return None

    async def _until_end_or_switch(self, reader: asyncio.Task[None], writer: asyncio.Task[None],
                                   index: int) -> tuple[_Handoff | None, set[asyncio.Task[None]]]:
        """Until the reader or the writer ends (returned, done), or a preferred server's connection
        has taken over the session (returned, made the session's: nothing is open on this one)."""
        if index == 0:
            done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            return None, done
        loop = asyncio.get_running_loop()
        watcher = loop.create_task(self._watch_preferred(index), name="ws-watcher")
        try:
            while True:
                tasks: set[asyncio.Task[Any]] = {reader, writer, watcher}
                ended, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                if reader in ended or writer in ended:
                    return None, {t for t in (reader, writer) if t in ended}
                found = watcher.result()
                if found.ws.state is not State.OPEN:  # that server went away again while we waited
                    watcher = loop.create_task(self._watch_preferred(index), name="ws-watcher")
                elif self._open:  # an utterance began in between: the switch waits for its end
                    watcher = loop.create_task(self._hold(found), name="ws-watcher")
                else:
                    # nothing is open and nothing has run since that was checked: the session moves
                    # to the new connection now, so a stream opened from here on goes there
                    reader.cancel()
                    writer.cancel()
                    log.info("server_switch", url=self.url, to=public_url(self.urls[found.index]))
                    self._attach(found.ws, found.index)
                    return found, set()
        finally:
            if not watcher.done():
                watcher.cancel()  # a held connection is closed by _hold
            elif not watcher.cancelled() and watcher.exception() is None:
                found = watcher.result()
                if found.ws is not self._ws:
                    self._close_later(found.ws)  # found as this connection ended: not taken

    async def _watch_preferred(self, index: int) -> _Handoff:
        """Every few seconds, the servers preferred to ``index``, in order: the first whose ``/health``
        answers and which takes a WebSocket is held, and returned at the first moment nothing is open."""
        s = self.settings
        while True:
            await asyncio.sleep(probe_delay(self._probe_s))
            for j in range(index):
                url = self.urls[j]
                if not await http_health(url, self._tls, s.ws_connect_timeout_s):
                    continue
                try:
                    ws = await self._connect(j)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # healthy but refusing (busy, a token): not now
                    log.info("preferred_server_refused", url=public_url(url), error=str(exc) or repr(exc))
                    continue
                log.info("preferred_server_back", url=public_url(url), waiting_for=len(self._open))
                return await self._hold(_Handoff(j, ws))

    async def _hold(self, handoff: _Handoff) -> _Handoff:
        """Keep the preferred server's connection until no stream is open on the current one."""
        try:
            await self._idle.wait()
        except BaseException:
            self._close_later(handoff.ws)
            raise
        return handoff

    def _close_later(self, ws: ClientConnection) -> None:
        task = asyncio.get_running_loop().create_task(ws.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _reader(self, ws: ClientConnection) -> None:
        async for raw in ws:
            session = self.session
            events = session.receive_text(raw) if isinstance(raw, str) else session.receive_bytes(raw)
            self._dispatch(events)
            if self.session.ready:
                # reset only once the server serves the session: a busy one accepts, then refuses
                self.backoff.reset()
            if any(isinstance(e, ServerProblem) and e.fatal for e in events):
                await ws.close(1000, "refused by the server")
                return

    async def _writer(self, ws: ClientConnection) -> None:
        while True:
            if not self._outbox:
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
                continue
            item = self._outbox.popleft()
            if isinstance(item, bytes):
                # Audio that queued up (a WAV read faster than real time, a slow link) goes out as
                # fewer, larger frames: the server limits frames per second, not bytes. Text messages
                # keep their place between the audio around them.
                chunks = [item]
                size = len(item)
                while self._outbox:
                    nxt = self._outbox[0]
                    if not isinstance(nxt, bytes) or size + len(nxt) > COALESCE_BYTES:
                        break
                    self._outbox.popleft()
                    chunks.append(nxt)
                    size += len(nxt)
                item = b"".join(chunks)
            await ws.send(item)

    # ---- what the session returns -----------------------------------------------------------

    def _dispatch(self, actions: Sequence[Action]) -> None:
        for action in actions:
            if isinstance(action, SendText | SendBytes):
                self._outbox.append(action.text if isinstance(action, SendText) else action.data)
                self._outbox_ready.set()
            elif isinstance(action, ServerProblem):
                log.warning("server_error_message", code=action.code, detail=action.message,
                            fatal=action.fatal)
            elif isinstance(action, ServerModel):
                self._model, self._draft_model = action.model, action.draft_model
                if self.connected:
                    # the worker's retained state names the model: say it again
                    self._emit(ConnectionChanged(backend="ws", connected=True))
            else:
                if isinstance(action, FinalFor | Failed):
                    self._untrack(action.key)
                self._emit(self._event(action))

    def _event(self, action: PartialFor | FinalFor | Failed) -> PartialText | FinalText | StreamFailed:
        if isinstance(action, PartialFor):
            return PartialText(utterance_id=action.key, backend="ws", text=action.text, t_ms=action.t_ms)
        if isinstance(action, Failed):
            return StreamFailed(utterance_id=action.key, backend="ws", reason=action.reason)
        f = action.final
        return FinalText(utterance_id=action.key, backend="ws", text=f.text, confidence=f.confidence,
                         language=f.language or self.session_language, model=f.model or self._model,
                         decode_ms=f.decode_ms, speculative=f.speculative)


def is_loopback(url: str) -> bool:
    """Whether the URL's host is this machine (a token sent there in clear stays on it)."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WsStream:
    """One utterance. Every call goes through the session, which ignores a stream that has already
    ended, failed or been cancelled, so a stream neither raises nor keeps state of its own."""

    def __init__(self, backend: WsBackend, utterance_id: str) -> None:
        self._backend = backend
        self.utterance_id = utterance_id

    def feed(self, pcm16: bytes) -> None:
        self._backend._dispatch(self._backend.session.audio(self.utterance_id, pcm16))

    def pause(self) -> None:
        self._backend._dispatch(self._backend.session.pause(self.utterance_id))

    def resume(self) -> None:
        self._backend._dispatch(self._backend.session.resume(self.utterance_id))

    def finish(self) -> None:
        self._backend._dispatch(self._backend.session.end(self.utterance_id))

    def cancel(self) -> None:
        # its segment's final may still come, and is dropped: the connection is free for a switch
        self._backend._untrack(self.utterance_id)
        self._backend._dispatch(self._backend.session.cancel(self.utterance_id))
