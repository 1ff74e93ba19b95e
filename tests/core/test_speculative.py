"""The `pause` / `resume` extension (protocol 2) in the session machine: hints inside a segment become
actions, outside one they are harmless, and `ready` announces the protocol. The real server's side is
in tests/server/test_speculative.py."""

from __future__ import annotations

import json

from stt_core import protocol as p
from stt_core import session as s
from stt_core.session import SessionMachine


def started() -> SessionMachine:
    m = SessionMachine()
    m.receive_text(json.dumps({"type": "init", "sample_rate": 16000}))
    return m


def test_pause_and_resume_inside_a_segment_become_actions():
    """Inside a segment pause and resume become PauseSegment / ResumeSegment for the adapter."""
    m = started()
    m.receive_bytes(b"\0\0" * 320, 0.0)
    assert m.receive_text('{"type":"pause"}') == [s.PauseSegment()]
    assert m.receive_text('{"type":"resume"}') == [s.ResumeSegment()]


def test_pause_outside_a_segment_is_a_harmless_hint():
    """Before any audio (or after a final) a pause has nothing to act on: no action and no error, so a
    client racing its own `end` is never told off."""
    m = started()
    assert m.receive_text('{"type":"pause"}') == []
    assert m.receive_text('{"type":"resume"}') == []


def test_ready_announces_protocol_2():
    """Clients learn from `ready` that the server understands pause/resume."""
    (action,) = SessionMachine().receive_text(json.dumps({"type": "init", "sample_rate": 16000}))
    assert isinstance(action, s.Send)
    assert isinstance(action.message, p.Ready)
    assert action.message.protocol >= 2
