"""Control messages in, typed commands out. Pure: no MQTT, no worker, no clock.

Two ways in, the same commands out:

* ``<base>/<site>/set`` takes JSON, any of ``{"muted": bool, "backend": <a backend's name>, "listen": bool}``
  (several keys at once are applied in that order: unmute, then listen, works in one message);
* the per-entity topics Home Assistant's discovery announces: ``mute/set`` (``ON``/``OFF``),
  ``backend/set`` (a name of ``backend.BACKEND_NAMES``), ``listen/set`` (``PRESS``).

Anything else raises ``ControlError`` (a ``PeerError``: the sender got it wrong) with a stable code,
which the worker logs and answers on ``<base>/<site>/error``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from stt_core.errors import PeerError

from .backend import BACKEND_NAMES, BackendName
from .topics import Topics

MAX_PAYLOAD = 4096

# stable error codes (documented in docs/home-assistant.md)
INVALID_JSON = "invalid_json"
INVALID_COMMAND = "invalid_command"
PAYLOAD_TOO_LARGE = "payload_too_large"
UNKNOWN_TOPIC = "unknown_topic"


class ControlError(PeerError):
    """A control message the worker cannot act on; nothing was changed."""


@dataclass(frozen=True)
class SetMuted:
    muted: bool


@dataclass(frozen=True)
class SetBackend:
    backend: BackendName


@dataclass(frozen=True)
class Listen:
    """``start``: open the gate now (push-to-talk); otherwise end the utterance being listened to."""

    start: bool
    session_id: str | None = None


Command = SetMuted | SetBackend | Listen


class SetPayload(BaseModel):
    """The JSON of ``<base>/<site>/set``. Strict: ``"true"`` is not a boolean, unknown keys are refused
    (a typo such as ``{"mute": true}`` must not pass silently as a no-op)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    muted: bool | None = None
    backend: BackendName | None = None
    listen: bool | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> SetPayload:
        if self.muted is None and self.backend is None and self.listen is None:
            raise ValueError("give at least one of muted, backend, listen")
        return self

    def commands(self) -> list[Command]:
        out: list[Command] = []
        if self.muted is not None:
            out.append(SetMuted(self.muted))
        if self.backend is not None:
            out.append(SetBackend(self.backend))
        if self.listen is not None:
            out.append(Listen(self.listen))
        return out


_ON = {"on", "true", "1"}
_OFF = {"off", "false", "0"}


def _text(payload: bytes) -> str:
    if len(payload) > MAX_PAYLOAD:
        raise ControlError(PAYLOAD_TOO_LARGE, f"payload of {len(payload)} bytes; at most {MAX_PAYLOAD}")
    try:
        return payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ControlError(INVALID_COMMAND, "payload is not UTF-8 text") from None


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err["loc"])
        parts.append(f"{where}: {err['msg']}" if where else str(err["msg"]))
    return "; ".join(parts)


def decode_set(payload: bytes) -> list[Command]:
    text = _text(payload)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: 4096 bytes of "[" nest past the parser's limit
        raise ControlError(INVALID_JSON, 'expected a JSON object such as {"muted": true}') from None
    if not isinstance(data, dict):
        raise ControlError(INVALID_COMMAND, f"expected a JSON object, got {type(data).__name__}")
    try:
        return SetPayload.model_validate(data).commands()
    except ValidationError as exc:
        raise ControlError(INVALID_COMMAND, _describe(exc)) from None


def decode_mute(payload: bytes) -> SetMuted:
    text = _text(payload).lower()
    if text in _ON:
        return SetMuted(True)
    if text in _OFF:
        return SetMuted(False)
    raise ControlError(INVALID_COMMAND, f"mute takes ON or OFF, got {text[:40]!r}")


def decode_backend(payload: bytes) -> SetBackend:
    text = _text(payload).lower()
    for name in BACKEND_NAMES:
        if text == name:
            return SetBackend(name)
    raise ControlError(INVALID_COMMAND, f"backend takes {' or '.join(BACKEND_NAMES)}, got {text[:40]!r}")


def decode_listen(payload: bytes) -> Listen:
    text = _text(payload).lower()
    if text in ("", "press") or text in _ON:
        return Listen(True)
    raise ControlError(INVALID_COMMAND, f"listen takes PRESS, got {text[:40]!r}")


def decode(topics: Topics, topic: str, payload: bytes) -> list[Command]:
    """The commands in one message on one of ``topics.commands``; ``ControlError`` if it has none."""
    if topic == topics.set:
        return decode_set(payload)
    if topic == topics.mute_set:
        return [decode_mute(payload)]
    if topic == topics.backend_set:
        return [decode_backend(payload)]
    if topic == topics.listen_set:
        return [decode_listen(payload)]
    raise ControlError(UNKNOWN_TOPIC, f"not a control topic: {topic}")


