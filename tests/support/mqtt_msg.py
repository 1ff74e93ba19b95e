"""One MQTT message as the tests' subscribers record it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Msg:
    t: float  # time.monotonic() at arrival
    topic: str
    raw: bytes
    retain: bool
    # the broker's redelivery flag: set on a copy the broker sends again (QoS 1), never on a first copy
    dup: bool = False

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", errors="replace")

    @property
    def payload(self) -> str:
        return self.text

    def json(self) -> Any:
        return json.loads(self.raw)
