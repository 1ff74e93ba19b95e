"""Plain HTTP beside the WebSocket: the live page, /health, /metrics, the token check, 404 for the rest."""

from __future__ import annotations

import hmac
import json
from functools import cache
from http import HTTPStatus
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from .context import Context, Dialect

WS_PATH = "/stt"
HANDY_PATH = "/ws"  # seed 001's dialect
NEMO_PATH = "/api/v1/audio/stream/transcribe"  # seed 002's
HYBRID_PATH = "/ws/transcribe"  # seed 003's
DIALECTS: dict[str, Dialect] = {WS_PATH: "stt", HANDY_PATH: "handy", NEMO_PATH: "nemo", HYBRID_PATH: "hybrid"}
WS_PATHS = tuple(DIALECTS)
# Seed 002's server checks its token after the upgrade and refuses with close 4401/4403, which its
# clients expect; every other path is refused before the handshake (HTTP 401).
AUTH_AFTER_UPGRADE = (NEMO_PATH,)
PAGE_PATHS = ("/", "/index.html")
# The page is static and public (the token check is /stt's): inline script and style, a Blob URL for
# the AudioWorklet, connections back to this server only, never framed, and no Referer that could
# carry a ?token= from the address bar.
PAGE_HEADERS = (
    ("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline' blob:; "
     "style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
     "frame-ancestors 'none'"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
)


def _response(status: HTTPStatus, body: bytes, content_type: str,
              extra: tuple[tuple[str, str], ...] = ()) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-store"), *extra])
    return Response(status.value, status.phrase, headers, body)


@cache
def live_page() -> bytes:
    """The live page: one HTML file with inline CSS and JS, shipped as package data."""
    return resources.files("stt_server").joinpath("static", "index.html").read_bytes()


def json_response(status: HTTPStatus, payload: dict[str, object],
                  extra: tuple[tuple[str, str], ...] = ()) -> Response:
    return _response(status, json.dumps(payload).encode(), "application/json", extra)


def origin_ok(origin: str, host: str, allowed: tuple[str, ...]) -> bool:
    """A browser's Origin: the server's own page (same host and port), or one the operator allows."""
    origin = origin.strip().rstrip("/").lower()
    if "*" in allowed or origin in allowed:
        return True
    return origin != "null" and urlsplit(origin).netloc == host.strip().lower() != ""


def dialect_of(request: Request | None) -> Dialect:
    return DIALECTS.get(urlsplit(request.path).path, "stt") if request is not None else "stt"


def offered_token(request: Request) -> str:
    """The token a client offers: ``Authorization: Bearer``, else ``?token=``."""
    auth = request.headers.get("Authorization", "")
    offered = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    return offered or parse_qs(urlsplit(request.path).query).get("token", [""])[0]


def token_ok(request: Request, token: str) -> bool:
    offered = offered_token(request)
    return bool(offered) and hmac.compare_digest(offered.encode(), token.encode())


def _plain(ctx: Context, request: Request, path: str) -> Response | None:
    """The plain HTTP paths; None for any other path. The page is public; with STT_TOKEN set, what
    /health details (sessions open now: when someone is talking) and /metrics need the token, and
    /health without it still answers a bare liveness for container health checks and probes."""
    if path in PAGE_PATHS:
        return _response(HTTPStatus.OK, live_page(), "text/html; charset=utf-8", PAGE_HEADERS)
    if path not in ("/health", "/metrics"):
        return None
    token = ctx.settings.stt_token
    allowed = token is None or token_ok(request, token.get_secret_value())
    if path == "/health":
        return json_response(HTTPStatus.OK, ctx.health() if allowed else ctx.liveness())
    if not allowed:
        ctx.metrics.error("unauthorized", dialect="http")
        return json_response(HTTPStatus.UNAUTHORIZED, {
            "error": "unauthorized", "message": "send Authorization: Bearer <STT_TOKEN> or ?token="},
            (("WWW-Authenticate", 'Bearer realm="stt-server"'),))
    return _response(HTTPStatus.OK, ctx.metrics_text().encode(), "text/plain; version=0.0.4")


def route(ctx: Context, request: Request) -> Response | None:
    """What websockets' process_request hook answers: None lets the WebSocket handshake go on."""
    path = urlsplit(request.path).path
    if (plain := _plain(ctx, request, path)) is not None:
        return plain
    if path not in WS_PATHS:
        return json_response(HTTPStatus.NOT_FOUND, {
            "error": "not_found",
            "message": f"no such path {path}; the live page is /, the WebSocket endpoints "
                       f"{', '.join(WS_PATHS)}"})
    if "upgrade" not in request.headers.get("Connection", "").lower():
        return json_response(HTTPStatus.UPGRADE_REQUIRED, {"error": "websocket_required",
                                                           "message": f"{path} speaks WebSocket"})
    return _access(ctx, request, path)


def _access(ctx: Context, request: Request, path: str) -> Response | None:
    """Who may open a session on a WebSocket path: the browser page's origin, then the token."""
    origin = request.headers.get("Origin")
    if origin is not None and not origin_ok(origin, request.headers.get("Host", ""), ctx.settings.origins):
        ctx.metrics.error("origin_not_allowed", dialect=DIALECTS[path])
        # a page on another site must not reach a LAN service through its visitor's browser
        # (cross-site WebSocket hijacking): refused before the handshake, whatever the path
        return json_response(HTTPStatus.FORBIDDEN, {
            "error": "origin_not_allowed",
            "message": "this web page's origin may not open sessions; add it to ALLOWED_ORIGINS"})
    token = ctx.settings.stt_token
    if path in AUTH_AFTER_UPGRADE:
        return None
    if token is not None and not token_ok(request, token.get_secret_value()):
        ctx.metrics.error("unauthorized", dialect=DIALECTS[path])
        # refused before the handshake: no audio is ever accepted from an unauthenticated client
        return json_response(HTTPStatus.UNAUTHORIZED, {
            "error": "unauthorized", "message": "send Authorization: Bearer <STT_TOKEN> or ?token="})
    return None
