"""JSON from a peer, bounded before it is parsed. Python's parser recurses once per level of nesting
(``[[[[...`` deep enough is a ``RecursionError``) and turns a 4300-digit number into a ``ValueError``
past the decoder; either would close a session with 1011 and a traceback. Every dialect's text
frames come through here, so each such frame gets an ``error`` reply like any other bad input."""

from __future__ import annotations

import json
from typing import Any

from .errors import PeerError

MAX_CONTAINERS = 64  # arrays and objects in one message; a control message has a handful
MAX_NUMBER_DIGITS = 40


def _int(digits: str) -> int:
    if len(digits) > MAX_NUMBER_DIGITS:
        raise PeerError("not_json", f"a number of more than {MAX_NUMBER_DIGITS} digits is not read")
    return int(digits)


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_DIGITS * 2:
        raise PeerError("not_json", f"a number of more than {MAX_NUMBER_DIGITS * 2} characters is not read")
    return float(text)


def _constant(name: str) -> float:
    raise PeerError("not_json", f"{name} is not JSON")


def loads(text: str | bytes, expected: str = "a JSON object") -> Any:
    """The parsed message, or ``PeerError("not_json")`` saying what was expected."""
    brackets = text.count("[") + text.count("{") if isinstance(text, str) else \
        text.count(b"[") + text.count(b"{")
    if brackets > MAX_CONTAINERS:
        raise PeerError("not_json", f"more than {MAX_CONTAINERS} arrays and objects in one message")
    try:
        return json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise PeerError("not_json", f"text messages are {expected}") from None


def shown(value: object, limit: int = 32) -> str:
    """A peer's value quoted in an error message: never more than a short prefix is echoed."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
