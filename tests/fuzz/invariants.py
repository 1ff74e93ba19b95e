"""What every session machine's output must look like, whatever went in: checked after each call.

* Only the machine's own action types come back.
* Segments: an ``OpenSegment`` only when none is open, numbered above every earlier one; ``Audio``,
  ``PauseSegment`` and ``ResumeSegment`` only inside a segment, with whole samples; ``EndSegment`` and
  ``CancelSegment`` only when one is open.
* Closing: a ``Close`` (Wyoming: ``Hangup``) is the last action of its call; the machine is closed
  exactly when it has said so, and once closed every input returns nothing. A segment is never left
  open by a close (``/stt`` and the seed dialects end it first; Wyoming drops it, its adapter cancels).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import event
from stt_core import protocol as p
from stt_core import session as s
from stt_server import wyoming_session as w

SEGMENT_ACTIONS = (s.OpenSegment, s.Audio, s.EndSegment, s.CancelSegment, s.PauseSegment, s.ResumeSegment)
ACTIONS = (s.Send, s.Close, s.HealthWanted, *SEGMENT_ACTIONS)
WYOMING_ACTIONS = (w.Reply, w.Hangup, s.OpenSegment, s.Audio, s.EndSegment, s.PauseSegment, s.ResumeSegment)


@dataclass
class Checker:
    actions: tuple[type, ...] = ACTIONS
    closes: tuple[type, ...] = (s.Close,)
    close_ends_segment: bool = True
    open: bool = False
    last_index: int = 0
    closed: bool = False
    ended: list[tuple[int, p.FinalReason]] = field(default_factory=list)  # finals the engine owes
    sends: list[p.Message] = field(default_factory=list)

    def check(self, actions: Sequence[Any], machine_closed: bool, what: str = "") -> None:
        """``actions`` of one call; ``machine_closed``: the machine's own state after it."""
        where = f" (after {what})" if what else ""
        assert isinstance(actions, list), f"a list of actions{where}"
        if self.closed:
            assert actions == [], f"nothing after the close{where}: {actions}"
        for i, a in enumerate(actions):
            assert isinstance(a, self.actions), f"{type(a).__name__} is not an action{where}"
            # --hypothesis-show-statistics: how deep the fuzzer got, and what stopped it
            event(f"error {a.message.code}" if isinstance(a, s.Send) and isinstance(a.message, p.Error)
                  else type(a).__name__)
            if isinstance(a, s.OpenSegment):
                assert not self.open, f"a segment opened inside another{where}"
                assert a.index > self.last_index, f"segment {a.index} after {self.last_index}{where}"
                assert a.sample_rate > 0
                self.open, self.last_index = True, a.index
            elif isinstance(a, s.Audio):
                assert self.open, f"audio outside a segment{where}"
                assert len(a.pcm) % 2 == 0, f"audio of {len(a.pcm)} bytes{where}"
            elif isinstance(a, s.PauseSegment | s.ResumeSegment):
                assert self.open, f"{type(a).__name__} outside a segment{where}"
            elif isinstance(a, s.EndSegment | s.CancelSegment):
                assert self.open, f"{type(a).__name__} with no segment open{where}"
                self.open = False
                if isinstance(a, s.EndSegment):
                    self.ended.append((self.last_index, a.reason))
            elif isinstance(a, self.closes):
                assert i == len(actions) - 1, f"actions after the close{where}: {actions[i:]}"
                if self.close_ends_segment:
                    assert not self.open, f"closed with a segment open{where}"
                self.closed = True
                self.open = False
            elif isinstance(a, s.Send):
                assert isinstance(a.message, p.Message)
                self.sends.append(a.message)
                a.message.model_dump_json()  # every message can be written as a frame
        said = "a close" if self.closed else "no close"
        assert machine_closed == self.closed, \
            f"the machine is {'closed' if machine_closed else 'open'} but said {said}{where}"


def drive(m: Any, steps: list[tuple[Any, ...]], checker: Checker,
          after: Callable[[], None] = lambda: None) -> None:
    """Feeds ``steps`` to a dialect machine (``receive_text``/``receive_bytes``/``idle_timeout``/
    ``shutdown``, and the engine's ``partial``/``final`` for the segments it ended) at increasing
    times, checking each call; ``after`` checks the machine's own invariants after each step."""
    now = 1000.0
    for step in steps:
        after()
        kind = step[0]
        if kind in ("text", "bytes"):
            now += step[2]
            out = m.receive_text(step[1], now) if kind == "text" else m.receive_bytes(step[1], now)
        elif kind == "idle":
            out = m.idle_timeout()
        elif kind == "shutdown":
            out = m.shutdown()
        elif kind == "partial":
            assert all(isinstance(a, s.Send) for a in m.partial(step[1]))
            continue
        else:  # the engine's final of the oldest segment ended and not yet answered
            if checker.ended:
                segment, reason = checker.ended.pop(0)
                assert all(isinstance(a, s.Send) for a in m.final(step[1], reason, segment))
            continue
        checker.check(out, m.state.value == "closed", kind)
    after()
