"""A peer cannot fill the server's log with its own mistakes: a session's first few errors are logged at
INFO, the rest at DEBUG, and every one is counted in /metrics."""

from __future__ import annotations

from stt_server.metrics import Metrics
from stt_server.peer_errors import LOUD_ERRORS, PeerErrors

from harness.stt_client import SttSession, ws_url
from tests.support.server_http import metrics

BAD_FRAMES = 50


def test_fifty_bad_frames_give_a_few_info_lines_and_a_count_of_fifty(server):
    proc, port = server
    key = 'stt_errors_total{dialect="stt",code="not_json"}'
    before = metrics(port).get(key, 0)
    seen = len(proc.json_events())
    with SttSession(ws_url(port)) as sess:
        sess.init(16000, session_id="bad-frames")
        sess.wait_for("ready", timeout=10)
        for i in range(BAD_FRAMES):
            sess.send_text(f"not json {i}")
        sess.wait_for(lambda r: len(sess.messages("error")) >= BAD_FRAMES, timeout=20)
    assert metrics(port)[key] - before == BAD_FRAMES

    def logged() -> list[dict]:
        return [e for e in proc.json_events()[seen:] if e.get("event") in ("peer_error", "peer_errors")]

    # the session's summary line comes when its connection has been tidied up
    events = logged()
    for _ in range(100):
        if any(e["event"] == "peer_errors" for e in events):
            break
        sess.closed.wait(0.1)
        events = logged()
    info = [e for e in events if e["event"] == "peer_error" and e.get("level") == "info"]
    assert 1 <= len(info) <= LOUD_ERRORS, info
    (summary,) = [e for e in events if e["event"] == "peer_errors"]
    assert summary["total"] == BAD_FRAMES


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict]] = []

    def info(self, event: str, **kw: object) -> None:
        self.lines.append(("info", event, kw))

    def debug(self, event: str, **kw: object) -> None:
        self.lines.append(("debug", event, kw))


def test_the_budget_is_per_session():
    """Each session has its own few INFO lines: one noisy client does not silence another's errors."""
    metrics_ = Metrics()
    a, b = _Log(), _Log()
    noisy, quiet = PeerErrors(a, metrics_, "stt"), PeerErrors(b, metrics_, "stt")
    for _ in range(10):
        noisy("bad_audio", "odd length")
    quiet("not_json", "x")
    assert [level for level, _, _ in a.lines] == ["info"] * LOUD_ERRORS + ["debug"] * (10 - LOUD_ERRORS)
    assert [level for level, _, _ in b.lines] == ["info"]
    assert metrics_.errors[("stt", "bad_audio")] == 10
    noisy.summary()
    quiet.summary()
    assert a.lines[-1] == ("info", "peer_errors", {"total": 10})
    assert b.lines[-1][1] == "peer_error"  # nothing unlogged, no summary
