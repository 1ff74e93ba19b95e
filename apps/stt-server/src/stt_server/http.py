"""Plain HTTP beside the WebSocket: /health, /metrics, the token check, and 404 for the rest."""

from __future__ import annotations

import hmac
import json
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

    from .app import Server

WS_PATH = "/stt"


def _response(status: HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-store")])
    return Response(status.value, status.phrase, headers, body)


def json_response(status: HTTPStatus, payload: dict[str, object]) -> Response:
    return _response(status, json.dumps(payload).encode(), "application/json")


def token_ok(request: Request, token: str) -> bool:
    auth = request.headers.get("Authorization", "")
    offered = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    if not offered:
        offered = parse_qs(urlsplit(request.path).query).get("token", [""])[0]
    return bool(offered) and hmac.compare_digest(offered.encode(), token.encode())


def route(server: Server, connection: ServerConnection, request: Request) -> Response | None:
    """websockets' process_request hook: None lets the WebSocket handshake go on."""
    path = urlsplit(request.path).path
    if path == "/health":
        return json_response(HTTPStatus.OK, server.health())
    if path == "/metrics":
        return _response(HTTPStatus.OK, server.metrics_text().encode(), "text/plain; version=0.0.4")
    if path != WS_PATH:
        return json_response(HTTPStatus.NOT_FOUND, {"error": "not_found", "message": f"no such path {path}; "
                                                    f"the WebSocket endpoint is {WS_PATH}"})
    if "upgrade" not in request.headers.get("Connection", "").lower():
        return json_response(HTTPStatus.UPGRADE_REQUIRED, {"error": "websocket_required",
                                                           "message": f"{WS_PATH} speaks WebSocket"})
    token = server.settings.stt_token
    if token is not None and not token_ok(request, token.get_secret_value()):
        server.metrics.error("unauthorized")
        # refused before the handshake: no audio is ever accepted from an unauthenticated client
        return json_response(HTTPStatus.UNAUTHORIZED, {"error": "unauthorized",
                                                       "message": "send Authorization: Bearer <STT_TOKEN> or ?token="})
    return None
