"""Which dialect's machine serves a WebSocket connection, by its path (``http.route`` lets only the
known paths through). Each machine is a sans-I/O translation of one wire format to the same segment
actions; ``connection.Connection`` runs any of them on the shared engine."""

from __future__ import annotations

import hmac

from stt_core import session as s
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request

from .connection import Connection, WsSession
from .context import Context, Dialect
from .handy_session import HandySession
from .http import dialect_of, offered_token
from .hybrid_session import HybridSession
from .nemo_session import Auth, NemoSession


def limits(ctx: Context) -> s.Limits:
    st = ctx.settings
    return s.Limits(max_frame_bytes=st.max_frame_bytes, max_segment_s=st.max_segment_s,
                    max_frames_per_s=st.max_frames_per_s)


def nemo_auth(ctx: Context, request: Request | None) -> Auth:
    offered = offered_token(request) if request is not None else ""
    if not offered:
        return "missing"
    return "ok" if hmac.compare_digest(offered.encode(), ctx.api_key.encode()) else "wrong"


def machine(ctx: Context, dialect: Dialect, request: Request | None) -> WsSession:
    st = ctx.settings
    if dialect == "handy":
        return HandySession(languages=ctx.languages, limits=limits(ctx), vad=st.vad_config())
    if dialect == "nemo":
        return NemoSession(languages=ctx.languages, model=ctx.info.model, auth=nemo_auth(ctx, request),
                           limits=limits(ctx), vad=st.vad_config())
    if dialect == "hybrid":
        return HybridSession(languages=ctx.languages, limits=limits(ctx), vad=st.vad_config())
    return s.SessionMachine(limits=limits(ctx), model=ctx.info.model, draft_model=ctx.info.draft_model,
                            partial_interval_ms=st.partial_interval_ms, languages=ctx.languages)


def connection(ctx: Context, ws: ServerConnection) -> Connection:
    dialect = dialect_of(ws.request)
    return Connection(ctx, ws, machine(ctx, dialect, ws.request), dialect)
