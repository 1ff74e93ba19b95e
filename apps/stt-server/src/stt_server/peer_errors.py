"""A session's errors to its peer, logged without letting the peer fill the log: the first few at INFO
(enough to see what a misbehaving client does), the rest at DEBUG, every one counted in ``/metrics``
(``stt_errors_total`` by dialect and code), which is where a flood shows."""

from __future__ import annotations

from typing import Any

from .metrics import Metrics

# peer errors per session logged at INFO; later ones at DEBUG
LOUD_ERRORS = 3


class PeerErrors:
    def __init__(self, log: Any, metrics: Metrics, dialect: str, loud: int = LOUD_ERRORS) -> None:
        self.log = log
        self.metrics = metrics
        self.dialect = dialect
        self.loud = loud
        self.count = 0

    def __call__(self, code: str, detail: object) -> None:
        self.metrics.error(code, dialect=self.dialect)
        self.count += 1
        if self.count < self.loud:
            self.log.info("peer_error", code=code, detail=detail)
        elif self.count == self.loud:
            self.log.info("peer_error", code=code, detail=detail, later_at="debug")
        else:
            self.log.debug("peer_error", code=code, detail=detail, n=self.count)

    def summary(self) -> None:
        """At the session's end: how many there were, once, when some went unlogged at INFO."""
        if self.count > self.loud:
            self.log.info("peer_errors", total=self.count)
