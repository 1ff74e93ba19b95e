"""One transcript as the subscribers get it (``transcripts.Transcripts`` hands it to each sink): what
the MQTT and webhook payloads say, whatever dialect the session spoke."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def site_of(name: str) -> str:
    """A session or client id as one MQTT topic level: no wildcards, no slashes, at most 64 chars."""
    return _UNSAFE.sub("_", name)[:64] or "_"


@dataclass(frozen=True)
class Transcript:
    final: bool
    dialect: str
    site: str  # the session or client id, topic-safe
    text: str
    segment: int
    t_ms: int
    confidence: float
    language: str | None = None
    reason: str | None = None
    ts: float = field(default_factory=time.time)

    def fields(self) -> dict[str, Any]:
        """The JSON both sinks send (the README documents it; consumers key on these names)."""
        out: dict[str, Any] = {"site_id": self.site, "dialect": self.dialect, "segment": self.segment,
                               "text": self.text, "confidence": round(self.confidence, 3),
                               "audio_s": round(self.t_ms / 1000, 3),
                               "at": datetime.fromtimestamp(self.ts, UTC).isoformat(timespec="milliseconds")}
        if self.final:
            out |= {"language": self.language, "reason": self.reason}
        return out
