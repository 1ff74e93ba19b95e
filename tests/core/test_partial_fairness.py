"""The partials' scheduler (Engine._partial_turn): under load, who decodes next. With PARTIAL_ORDER=fair the
segment whose last partial is oldest, with fifo whoever asked first; a waiter that goes away hands its
turn on; no partial starts while a final is pending; and real segments sharing one slow partial worker
all keep getting partials."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from stt_core.decoder import EMPTY, Piece, Transcript
from stt_core.engine import Engine, EngineConfig, PartialResult
from stt_core.options import SpeechOptions

from harness.speech import clip


class Stub:
    """A decoder whose decodes do nothing: the scheduler is what is under test, not the model."""

    model_name = "stub"
    languages = ("en",)

    def final(self, audio: np.ndarray, options: SpeechOptions) -> Transcript:
        return EMPTY

    def partial(self, audio: np.ndarray, options: SpeechOptions) -> Transcript:
        return EMPTY


async def wait_for(cond, within_s: float = 30.0) -> None:
    for _ in range(int(within_s / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def order_of_turns(order: str) -> list[str]:
    """One partial holds the only worker; three more ask, in the order B, A, C, with their last partials
    begun at 5, 1 and 3; returns the order in which they decoded."""
    engine = Engine(Stub(), EngineConfig(partial_workers=1, partial_order=order))  # type: ignore[arg-type]
    release, ran = threading.Event(), []

    def blocker() -> Transcript:
        release.wait(30)
        return EMPTY

    def named(name: str):
        def fn() -> Transcript:
            ran.append(name)
            return EMPTY
        return fn

    try:
        first = asyncio.create_task(engine._run("partial", blocker, since=0.0))
        await wait_for(lambda: engine._partial_slots == 0)
        waiting = []
        for name, since in (("B", 5.0), ("A", 1.0), ("C", 3.0)):
            waiting.append(asyncio.create_task(engine._run("partial", named(name), since=since)))
            queued = len(waiting)
            await wait_for(lambda queued=queued: len(engine._partial_queue) == queued)
        release.set()
        await asyncio.gather(first, *waiting)
    finally:
        release.set()
        engine.close()
    return ran


@pytest.mark.parametrize(("order", "expected"), [("fair", ["A", "C", "B"]), ("fifo", ["B", "A", "C"])])
async def test_the_next_partial_goes_to_the_oldest_last_partial_or_the_first_to_ask(order, expected):
    assert await order_of_turns(order) == expected


async def test_a_waiter_cancelled_hands_its_turn_on_and_finals_hold_partials_back():
    """A segment that ends while waiting takes no worker with it; a pending final keeps partials waiting
    and its end lets them go."""
    engine = Engine(Stub(), EngineConfig(partial_workers=1))  # type: ignore[arg-type]
    release, final_release, ran = threading.Event(), threading.Event(), []

    def blocker() -> Transcript:
        release.wait(30)
        return EMPTY

    def final() -> Transcript:
        final_release.wait(30)
        return EMPTY

    try:
        held = asyncio.create_task(engine._run("partial", blocker, since=0.0))
        await wait_for(lambda: engine._partial_slots == 0)
        gone = asyncio.create_task(engine._run("partial", lambda: ran.append("gone") or EMPTY, since=1.0))
        await wait_for(lambda: len(engine._partial_queue) == 1)
        gone.cancel()
        release.set()
        await held
        assert engine._partial_slots == 1
        pending_final = asyncio.create_task(engine._run("final", final))
        await wait_for(lambda: engine._finals_pending == 1)
        later = asyncio.create_task(engine._run("partial", lambda: ran.append("later") or EMPTY, since=2.0))
        await asyncio.sleep(0.3)
        assert ran == []  # no partial beside a final
        assert not later.done()
        final_release.set()
        await asyncio.gather(pending_final, later)
        assert ran == ["later"]
        assert engine._partial_slots == 1
    finally:
        release.set()
        final_release.set()
        engine.close()


class SlowStub(Stub):
    """Partials that take a while and always say something, so that every segment keeps asking."""

    def __init__(self) -> None:
        self.calls = 0

    def partial(self, audio: np.ndarray, options: SpeechOptions) -> Transcript:
        self.calls += 1
        threading.Event().wait(0.05)
        text = f"words {self.calls}"
        return Transcript(text=text, confidence=0.9, language="en",
                          pieces=(Piece(0.0, audio.size / 16000, text),))


async def test_no_segment_starves_when_one_worker_serves_many():
    """Eight segments fed at once share one partial worker that can serve only a few of them per
    interval: every one of them gets partials, and the least served is within a few of the most."""
    decoder = SlowStub()
    engine = Engine(decoder, EngineConfig(partial_workers=1, partial_interval_ms=100))  # type: ignore[arg-type]
    heard: dict[int, int] = {}
    pcm = clip("LJ001-0002")
    try:
        def counter(i: int):
            async def on_partial(p: PartialResult) -> None:
                heard[i] = heard.get(i, 0) + 1
            return on_partial

        segs = [engine.open_segment(on_partial=counter(i)) for i in range(8)]
        for step in range(0, 16000 * 3, 1600):  # 3 s of audio in 0.1 s steps
            for seg in segs:
                seg.feed_pcm16(pcm[step % (len(pcm) - 1600):][:1600].tobytes())
            await asyncio.sleep(0.1)
        await wait_for(lambda: len(heard) == 8)
        for seg in segs:
            seg.cancel()
    finally:
        engine.close()
    assert min(heard.values()) >= 2, heard
    assert max(heard.values()) - min(heard.values()) <= 3, heard
