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
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .backend import (
    BackendName,
    ConnectionChanged,
    Emit,
    FinalText,
    PartialText,
    StreamFailed,
)
from .settings import WorkerSettings

log = structlog.get_logger(__name__)

# at most this much queued audio is merged into one binary frame (200 ms at 16 kHz)
COALESCE_BYTES = 6400
PING_INTERVAL_S = 10.0


class WsBackend:
    """The ``Backend`` of ``backend.py`` over ``/stt``. Everything it reports goes out through
    ``emit``, on the event loop: from its tasks, or from inside a stream's call (a stream opened
    while disconnected fails in ``open``; the worker's ``emit`` takes events up after the call).
    Streams are called on the event loop too."""

    name: BackendName = "ws"

    def __init__(self, settings: WorkerSettings, emit: Emit) -> None:
        self.settings = settings
        self._emit = emit
        # /stt takes the speech options once per connection, in init: the worker's are fixed
        options = settings.speech_options()
        self.session = ClientSession(session_id=settings.site_id, options=options)
        self.session_language = options.language
        self.backoff = Backoff(initial=0.5, cap=settings.reconnect_max_s)
        self._ws: ClientConnection | None = None
        self._model = "?"
        self._task: asyncio.Task[None] | None = None
        # what the writer sends, in order: audio (bytes) and text messages (str)
        self._outbox: collections.deque[bytes | str] = collections.deque()
        self._outbox_ready = asyncio.Event()
        self._connected_once = asyncio.Event()
        # built once, with the backend: a wss:// server is verified (system store or WS_CA_FILE)
        self._tls = settings.ws_tls
        if settings.ws_token is not None and not settings.ws_url.startswith("wss://") \
                and not is_loopback(settings.ws_url):
            # anyone on the network path can read the token and open sessions as this worker
            log.warning("token_in_clear", url=settings.ws_url,
                        hint="serve the server with TLS_CERT_FILE/TLS_KEY_FILE and use a wss:// WS_URL "
                             "(scripts/make-certs.sh; WS_CA_FILE for a home CA)")

    @property
    def model(self) -> str:
        return self._model

    @property
    def connected(self) -> bool:
        return self._ws is not None and self.session.is_connected

    async def start(self) -> None:
        """Start the connection loop and give a server that is up the chance to be used by the very
        first utterance (up to ``WS_CONNECT_TIMEOUT_S``); an unreachable one is not an error."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ws-backend")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.ws_connect_timeout_s):
                await self._connected_once.wait()

    async def stop(self) -> None:
        """Close the connection. The worker is stopping: streams still open get no event (a failure
        now would start a failover on the way out)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._outbox.clear()

    def open(self, utterance_id: str, options: SpeechOptions) -> WsStream:
        # options are not sent per utterance: /stt decodes every segment of a connection with init's
        stream = WsStream(self, utterance_id)
        self._dispatch(self.session.open(utterance_id))  # fails at once while disconnected
        return stream

    # ---- connection -------------------------------------------------------------------------

    async def _run(self) -> None:
        s = self.settings
        headers = {"Authorization": f"Bearer {s.ws_token.get_secret_value()}"} if s.ws_token else None
        while True:
            try:
                async with connect(s.ws_url, additional_headers=headers, open_timeout=s.ws_connect_timeout_s,
                                   ping_interval=PING_INTERVAL_S, ping_timeout=PING_INTERVAL_S,
                                   max_size=1 << 20, ssl=self._tls) as ws:
                    await self._serve(ws)
            except asyncio.CancelledError:
                raise
            except InvalidStatus as exc:
                log.warning("server_refused", url=s.ws_url, status=exc.response.status_code)
            except ssl.SSLCertVerificationError as exc:
                # before OSError (it is one): the operator's to fix, said as such
                log.warning("server_certificate_rejected", url=s.ws_url, error=exc.verify_message or str(exc),
                            hint="WS_CA_FILE names the CA that signed the server's certificate")
            except (OSError, TimeoutError, ConnectionClosed) as exc:
                log.warning("server_unreachable", url=s.ws_url, error=str(exc) or type(exc).__name__)
            except Exception as exc:  # never let the reconnect loop die
                log.warning("server_error", url=s.ws_url, error=repr(exc))
            await asyncio.sleep(self.backoff.next_delay())

    async def _serve(self, ws: ClientConnection) -> None:
        """One connection, until it ends: a reader task and a writer task."""
        self._outbox.clear()
        self._ws = ws
        self._dispatch(self.session.connected())  # init, first in the outbox
        log.info("server_connected", url=self.settings.ws_url)
        self._emit(ConnectionChanged(backend="ws", connected=True))
        self._connected_once.set()
        loop = asyncio.get_running_loop()
        reader = loop.create_task(self._reader(ws), name="ws-reader")
        writer = loop.create_task(self._writer(ws), name="ws-writer")
        try:
            done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._ws = None
            reader.cancel()
            writer.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)
        self._outbox.clear()
        self._dispatch(self.session.lost("connection to the server lost"))
        self._emit(ConnectionChanged(backend="ws", connected=False))
        for task in done:
            task.result()  # a ConnectionClosed or the like: logged by _run
        log.info("server_closed", url=self.settings.ws_url, code=ws.close_code, reason=ws.close_reason)

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
                self._model = action.model
                if self.connected:
                    # the worker's retained state names the model: say it again
                    self._emit(ConnectionChanged(backend="ws", connected=True))
            else:
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
        self._backend._dispatch(self._backend.session.cancel(self.utterance_id))
