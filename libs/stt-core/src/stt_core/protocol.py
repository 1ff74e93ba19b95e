"""The ``/stt`` WebSocket protocol: typed messages, decoded once.

Client -> server (JSON text frames, plus binary frames of PCM S16LE mono)::

    {"type":"init","session_id":"optional-id","sample_rate":16000,"lang":"en","enable_partials":true}
        (extension: "task", "prompt", "hotwords": per-session speech options, see options.py)
    <binary PCM frames, 20-40 ms each>
    {"type":"end"}
    {"type":"health"}                      (extension: ask for a health message)
    {"type":"pause"} / {"type":"resume"}   (extension, protocol 2: the client's voice gate heard
                                            trailing silence / speech again; the server may start
                                            the final's decode early and drop it on resume)

Server -> client (JSON text frames)::

    {"type":"ready", ...}                  (extension: init accepted)
    {"type":"partial","text":"...","confidence":0.0,"t_ms":0}
    {"type":"final","text":"...","confidence":0.0,"t_ms":0}
    {"type":"health","ok":true}
    {"type":"error","code":"...","message":"..."}

These field names are fixed by existing clients. Extra fields are only ever added, never renamed,
and unknown fields from clients are ignored so older and newer peers keep working together.
"""

from __future__ import annotations

import enum
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, TypeAdapter, ValidationError

from . import jsonwire
from .errors import PeerError
from .options import MAX_HOTWORDS_CHARS, MAX_PROMPT_CHARS
from .pcm import MAX_RATE, MIN_RATE

PROTOCOL_VERSION = 2  # 2: pause/resume


class CloseCode(enum.IntEnum):
    """WebSocket close codes the server uses (documented in the README); the client reads them too."""

    NORMAL = 1000
    GOING_AWAY = 1001  # server shutting down
    POLICY = 1008  # protocol violated in a way the session cannot recover from
    TOO_BIG = 1009  # a frame over MAX_FRAME_BYTES
    INTERNAL = 1011
    TRY_AGAIN = 1013  # MAX_SESSIONS reached
    UNAUTHORIZED = 4401  # seed 002: no token
    FORBIDDEN = 4403  # seed 002: a token, not the right one
    IDLE = 4408  # nothing received for IDLE_TIMEOUT_S


class _Message(BaseModel):
    # Unknown fields from newer clients are ignored rather than refused.
    model_config = ConfigDict(extra="ignore", frozen=True)


# The base of every JSON message a session machine sends, ``/stt``'s and the other dialects' alike:
# ``encode`` writes any of them as one text frame.
Message = _Message


class Init(_Message):
    type: Literal["init"]
    session_id: str | None = Field(default=None, max_length=128)
    # strict: "16000" or "fast" is a client bug worth reporting, not something to guess at
    sample_rate: StrictInt = Field(default=16_000, ge=MIN_RATE, le=MAX_RATE)
    lang: str | None = Field(default="en", max_length=16)  # null or "" or "auto": detect (multilingual)
    enable_partials: StrictBool = True
    # per-session speech options (extension); checked against the model by ``options.check_options``
    task: str = Field(default="transcribe", max_length=16)  # or "translate"
    prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    hotwords: str | None = Field(default=None, max_length=MAX_HOTWORDS_CHARS)


class End(_Message):
    type: Literal["end"]


class HealthRequest(_Message):
    type: Literal["health"]


class Pause(_Message):
    type: Literal["pause"]


class Resume(_Message):
    type: Literal["resume"]


ClientMessage = Annotated[Init | End | HealthRequest | Pause | Resume, Field(discriminator="type")]
_client_adapter: TypeAdapter[Init | End | HealthRequest | Pause | Resume] = TypeAdapter(ClientMessage)
CLIENT_TYPES = ("init", "end", "health", "pause", "resume")


def decode_client_message(text: str) -> Init | End | HealthRequest | Pause | Resume:
    """Decode one text frame from a client, or raise ``PeerError`` with a stable code."""
    raw = jsonwire.loads(text, "JSON objects")
    if not isinstance(raw, dict):
        raise PeerError("not_json", "text frames must be JSON objects")
    kind = raw.get("type")
    if kind not in CLIENT_TYPES:
        raise PeerError("unknown_type", f"unknown message type {jsonwire.shown(kind)}; expected one of "
                                        f"{', '.join(CLIENT_TYPES)}")
    try:
        return _client_adapter.validate_python(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"][1:]) or "message"
        code = "bad_sample_rate" if field == "sample_rate" else "invalid_message"
        raise PeerError(code, f"{kind}: {field}: {err['msg']} (got {jsonwire.shown(err.get('input'))})",
                        fatal=kind == "init") from None


# ---- server -> client -------------------------------------------------------------------------


class Ready(_Message):
    type: Literal["ready"] = "ready"
    session_id: str
    sample_rate: int
    model: str  # the model of finals
    partial_interval_ms: int
    protocol: int = PROTOCOL_VERSION
    # the model of partials when it is another one (DRAFT_MODEL); absent: ``model`` does both
    draft_model: str | None = None


# why a segment ended: the client's `end`, the server's segment length limit, shutdown, or a fatal error
# (flood, oversized frame) that cut it short: its text may stop mid-sentence
FinalReason = Literal["end", "max_segment", "shutdown", "error"]


class Partial(_Message):
    type: Literal["partial"] = "partial"
    text: str
    confidence: float
    t_ms: int
    session_id: str | None = None
    segment: int = 0


class Final(_Message):
    type: Literal["final"] = "final"
    text: str
    confidence: float
    t_ms: int
    session_id: str | None = None
    segment: int = 0
    language: str | None = None
    # milliseconds from `end` (or the start of the final's decode) to this message being built
    decode_ms: int = 0
    model: str | None = None
    reason: FinalReason = "end"
    # the decode began at the client's `pause`, before `end`
    speculative: bool = False


class Health(_Message):
    type: Literal["health"] = "health"
    ok: bool
    model: str | None = None
    draft_model: str | None = None
    device: str | None = None
    compute_type: str | None = None
    active_sessions: int | None = None


class Error(_Message):
    type: Literal["error"] = "error"
    code: str
    message: str


ServerMessage = Annotated[Ready | Partial | Final | Health | Error, Field(discriminator="type")]
_server_adapter: TypeAdapter[Ready | Partial | Final | Health | Error] = TypeAdapter(ServerMessage)


def encode(message: Message) -> str:
    """One JSON text frame."""
    return message.model_dump_json(exclude_none=True)


def decode_server_message(text: str) -> Ready | Partial | Final | Health | Error:
    """Used by clients (the worker's ws backend): decode one server frame or raise ``PeerError``."""
    try:
        raw: Any = json.loads(text)
        return _server_adapter.validate_python(raw)
    # ValueError: not JSON, not a message (ValidationError), or a number of 4300+ digits; RecursionError:
    # nesting deeper than the parser recurses. A hostile server must not crash the client with either.
    except (ValueError, RecursionError) as exc:
        raise PeerError("bad_server_message",
                        f"unexpected message from server: {text[:200]!r} ({exc})") from None
