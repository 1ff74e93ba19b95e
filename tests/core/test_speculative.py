"""The `pause` / `resume` extension (protocol 2) in the session machine: hints inside a segment become
actions, outside one they are harmless, and `ready` announces the protocol; and the engine bounds what
pauses cost a segment. The real server's side is in tests/server/test_speculative.py and
tests/server/test_fairness.py."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable

import numpy as np
from stt_core import protocol as p
from stt_core import session as s
from stt_core.decoder import Piece, Transcript
from stt_core.engine import Engine, EngineConfig, PartialResult
from stt_core.options import SpeechOptions
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


# ---- the engine's bounds on what pauses cost (a pause comes from the peer) ----------------------------


class GatedDecoder:
    """A stand-in decoder whose finals block until released, counting every decode it is asked for."""

    model_name = "gated"
    languages = ("en",)

    def __init__(self) -> None:
        self.release = threading.Event()
        self.finals = 0
        self.partials = 0

    def final(self, audio: np.ndarray, options: SpeechOptions) -> Transcript:
        self.finals += 1
        self.release.wait(10)
        return Transcript(text=f"final of {audio.size}", confidence=1.0, language="en")

    def partial(self, audio: np.ndarray, options: SpeechOptions) -> Transcript:
        self.partials += 1
        text = f"partial of {audio.size}"
        piece = Piece(0.0, audio.size / 16000, text)
        return Transcript(text=text, confidence=1.0, language="en", pieces=(piece,))


async def _until(cond: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):  # generous: a loaded machine is slow, never this slow
        while not cond():  # noqa: ASYNC110 (decode threads change the state polled; no event to wait on)
            await asyncio.sleep(0.01)


SPEECH = np.full(16000, 0.1, dtype=np.float32)


async def test_one_speculative_decode_at_a_time_per_segment():
    """Pause/resume in a loop while the first speculative decode runs starts no second one; the pause
    standing when that decode ends is taken up then, and its result is the final."""
    dec = GatedDecoder()
    engine = Engine(dec, EngineConfig(final_workers=2, speculative_burst=100))
    try:
        seg = engine.open_segment()
        seg.feed(SPEECH)
        assert seg.pause() is True
        await _until(lambda: dec.finals == 1)
        refused = 0
        for _ in range(50):
            seg.resume()
            refused += not seg.pause()
            await asyncio.sleep(0)
        assert dec.finals == 1
        assert refused == 50
        dec.release.set()
        await _until(lambda: dec.finals == 2)  # the standing pause, once the stale decode was over
        final = await seg.finish()
        assert final.speculative is True
        assert dec.finals == 2
    finally:
        dec.release.set()
        engine.close()


async def test_the_speculative_budget_is_spent_then_pauses_are_ignored():
    """With decodes that end at once, each pause may start one, until the segment's budget is spent:
    later pauses start nothing (False, for the server to count) and the final is decoded at the end."""
    dec = GatedDecoder()
    dec.release.set()
    engine = Engine(dec, EngineConfig(speculative_burst=3, speculative_every_s=3600))
    try:
        seg = engine.open_segment()
        seg.feed(SPEECH)
        started = []
        for _ in range(10):
            started.append(seg.pause())
            spec = seg._speculation
            if spec is not None and spec.task is not None:
                await spec.task  # over before the resume: nothing in flight to wait for
            seg.resume()
        assert started == [True] * 3 + [False] * 7
        assert dec.finals == 3
        final = await seg.finish()
        assert final.speculative is False
        assert dec.finals == 4
    finally:
        engine.close()


async def test_a_speculative_decode_does_not_hold_back_other_sessions_partials():
    """A real final pending holds every session's partials back; a speculative one (a guess, maybe
    dropped at the next resume) does not: another segment's partials go on while it decodes."""
    dec = GatedDecoder()
    engine = Engine(dec, EngineConfig(partial_interval_ms=20, first_partial_ms=20))
    heard: list[PartialResult] = []

    async def on_partial(r: PartialResult) -> None:
        heard.append(r)

    try:
        hinting = engine.open_segment()
        hinting.feed(SPEECH)
        hinting.pause()
        await _until(lambda: dec.finals == 1)  # blocked in its decode
        other = engine.open_segment(on_partial=on_partial)
        for _ in range(5):
            other.feed(SPEECH[:3200])
            await asyncio.sleep(0.05)
        await _until(lambda: len(heard) >= 2)
        hinting.cancel()
        other.cancel()
    finally:
        dec.release.set()
        engine.close()
