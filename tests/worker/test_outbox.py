"""The worker's queue of finals on disk (stt_worker/outbox.py), in-process on a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from stt_worker.outbox import Outbox, outbox_path

KB = 1024


def final(uid: str, size: int = 200) -> list[tuple[str, str, bool]]:
    """An utterance's reliable messages as the worker queues them: its final and its event."""
    return [("stt/s/transcript/final", uid + "x" * size, False),
            ("stt/s/transcript/event", uid + "y" * size, False)]


def utterances(box: Outbox) -> list[str]:
    seen: list[str] = []
    for row in box.after(0, 1000):
        if row.utterance not in seen:
            seen.append(row.utterance)
    return seen


def test_rows_come_back_in_the_order_added_and_survive_a_reopen(tmp_path: Path) -> None:
    path = outbox_path(tmp_path, "kitchen/1")
    assert path is not None
    assert path.parent == tmp_path
    assert "/" not in path.name
    box = Outbox(path, max_bytes=1 << 20, max_age_s=None)
    for uid in ("a", "b", "c"):
        box.add(uid, final(uid))
    box.delete(box.after(0, 1)[0].id)  # the first message of "a" acknowledged
    box.close()  # as a kill -9 would leave it: every commit is on disk
    again = Outbox(path, max_bytes=1 << 20, max_age_s=None)
    rows = again.after(0, 100)
    assert [(r.utterance, r.topic.rsplit("/", 1)[1]) for r in rows] == [
        ("a", "event"), ("b", "final"), ("b", "event"), ("c", "final"), ("c", "event")]
    assert rows[1].payload.startswith(b"bx")
    assert again.queued == 5
    assert again.utterances == 3
    assert again.queued_bytes == sum(len(r.payload) + len(r.topic) for r in rows)
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_byte_bound_drops_whole_utterances_oldest_first_and_counts_them(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path, max_bytes=2 * KB, max_age_s=None)  # room for two utterances of ~900 bytes
    dropped = [box.add(uid, final(uid, 400)) for uid in ("a", "b", "c", "d")]
    assert dropped == [0, 0, 1, 1]
    assert utterances(box) == ["c", "d"]
    assert box.dropped == 2
    assert box.queued_bytes <= 2 * KB
    box.close()
    assert Outbox(path, max_bytes=2 * KB, max_age_s=None).dropped == 2  # the count outlives a restart


def test_the_newest_is_kept_even_alone_over_the_bound() -> None:
    box = Outbox(None, max_bytes=100, max_age_s=None)
    assert box.add("a", final("a", 10)) == 0
    assert box.add("big", final("big", 500)) == 1
    assert utterances(box) == ["big"]


def test_rows_handed_to_the_network_are_not_dropped_by_the_bound() -> None:
    box = Outbox(None, max_bytes=2 * KB, max_age_s=None)
    box.add("a", final("a", 400))
    handed = box.after(0, 2)[-1].id  # both of "a"'s messages are with paho, waiting for their PUBACK
    box.add("b", final("b", 400))
    assert box.add("c", final("c", 400), floor=handed) == 1
    assert utterances(box) == ["a", "c"]


def test_the_age_bound_drops_what_is_older_than_it(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", max_bytes=1 << 20, max_age_s=3600)
    box.add("old", final("old"), now=1000.0)
    box.add("new", final("new"), now=1000.0 + 3000)
    assert box.expire(now=1000.0 + 3601) == 1
    assert utterances(box) == ["new"]
    assert box.dropped == 1
    assert box.oldest_age_s(now=1000.0 + 3601) == 601
    assert Outbox(None, max_bytes=1, max_age_s=None).expire(now=1e12) == 0


def test_a_file_that_is_not_a_database_is_set_aside_and_the_worker_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    box = Outbox(path, max_bytes=1 << 20, max_age_s=None)
    box.add("a", final("a"))
    assert box.queued == 2
    assert [p.name for p in tmp_path.iterdir() if ".broken-" in p.name], list(tmp_path.iterdir())


def test_delete_of_a_row_already_dropped_is_harmless() -> None:
    box = Outbox(None, max_bytes=1 << 20, max_age_s=None)
    box.add("a", final("a"))
    first = box.after(0, 1)[0].id
    box.delete(first)
    box.delete(first)
    assert box.queued == 1
    assert box.queued_bytes > 0


def test_a_flood_of_refused_commands_never_pushes_a_final_out(tmp_path: Path) -> None:
    """With the broker away, a thousand answers to bad commands and one final: the final is on disk,
    the answers are a few in memory (the newest), and the final's queue dropped nothing."""
    from stt_worker.mqtt_link import CONTROL_ERRORS_KEPT, MqttLink
    from stt_worker.payloads import Message
    from stt_worker.settings import WorkerSettings

    settings = WorkerSettings(_env_file=None, site_id="s", audio_source="mic",  # type: ignore[call-arg]
                              mqtt_queue_max_mb=0.01)
    link = MqttLink(settings, "test", outbox_path=tmp_path / "o.sqlite")
    link.publish_all([Message("stt/s/transcript/final", "x" * 500, "reliable")], utterance="u1")
    for i in range(1000):
        link.publish(Message("stt/s/error", f'{{"code": "invalid_command", "n": {i}}}' + " " * 400,
                             "control_error"))
    assert link.queued == 1
    assert link.dropped == 0
    kept = list(link._control_errors)
    assert len(kept) == CONTROL_ERRORS_KEPT
    assert '"n": 999' in kept[-1].payload
    link.outbox.close()
