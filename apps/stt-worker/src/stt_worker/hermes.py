"""Hermes (Rhasspy / Snips) ASR compatibility, opt-in with ``HERMES=1``. Pure: payloads in and out.

Out: ``hermes/asr/textCaptured`` for every final and ``hermes/asr/partialTextCaptured`` for every
partial, with Rhasspy's field names (``text``, ``likelihood``, ``seconds``, ``siteId``, ``sessionId``).
In: ``hermes/asr/toggleOff`` / ``toggleOn`` (mute / unmute) and ``hermes/asr/startListening`` /
``stopListening`` (open the gate like the Listen button / end that utterance), each for one ``siteId``:
messages for another site are not ours and are ignored, as Rhasspy's ASR does. A message without
``siteId`` is for Rhasspy's ``default`` site.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .control import (
    INVALID_COMMAND,
    INVALID_JSON,
    MAX_PAYLOAD,
    PAYLOAD_TOO_LARGE,
    Command,
    ControlError,
    Listen,
    SetMuted,
)
from .topics import HERMES_START_LISTENING, HERMES_SUBSCRIPTIONS, HERMES_TOGGLE_OFF, HERMES_TOGGLE_ON

DEFAULT_SITE = "default"


@dataclass(frozen=True)
class Toggle:
    on: bool


@dataclass(frozen=True)
class StartListening:
    session_id: str | None


@dataclass(frozen=True)
class StopListening:
    session_id: str | None


HermesCommand = Toggle | StartListening | StopListening


class _Incoming(BaseModel):
    """The fields we read of toggleOn/Off and start/stopListening; Rhasspy sends more (``reason``,
    ``lang``, ``stopOnSilence``, ``wakewordId``...), which are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    # Hermes' own field names
    siteId: str = DEFAULT_SITE
    sessionId: str | None = None


def parse(topic: str, payload: bytes, site_id: str) -> HermesCommand | None:
    """The command in a Hermes message for ``site_id``; ``None`` for another site or another topic.
    ``ControlError`` when the payload is not the JSON Hermes specifies."""
    if topic not in HERMES_SUBSCRIPTIONS:
        return None
    if len(payload) > MAX_PAYLOAD:
        raise ControlError(PAYLOAD_TOO_LARGE, f"payload of {len(payload)} bytes; at most {MAX_PAYLOAD}")
    try:
        data = json.loads(payload.decode("utf-8")) if payload.strip() else {}
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past the parser's limit
        raise ControlError(INVALID_JSON, f"{topic} takes a JSON object with siteId") from None
    if not isinstance(data, dict):
        raise ControlError(INVALID_COMMAND, f"{topic} takes a JSON object, got {type(data).__name__}")
    try:
        msg = _Incoming.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ControlError(INVALID_COMMAND, f"{topic}: {err['loc'][0]}: {err['msg']}") from None
    if msg.siteId != site_id:
        return None
    if topic == HERMES_TOGGLE_ON:
        return Toggle(True)
    if topic == HERMES_TOGGLE_OFF:
        return Toggle(False)
    if topic == HERMES_START_LISTENING:
        return StartListening(msg.sessionId)
    return StopListening(msg.sessionId)


def as_command(cmd: HermesCommand) -> Command:
    """The worker's own command for a Hermes one: toggleOff mutes, start/stopListening are Listen."""
    if isinstance(cmd, Toggle):
        return SetMuted(not cmd.on)
    return Listen(isinstance(cmd, StartListening), cmd.session_id)


def text_captured(*, text: str, likelihood: float, seconds: float, site_id: str, session_id: str | None,
                  lang: str | None = None) -> dict[str, Any]:
    """``hermes/asr/textCaptured`` as Rhasspy publishes it (``asrTokens`` and ``wakewordId`` unknown here)."""
    return {"text": text, "likelihood": float(likelihood), "seconds": float(seconds), "siteId": site_id,
            "sessionId": session_id, "wakewordId": None, "asrTokens": None, "lang": lang}


def partial_text_captured(*, text: str, likelihood: float, seconds: float, site_id: str,
                          session_id: str | None, lang: str | None = None) -> dict[str, Any]:
    """``hermes/asr/partialTextCaptured``: the same fields as textCaptured, for text that may still change."""
    return {"text": text, "likelihood": float(likelihood), "seconds": float(seconds), "siteId": site_id,
            "sessionId": session_id, "wakewordId": None, "lang": lang}
