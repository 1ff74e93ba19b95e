"""Seed 004's Socket.IO server on ``SOCKETIO_PORT`` (2700, the seed's): python-socketio's
``AsyncServer`` on aiohttp, the library and transport its clients already speak, with the seed's six
events. Each ``clientId`` has a transcriber (``socketio_session.SocketIoSession``) whose segment
actions run on the shared engine; its transcriptions go to the Socket.IO room named after the
``clientId`` (monitoring clients join it with ``subscribe_transcripts``) and to the sender, once.

Every connection counts against ``MAX_SESSIONS``; with ``STT_TOKEN`` set a client passes it as the
connect ``auth`` ``{"token": ...}``, ``?token=`` or ``Authorization: Bearer``.
"""

from __future__ import annotations

import asyncio
import hmac
import ssl
import time
from typing import Any
from urllib.parse import parse_qs

import socketio
import structlog
from aiohttp import web
from stt_core import protocol as p
from stt_core import session as s
from stt_core.engine import PartialResult
from stt_core.errors import PeerError

from .context import REFUSALS, Context, Dialect, SegmentRunner, peer_address
from .http import origin_ok
from .socketio_session import PartialTranscription, SocketIoSession, Transcription, audio_of, client_id_of

log = structlog.get_logger(__name__)
DIALECT: Dialect = "socketio"
MAX_CLIENT_IDS_PER_SID = 16  # a browser tab streams one; a gateway a few


class Transcriber:
    """One clientId's machine and segment; its actions are carried out one batch at a time."""

    def __init__(self, listener: SocketIoListener, client_id: str, owner: str) -> None:
        st = listener.ctx.settings
        self.listener = listener
        self.owner = owner  # the sid whose audio it transcribes
        self.machine = SocketIoSession(client_id, limits=s.Limits(
            max_frame_bytes=st.max_frame_bytes, max_segment_s=st.max_segment_s,
            max_frames_per_s=st.max_frames_per_s), vad=st.vad_config())
        self.segment = SegmentRunner(listener.ctx, DIALECT, site=client_id)
        self.lock = asyncio.Lock()

    async def apply(self, actions: list[s.Action]) -> None:
        async with self.lock:
            for action in actions:
                await self._do(action)

    async def _do(self, action: s.Action) -> None:
        if isinstance(action, s.Send):
            await self.listener.send(self, action.message)
        elif isinstance(action, s.OpenSegment):
            self.segment.start(action.sample_rate, action.options, self._partial, action.index)
        elif isinstance(action, s.Audio):
            self.segment.feed(action.pcm)
        elif isinstance(action, s.PauseSegment):
            self.segment.pause()
        elif isinstance(action, s.ResumeSegment):
            self.segment.resume()
        elif isinstance(action, s.CancelSegment):
            self.segment.cancel()
        elif isinstance(action, s.EndSegment):
            index = self.segment.index
            result = await self.segment.finish(action.reason)
            if result is not None:
                log.info("final", client_id=self.machine.client_id, segment=index, audio_ms=result.t_ms,
                         decode_ms=result.decode_ms, chars=len(result.text))
                for reply in self.machine.final(result, action.reason, index):
                    await self._do(reply)

    async def _partial(self, r: PartialResult) -> None:
        for action in self.machine.partial(r):
            if isinstance(action, s.Send):
                await self.listener.send(self, action.message)


class Connected:
    """A Socket.IO connection as the server's session count sees it."""

    def __init__(self, listener: SocketIoListener, sid: str) -> None:
        self.listener, self.sid = listener, sid

    async def shutdown(self) -> None:
        await self.listener.release(self.sid, "shutdown")


class SocketIoListener:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp", logger=False, engineio_logger=False,
            max_http_buffer_size=max(1 << 20, ctx.settings.max_frame_bytes * 4),
            # [] turns engineio's own CORS check off: the Origin is checked at connect, with the
            # WebSocket paths' rule (own page or ALLOWED_ORIGINS), counted, and never logged as an ERROR
            cors_allowed_origins=[])
        self.app = web.Application()
        self.sio.attach(self.app)
        self.transcribers: dict[str, Transcriber] = {}
        self.connected: dict[str, Connected] = {}
        self._runner: web.AppRunner | None = None
        for name in ("connect", "disconnect", "audio_data", "subscribe_transcripts", "cleanup_client",
                     "client_disconnected"):
            self.sio.on(name, getattr(self, f"_on_{name}"))

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> list[tuple[str, int]]:
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=tls)
        await site.start()
        return [(str(a[0]), int(a[1])) for a in self._runner.addresses]

    async def close(self) -> None:
        """Open utterances still get their transcriptions, then every connection is closed."""
        await asyncio.gather(*(self.release(sid, "shutdown") for sid in list(self.connected)),
                             return_exceptions=True)
        await self.sio.shutdown()
        if self._runner is not None:
            await self._runner.cleanup()

    # ---- the seed's six events --------------------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        origin, host = environ.get("HTTP_ORIGIN"), str(environ.get("HTTP_HOST", ""))
        if origin and not origin_ok(str(origin), host, self.ctx.settings.origins):
            self.ctx.metrics.error("origin_not_allowed", dialect=DIALECT)
            raise socketio.exceptions.ConnectionRefusedError(
                {"code": "origin_not_allowed", "message": "add this page's origin to ALLOWED_ORIGINS"})
        peer = _peer(environ)
        refusal = self.ctx.refusal(peer)
        if refusal is not None:
            self.ctx.metrics.error(refusal, dialect=DIALECT)
            raise socketio.exceptions.ConnectionRefusedError({"code": refusal, "message": REFUSALS[refusal]})
        token = self.ctx.settings.stt_token
        if token is not None and not _token_ok(environ, auth, token.get_secret_value()):
            self.ctx.metrics.error("unauthorized", dialect=DIALECT)
            raise socketio.exceptions.ConnectionRefusedError(
                {"code": "unauthorized", "message": "connect with auth {\"token\": STT_TOKEN} or ?token="})
        conn = Connected(self, sid)
        self.connected[sid] = conn
        self.ctx.admit(conn, peer)
        self.ctx.metrics.count("sessions_total", dialect=DIALECT)
        log.info("session_started", sid=sid, dialect=DIALECT)

    async def _on_disconnect(self, sid: str, *_: Any) -> None:
        await self.release(sid, "end")

    async def _on_audio_data(self, sid: str, data: Any) -> None:
        try:
            cid, pcm, rate = audio_of(data)
        except PeerError as exc:
            await self._error(sid, exc)
            return
        client_id = cid or sid
        if client_id != sid and client_id in self.connected:
            # another connection's sid names that connection's private room: audio under it would
            # reach that connection and nobody else (python-socketio refuses to join it)
            await self._error(sid, PeerError("bad_client_id", "that clientId is another connection's id"))
            return
        t = self.transcribers.get(client_id)
        joining = t is None or t.machine.closed or t.owner != sid
        if t is None or t.machine.closed:  # closed: its sid left, and its last final is on the way
            if sum(1 for x in self.transcribers.values() if x.owner == sid) >= MAX_CLIENT_IDS_PER_SID:
                # each transcriber holds a voice gate (Silero's state, with VAD_ENGINE=silero):
                # one connection must not grow them without bound
                await self._error(sid, PeerError("too_many_clients", f"one connection sends audio for at "
                                                 f"most {MAX_CLIENT_IDS_PER_SID} clientIds"))
                return
            t = self.transcribers[client_id] = Transcriber(self, client_id, sid)
        t.owner = sid
        # the chunk's actions are computed and queued on the transcriber's lock before anything here
        # awaits: python-socketio runs each event as its own task, and chunks must reach the engine
        # in the order they were sent
        await t.apply(t.machine.audio(pcm, rate, time.monotonic()))
        if joining:
            await self._join(sid, client_id)  # the sender hears its room's transcriptions

    async def _on_subscribe_transcripts(self, sid: str, data: Any = None) -> dict[str, Any]:
        try:
            client_id = client_id_of(data)
            if client_id is None:
                raise PeerError("bad_client_id", 'subscribe_transcripts takes {"clientId": "..."}')
        except PeerError as exc:
            await self._error(sid, exc)
            return {"ok": False, "code": exc.code, "message": exc.message}
        if client_id != sid and client_id in self.connected:
            # python-socketio refuses to join another connection's private room
            taken = PeerError("bad_client_id", "another connection's id is not a room to subscribe to; "
                                               "the audio client names its stream with a clientId")
            await self._error(sid, taken)
            return {"ok": False, "code": taken.code, "message": taken.message}
        await self._join(sid, client_id)
        log.info("subscribed", sid=sid, client_id=client_id)
        return {"ok": True, "clientId": client_id}

    async def _on_cleanup_client(self, sid: str, data: Any = None) -> dict[str, Any]:
        client_id = await self._cleanup(sid, data, "cleanup_client")
        if client_id is None:
            return {"ok": False}
        await self.sio.emit("cleanup_confirmed", {"clientId": client_id}, to=sid)
        return {"ok": True, "clientId": client_id}

    async def _on_client_disconnected(self, sid: str, data: Any = None) -> None:
        await self._cleanup(sid, data, "client_disconnected")

    # ---- shared ---------------------------------------------------------------------------------

    async def _cleanup(self, sid: str, data: Any, event: str) -> str | None:
        try:
            client_id = client_id_of(data)
            if client_id is None:
                raise PeerError("bad_client_id", f'{event} takes {{"clientId": "..."}}')
        except PeerError as exc:
            await self._error(sid, exc)
            return None
        t = self.transcribers.pop(client_id, None)
        if t is not None:
            await t.apply(t.machine.cancel())
        log.info("client_cleaned_up", client_id=client_id, via=event, had_state=t is not None)
        return client_id

    async def release(self, sid: str, reason: p.FinalReason) -> None:
        """The sid is gone (or the server stops): its transcribers finish what they heard."""
        conn = self.connected.pop(sid, None)
        mine = [(cid, t) for cid, t in self.transcribers.items() if t.owner == sid]
        for cid, t in mine:
            await t.apply(t.machine.finish(reason))
            if self.transcribers.get(cid) is t:
                del self.transcribers[cid]
        if conn is not None:
            self.ctx.leave(conn)
            log.info("session_ended", sid=sid, dialect=DIALECT)

    async def send(self, t: Transcriber, message: p.Message) -> None:
        payload = message.model_dump(exclude_none=True)
        if isinstance(message, Transcription | PartialTranscription):
            event = "transcription" if isinstance(message, Transcription) else "partial_transcription"
            # to the room (monitors) and to the sender directly, as the seed does, but only once each
            await self.sio.emit(event, payload, room=t.machine.client_id, skip_sid=t.owner)
            if t.owner in self.connected:
                await self.sio.emit(event, payload, to=t.owner)
        elif isinstance(message, p.Error):
            self.ctx.metrics.error(message.code, dialect=DIALECT)
            await self.sio.emit("error", {"code": message.code, "message": message.message}, to=t.owner)

    async def _join(self, sid: str, room: str) -> None:
        try:
            await self.sio.enter_room(sid, room)
        except (KeyError, ValueError):  # the sid left while its audio was being applied
            log.debug("join_skipped", sid=sid, room=room)

    async def _error(self, sid: str, exc: PeerError) -> None:
        self.ctx.metrics.error(exc.code, dialect=DIALECT)
        log.debug("peer_error", sid=sid, code=exc.code)
        await self.sio.emit("error", {"code": exc.code, "message": exc.message}, to=sid)


def _peer(environ: dict[str, Any]) -> str | None:
    """The client's address: engineio's aiohttp driver sets REMOTE_ADDR to 127.0.0.1 for everyone,
    so it is read from aiohttp's own request (the socket's peer; X-Forwarded-For is not trusted)."""
    request = environ.get("aiohttp.request")
    return peer_address(getattr(request, "remote", None))


def _token_ok(environ: dict[str, Any], auth: Any, token: str) -> bool:
    offered = auth.get("token") if isinstance(auth, dict) else None
    if not isinstance(offered, str) or not offered:
        header = str(environ.get("HTTP_AUTHORIZATION", ""))
        offered = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if not offered:
        offered = parse_qs(str(environ.get("QUERY_STRING", ""))).get("token", [""])[0]
    return bool(offered) and hmac.compare_digest(offered.encode(), token.encode())
