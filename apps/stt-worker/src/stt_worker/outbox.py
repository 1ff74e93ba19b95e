"""The finals waiting for the broker, on disk: a kill -9, a crash or a power cut loses none of them.

SQLite in WAL mode (the standard library's ``sqlite3``: nothing to install), not an append-only
journal, because what this queue needs is exactly what a database gives for free: a row is added when
a final is heard and deleted when the broker acknowledges it (PUBACK), in any order, each change atomic
and durable (``synchronous=FULL``: the WAL is fsynced at every commit, so a power cut keeps every
final that was committed); a journal would need compaction and a recovery scan written by hand. The
cost is one fsync per final and one per acknowledgement, a few milliseconds on an SD card, a handful of
times per utterance.

Rows belong to an utterance (``utterance``: its final, Home Assistant's event, Hermes' textCaptured,
a lost-utterance error), so the bound drops whole utterances, oldest first, and counts them: a final
without its event or the other way round would help nobody. The bound is in bytes
(``MQTT_QUEUE_MAX_MB``) and age (``MQTT_QUEUE_MAX_AGE_H``: a command spoken yesterday should not switch
the lights on today).

Without a state directory (a worker run by hand, a test) the queue is the same database in memory:
the same code, the same bound, only not across a restart.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- the order spoken: never reused, so never reordered
    utterance TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL,
    created REAL NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Row:
    id: int
    utterance: str
    topic: str
    payload: bytes
    retain: bool
    created: float


def outbox_path(directory: Path | None, site_id: str) -> Path | None:
    if directory is None:
        return None
    return directory / f"worker-{re.sub(r'[^a-zA-Z0-9_.-]', '_', site_id)}.outbox.sqlite"


class Outbox:
    """Reliable messages in the order they were added; ``dropped`` counts the utterances the bound cost,
    kept across restarts (the diagnostic says how many were ever lost this way)."""

    def __init__(self, path: Path | None, *, max_bytes: int, max_age_s: float | None) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._db = self._open(path)
        self._bytes = int(self._db.execute("SELECT COALESCE(SUM(size), 0) FROM outbox").fetchone()[0])
        row = self._db.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()
        self.dropped = int(row[0]) if row else 0
        if self.queued:
            log.info("outbox_restored", path=str(path), queued=self.queued, utterances=self.utterances)

    @staticmethod
    def _open(path: Path | None) -> sqlite3.Connection:
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                return Outbox._setup(sqlite3.connect(path, isolation_level=None), wal=True)
            except sqlite3.DatabaseError as exc:
                # a file that is not a database (or is damaged past SQLite's own recovery): set aside,
                # never deleted, so that someone can look at it; the worker goes on with a new one
                aside = path.with_suffix(f".broken-{int(time.time())}")
                log.error("outbox_unreadable", path=str(path), error=str(exc), moved_to=str(aside))
                with contextlib.suppress(OSError):
                    path.rename(aside)
                return Outbox._setup(sqlite3.connect(path, isolation_level=None), wal=True)
        return Outbox._setup(sqlite3.connect(":memory:", isolation_level=None), wal=False)

    @staticmethod
    def _setup(db: sqlite3.Connection, *, wal: bool) -> sqlite3.Connection:
        if wal:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        return db

    # ---- what the worker adds -----------------------------------------------------------------

    def add(self, utterance: str, messages: list[tuple[str, str, bool]], *, floor: int = 0,
            now: float | None = None) -> int:
        """One utterance's messages (topic, payload, retain), in one transaction. Returns how many
        utterances the byte bound dropped to make room: the oldest first, never the newest, and never a
        row up to ``floor`` (already handed to the network, so no longer ours to drop)."""
        now = time.time() if now is None else now
        with self._tx():
            for topic, payload, retain in messages:
                data = payload.encode()
                size = len(data) + len(topic)
                self._db.execute(
                    "INSERT INTO outbox (utterance, topic, payload, retain, created, size) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (utterance, topic, data, int(retain), now, size))
                self._bytes += size
        return self._enforce_bytes(keep=utterance, floor=floor)

    def _enforce_bytes(self, keep: str, floor: int) -> int:
        dropped = 0
        while self._bytes > self.max_bytes:
            oldest = self._db.execute(
                "SELECT utterance FROM outbox WHERE utterance != ? AND id > ? ORDER BY id LIMIT 1",
                (keep, floor)).fetchone()
            if oldest is None:
                break  # only the newest is left: it is kept whatever its size
            self._drop_utterance(oldest[0], floor)
            dropped += 1
        return dropped

    def expire(self, *, floor: int = 0, now: float | None = None) -> int:
        """Drop the utterances older than the age bound (rows after ``floor`` only); how many."""
        if self.max_age_s is None:
            return 0
        now = time.time() if now is None else now
        old = [r[0] for r in self._db.execute(
            "SELECT utterance FROM outbox WHERE created < ? AND id > ? GROUP BY utterance ORDER BY MIN(id)",
            (now - self.max_age_s, floor))]
        for utterance in old:
            self._drop_utterance(utterance, floor)
        return len(old)

    def _drop_utterance(self, utterance: str, floor: int) -> None:
        with self._tx():
            size = self._db.execute(
                "SELECT COALESCE(SUM(size), 0) FROM outbox WHERE utterance = ? AND id > ?",
                (utterance, floor)).fetchone()[0]
            self._db.execute("DELETE FROM outbox WHERE utterance = ? AND id > ?", (utterance, floor))
            self.dropped += 1
            self._db.execute("INSERT INTO meta (key, value) VALUES ('dropped', ?) "
                             "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (self.dropped,))
        self._bytes -= int(size)

    # ---- what the link takes out --------------------------------------------------------------

    def after(self, last_id: int, limit: int) -> list[Row]:
        """The next rows after ``last_id``, in order."""
        return [Row(r[0], r[1], r[2], bytes(r[3]), bool(r[4]), r[5]) for r in self._db.execute(
            "SELECT id, utterance, topic, payload, retain, created FROM outbox "
            "WHERE id > ? ORDER BY id LIMIT ?",
            (last_id, limit))]

    def delete(self, row_id: int) -> None:
        """The broker has it (PUBACK)."""
        with self._tx():
            row = self._db.execute("SELECT size FROM outbox WHERE id = ?", (row_id,)).fetchone()
            if row is None:
                return  # dropped by the bound meanwhile
            self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
        self._bytes -= int(row[0])

    @property
    def queued(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    @property
    def utterances(self) -> int:
        return int(self._db.execute("SELECT COUNT(DISTINCT utterance) FROM outbox").fetchone()[0])

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def oldest_age_s(self, now: float | None = None) -> float | None:
        row = self._db.execute("SELECT MIN(created) FROM outbox").fetchone()
        if row[0] is None:
            return None
        return max(0.0, (time.time() if now is None else now) - float(row[0]))

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
