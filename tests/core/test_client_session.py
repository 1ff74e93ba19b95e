"""The client half of ``/stt`` (``stt_core.client``) against the server's own half, in one process.

Every frame the client produces is fed to the server's ``SessionMachine``; every message the server
would send (built from the machine's actions as ``stt_server.connection`` builds them) is fed back to
the client. So the two halves are checked against each other, not against a copy of the rules. The
decoder is a stand-in: each 20 ms frame's samples hold a word number, and a segment's text is the
words of its frames in order, so a final says exactly which audio it was made from.

Either direction of the link can be held (frames queue up, as on a slow link or behind a slow
decode) and released; nothing here has a clock or a socket, so every run is the same.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import pytest
from stt_core import protocol as p
from stt_core import session as s
from stt_core.client import (
    Action,
    ClientEvent,
    ClientSession,
    Failed,
    FinalFor,
    Out,
    PartialFor,
    SendBytes,
    SendText,
    ServerModel,
    ServerProblem,
)
from stt_core.options import SpeechOptions
from stt_core.session import CloseCode, Limits, SessionMachine

FRAME_BYTES = 640  # 20 ms at 16 kHz
CUT_LIMITS = Limits(max_segment_s=0.1)  # the server cuts a segment after 5 frames


def frame(word: int) -> bytes:
    return struct.pack("<h", word) * (FRAME_BYTES // 2)


def words_of(pcm: bytes) -> str:
    return " ".join(f"w{struct.unpack_from('<h', pcm, i)[0]}" for i in range(0, len(pcm), FRAME_BYTES))


def words(first: int, last: int) -> str:
    return " ".join(f"w{i}" for i in range(first, last + 1))


class FakeServer:
    """The server's session machine with what ``stt_server.connection`` does around it."""

    def __init__(self, limits: Limits, protocol: int | None, numbered: bool = True) -> None:
        self.machine = SessionMachine(limits=limits, model="tiny", partial_interval_ms=250)
        self.protocol = protocol  # rewrite ready's protocol (an older server), or None
        self.numbered = numbered  # False: an older server, whose partials and finals name no segment
        self.now = 100.0
        self.pcm = b""
        self.in_segment = False
        self.segments: dict[int, str] = {}  # every segment's words, as the server heard them
        self.errors: list[str] = []
        self.hints: list[tuple[str, int]] = []
        self.closed: CloseCode | None = None
        self.outbox: list[str] = []

    def receive(self, out: Out) -> None:
        if isinstance(out, SendText):
            self.apply(self.machine.receive_text(out.text))
        else:
            self.apply(self.machine.receive_bytes(out.data, self.now))
            self.now += 0.02  # frames in real time: the flood limit never trips

    def apply(self, actions: Sequence[s.Action]) -> None:
        for a in actions:
            if isinstance(a, s.Send):
                msg = a.message
                if isinstance(msg, p.Error):
                    self.errors.append(msg.code)
                if isinstance(msg, p.Ready) and self.protocol is not None:
                    msg = msg.model_copy(update={"protocol": self.protocol})
                self.outbox.append(p.encode(msg))
            elif isinstance(a, s.OpenSegment):
                self.pcm, self.in_segment = b"", True
            elif isinstance(a, s.Audio):
                self.pcm += a.pcm
            elif isinstance(a, s.EndSegment):
                # as connection.py: the final names the machine's current segment
                index = self.machine.segment
                self.segments[index] = words_of(self.pcm)
                self.outbox.append(p.encode(p.Final(
                    text=words_of(self.pcm), confidence=0.9, t_ms=len(self.pcm) // 32,
                    session_id=self.machine.session_id, segment=index if self.numbered else 0,
                    language="en", model="tiny",
                    reason=a.reason)))  # type: ignore[arg-type]
                self.in_segment = False
            elif isinstance(a, s.PauseSegment | s.ResumeSegment):
                self.hints.append((type(a).__name__, self.machine.segment))
            elif isinstance(a, s.Close):
                self.closed = a.code

    def partial(self) -> None:
        """The engine's partial loop firing now: the open segment's words so far."""
        assert self.in_segment
        self.outbox.append(p.encode(p.Partial(text=words_of(self.pcm), confidence=0.5,
                                              t_ms=len(self.pcm) // 32, session_id=self.machine.session_id,
                                              segment=self.machine.segment if self.numbered else 0)))


class Link:
    """A ClientSession wired to a FakeServer. ``hold_up`` / ``hold_down`` queue the frames of that
    direction until ``flush_up()`` / ``deliver()``."""

    def __init__(self, limits: Limits | None = None, protocol: int | None = None, *,
                 hold_up: bool = False, hold_down: bool = False) -> None:
        self.limits = limits or Limits()
        self.protocol = protocol
        self.client = ClientSession("kitchen", SpeechOptions())
        self.hold_up, self.hold_down = hold_up, hold_down
        self.up: list[Out] = []
        self.events: list[ClientEvent] = []
        self.server = FakeServer(self.limits, protocol)
        self.run(self.client.connected())

    def reconnect(self) -> None:
        self.server = FakeServer(self.limits, self.protocol)
        self.up.clear()
        self.run(self.client.connected())

    def run(self, actions: Sequence[Action]) -> list[Action]:
        for a in actions:
            if isinstance(a, SendText | SendBytes):
                self.up.append(a)
            else:
                self.events.append(a)
        if not self.hold_up:
            self.flush_up()
        return list(actions)

    def flush_up(self) -> None:
        while self.up:
            self.server.receive(self.up.pop(0))
        if not self.hold_down:
            self.deliver()

    def deliver(self) -> None:
        while self.server.outbox:
            self.events += self.client.receive_text(self.server.outbox.pop(0))

    # ---- the worker's side, shortened ---------------------------------------------------------

    def open(self, key: str) -> None:
        self.run(self.client.open(key))

    def speak(self, key: str, first: int, last: int) -> None:
        """Words first..last as one 20 ms frame each (the first of a key opens it)."""
        if self.client.segment_of(key) is None:
            self.open(key)
        for w in range(first, last + 1):
            self.run(self.client.audio(key, frame(w)))

    def end(self, key: str) -> list[Action]:
        return self.run(self.client.end(key))

    def take(self) -> list[ClientEvent]:
        events, self.events = self.events, []
        return events

    def finals(self) -> list[tuple[str, str]]:
        return [(e.key, e.final.text) for e in self.events if isinstance(e, FinalFor)]

    def failures(self) -> list[str]:
        return [e.key for e in self.events if isinstance(e, Failed)]

    def in_step(self, *, server_errors: Sequence[str] = ()) -> None:
        """Every client frame was accepted (no error but those named) and every server message was
        understood (no ServerProblem)."""
        assert self.server.errors == list(server_errors)
        assert self.server.closed is None
        assert [e for e in self.events if isinstance(e, ServerProblem)] == []


def sent(actions: Sequence[Action]) -> list[Any]:
    """What a call put on the wire: text frames decoded, binary frames as their byte count."""
    return [p.decode_client_message(a.text).type if isinstance(a, SendText) else len(a.data)
            for a in actions if isinstance(a, SendText | SendBytes)]


# ---- connecting -------------------------------------------------------------------------------


def test_init_is_accepted_and_ready_is_understood():
    """connected() sends a typed init the server accepts; its ready sets the protocol and names the
    model (once: a second ready with the same model says nothing new)."""
    link = Link()
    assert link.take() == [ServerModel("tiny")]
    assert link.client.protocol == p.PROTOCOL_VERSION
    assert link.server.machine.state is s.State.IDLE
    assert link.server.machine.session_id == "kitchen"
    link.server.apply(link.server.machine._on_init(p.Init(type="init")))  # not again: already_initialized
    assert link.server.errors == ["already_initialized"]


def test_ready_names_the_draft_model_and_a_final_keeps_it():
    """A server with DRAFT_MODEL names it in ``ready``: the client reports the pair once; a final names
    only the finals' model, and the draft known from ``ready`` stands; a reconnect to a server without
    a draft reports the change."""
    client = ClientSession("kitchen", SpeechOptions())
    client.connected()
    ready = p.Ready(session_id="kitchen", sample_rate=16000, model="big", partial_interval_ms=250,
                    draft_model="small")
    assert client.receive_text(p.encode(ready)) == [ServerModel("big", "small")]
    assert (client.model, client.draft_model) == ("big", "small")
    assert client.receive_text(p.encode(ready)) == []  # nothing new
    final = p.Final(text="hi", confidence=0.9, t_ms=500, model="big")
    assert [e for e in client.receive_text(p.encode(final)) if isinstance(e, ServerModel)] == []
    assert client.draft_model == "small"
    client.lost("gone")
    client.connected()
    plain = p.Ready(session_id="kitchen", sample_rate=16000, model="big", partial_interval_ms=250)
    assert client.receive_text(p.encode(plain)) == [ServerModel("big", None)]
    assert client.draft_model is None


def test_protocol_is_1_until_ready_arrives():
    """Before the server's ready has been read, the client assumes the oldest protocol and does not
    count the session as served; both are forgotten with the connection."""
    link = Link(hold_down=True)
    assert (link.client.protocol, link.client.ready) == (1, False)
    link.deliver()
    assert (link.client.protocol, link.client.ready) == (2, True)
    link.client.lost("gone")
    link.hold_down = True
    link.reconnect()
    assert (link.client.protocol, link.client.ready) == (1, False)


# ---- segments and finals ----------------------------------------------------------------------


@pytest.mark.parametrize("hold_down", [False, True], ids=["answered at once", "answered at the end"])
def test_segment_numbers_agree_across_utterances(hold_down):
    """The client numbers each stream's segment as the server does (1, 2, 3 ... per connection),
    whether or not the server's answers have arrived, and each final goes to its own stream."""
    link = Link(hold_down=hold_down)
    for n, key in enumerate(["u1", "u2", "u3", "u4"], start=1):
        link.speak(key, 10 * n, 10 * n + 1)
        assert link.client.segment_of(key) == link.server.machine.segment == n
        link.end(key)
    link.deliver()
    assert link.server.segments == {n: f"w{10 * n} w{10 * n + 1}" for n in range(1, 5)}
    assert link.finals() == [(f"u{n}", f"w{10 * n} w{10 * n + 1}") for n in range(1, 5)]
    link.in_step()


ORDERS: dict[str, tuple[list[tuple[Any, ...]], str]] = {
    # name: (steps, u2's words; u1 always says w1 w2)
    "each answered before the next": ([
        ("speak", "u1", 1, 2), ("end", "u1"), ("deliver",), ("speak", "u2", 3, 3), ("end", "u2")], "w3"),
    "two ended before the first final": ([
        ("hold",), ("speak", "u1", 1, 2), ("end", "u1"), ("speak", "u2", 3, 3), ("end", "u2"), ("deliver",)],
        "w3"),
    "the next began before the first was finished": ([
        ("hold",), ("speak", "u1", 1, 2), ("speak", "u2", 3, 3), ("end", "u1"), ("end", "u2"), ("deliver",)],
        "w3"),
    "finished in reverse order": ([
        ("speak", "u1", 1, 2), ("speak", "u2", 3, 3), ("end", "u2"), ("end", "u1")], "w3"),
    "the first final read between the second's frames": ([
        ("hold",), ("speak", "u1", 1, 2), ("end", "u1"), ("speak", "u2", 3, 3), ("deliver",),
        ("speak", "u2", 4, 4), ("end", "u2"), ("deliver",)], "w3 w4"),
}


@pytest.mark.parametrize(("steps", "u2_words"), ORDERS.values(), ids=ORDERS.keys())
def test_finals_go_to_their_streams_in_order(steps, u2_words):
    """However late the server answers and in whatever order the worker finishes, each stream gets
    the final of its own audio, exactly once, in the order the segments were spoken."""
    link = Link()
    for step in steps:
        if step[0] == "hold":
            link.hold_down = True
        elif step[0] == "deliver":
            link.deliver()
        elif step[0] == "speak":
            link.speak(step[1], step[2], step[3])
        else:
            link.end(step[1])
    link.deliver()
    assert link.finals() == [("u1", "w1 w2"), ("u2", u2_words)]
    assert link.failures() == []
    link.in_step()


def test_a_server_that_numbers_no_segments_is_answered_in_order():
    """Partials and finals without a segment number (an older server): partials go to the stream
    whose segment is open, finals to the streams in the order their segments began."""
    link = Link(hold_down=True)
    link.server.numbered = False
    link.deliver()
    link.take()
    link.speak("u1", 1, 2)
    link.end("u1")
    link.speak("u2", 3, 3)
    link.server.partial()
    link.deliver()  # u1's final and u2's partial
    link.end("u2")
    link.deliver()
    assert link.take() == [
        FinalFor("u1", p.Final(text="w1 w2", confidence=0.9, t_ms=40, session_id="kitchen", language="en",
                               model="tiny")),
        PartialFor("u2", "w3", 20),
        FinalFor("u2", p.Final(text="w3", confidence=0.9, t_ms=20, session_id="kitchen", language="en",
                               model="tiny"))]
    link.in_step()


def test_the_next_streams_audio_ends_the_previous_segment_first():
    """A new stream's first audio while the previous stream's segment is open sends that segment's
    end before the audio; the previous stream's own end later sends nothing more."""
    link = Link()
    link.speak("u1", 1, 2)
    link.open("u2")
    assert sent(link.run(link.client.audio("u2", frame(3)))) == ["end", FRAME_BYTES]
    assert sent(link.end("u1")) == []
    link.end("u2")
    assert link.server.segments == {1: "w1 w2", 2: "w3"}
    assert link.finals() == [("u1", "w1 w2"), ("u2", "w3")]
    link.in_step()


def test_a_stream_with_no_audio_fails_at_end_without_sending_anything():
    """end() of a stream that sent no audio sends no end (the server would answer empty_segment) and
    fails that stream at once, saying why; the next stream is segment 1."""
    link = Link()
    link.take()
    link.open("u1")
    actions = link.end("u1")
    assert sent(actions) == []
    assert actions == [Failed("u1", "no audio was sent for this utterance")]
    link.speak("u2", 1, 1)
    assert link.client.segment_of("u2") == 1
    link.in_step()


def test_empty_audio_opens_no_segment():
    """An empty chunk sends nothing (the server opens no segment for an empty frame), so it cannot
    put the numbering out of step."""
    link = Link()
    link.open("u1")
    assert link.run(link.client.audio("u1", b"")) == []
    assert link.client.segment_of("u1") is None
    link.speak("u1", 1, 1)
    assert link.client.segment_of("u1") == link.server.machine.segment == 1


# ---- partials ---------------------------------------------------------------------------------


def test_partials_go_to_the_stream_whose_segment_they_name():
    """A partial goes to the stream of the segment it names, with the audio time it covers."""
    link = Link()
    link.take()
    link.speak("u1", 1, 2)
    link.server.partial()
    link.deliver()
    assert link.take() == [PartialFor("u1", "w1 w2", 40)]


def test_late_partials_of_an_ended_segment_are_dropped():
    """A partial that arrives after its segment was ended (here: by the next stream's audio) is
    dropped; the next stream's partial still reaches the next stream."""
    link = Link(hold_down=True)
    link.deliver()
    link.take()
    link.speak("u1", 1, 2)
    link.server.partial()  # segment 1, still on its way when u2 begins
    link.speak("u2", 3, 3)
    link.server.partial()  # segment 2
    link.deliver()
    assert [e for e in link.take() if isinstance(e, PartialFor)] == [PartialFor("u2", "w3", 20)]


# ---- pause and resume -------------------------------------------------------------------------


PAUSES = {
    # name: (server's protocol, ready read, audio sent, end sent, hints expected)
    "protocol 2 inside a segment": (2, True, True, False, True),
    "protocol 1 server": (1, True, True, False, False),
    "ready not read yet": (2, False, True, False, False),
    "no audio yet": (2, True, False, False, False),
    "after end": (2, True, True, True, False),
}


@pytest.mark.parametrize(("protocol", "ready", "audio", "ended", "expected"), PAUSES.values(),
                         ids=PAUSES.keys())
def test_pause_and_resume_are_sent_only_to_protocol_2_inside_a_segment_with_audio(
        protocol, ready, audio, ended, expected):
    """pause/resume go out only once the server's ready said protocol 2 or more, and only inside a
    segment that has audio and is not ended; otherwise nothing at all is sent."""
    link = Link(protocol=protocol, hold_down=not ready)
    link.open("u1")
    if audio:
        link.speak("u1", 1, 1)
    if ended:
        link.end("u1")
    out = [*link.run(link.client.pause("u1")), *link.run(link.client.resume("u1"))]
    assert sent(out) == (["pause", "resume"] if expected else [])
    assert link.server.hints == ([("PauseSegment", 1), ("ResumeSegment", 1)] if expected else [])
    link.in_step()


# ---- segments the server ends itself ----------------------------------------------------------


def test_a_final_cut_short_by_an_error_is_a_failure():
    """A final with reason "error" (the server closed the segment on a fatal error, its text may stop
    mid-sentence) fails its stream instead of passing the cut text on as its final."""
    link = Link(Limits(max_frame_bytes=FRAME_BYTES))
    link.take()
    link.speak("u1", 1, 2)
    link.run(link.client.audio("u1", frame(3) * 2))  # over the server's frame limit
    assert link.server.errors == ["frame_too_large"]
    assert link.server.closed is CloseCode.TOO_BIG
    events = link.take()
    assert events[0] == Failed("u1", "the server cut the segment short on an error")
    # the error itself is reported as it came; the close that follows is the adapter's to see
    assert [(type(e), getattr(e, "code", None)) for e in events[1:]] == [(ServerProblem, "frame_too_large")]
    assert link.end("u1") == []
    assert link.client.lost("closed") == []  # already failed: exactly one event for the stream


SHUTDOWNS = {
    # the server stops while u1 ... : (end reached the server first, expected)
    "is still speaking": (False, "failed"),
    "has sent end, not yet read by the server": (True, "final"),
}


@pytest.mark.parametrize(("end_sent", "expected"), SHUTDOWNS.values(), ids=SHUTDOWNS.keys())
def test_a_final_at_shutdown_is_a_final_only_if_the_utterance_had_ended(end_sent, expected):
    """On shutdown the server finishes the open segment itself: that final is the stream's final if
    the stream had already sent end, and a failure if the utterance was still going (the rest of it
    would go nowhere; the worker still has all of it)."""
    link = Link()
    link.take()
    link.speak("u1", 1, 2)
    link.hold_up = True
    if end_sent:
        link.end("u1")
    link.server.apply(link.server.machine.shutdown())
    link.flush_up()  # an end after shutdown is ignored by the server
    if expected == "final":
        assert link.finals() == [("u1", "w1 w2")]
    else:
        assert link.take() == [
            Failed("u1", "the server ended the segment before the utterance ended (shutdown)")]
    assert link.server.closed is CloseCode.GOING_AWAY


MAX_SEGMENT: dict[str, tuple[bool, int, list[str]]] = {
    # name: (answers held until both utterances were ended, u1's last word, server errors expected)
    "cut noticed while still speaking": (False, 12, []),
    "cut noticed after end": (True, 12, []),
    "ended exactly at the cut, noticed after end": (True, 10, ["empty_segment"]),
    "ended exactly at the cut, noticed before end": (False, 10, ["empty_segment"]),
}


@pytest.mark.parametrize(("late", "last", "errors"), MAX_SEGMENT.values(), ids=MAX_SEGMENT.keys())
def test_a_segment_cut_at_max_segment_continues_and_keeps_every_piece(late, last, errors):
    """The server cuts a runaway segment every 5 frames here. The rest of the stream's audio goes on
    in the next segment; the stream's one final holds the words of every piece in order; the next
    stream is numbered as the server numbers it and gets its own final, whether the cut was learned
    while speaking or only after end. When the audio ended exactly at a cut, the server's
    empty_segment answer to end is what tells the client (the one error the server sees)."""
    link = Link(CUT_LIMITS, hold_down=late)
    link.speak("u1", 1, last)
    link.end("u1")
    link.speak("u2", 50, 51)
    link.end("u2")
    link.deliver()
    pieces = {n + 1: words(1 + 5 * n, min(5 + 5 * n, last)) for n in range((last + 4) // 5)}
    u2_segment = len(pieces) + 1
    assert link.server.segments == {**pieces, u2_segment: "w50 w51"}
    assert link.finals() == [("u1", words(1, last)), ("u2", "w50 w51")]
    final = next(e.final for e in link.events if isinstance(e, FinalFor) and e.key == "u1")
    assert (final.t_ms, final.reason) == (last * 20, "end")
    assert link.failures() == []
    link.in_step(server_errors=errors)


def test_partials_after_a_cut_carry_the_cut_pieces_text():
    """After a max_segment cut, a partial of the continuation is the whole utterance so far: the cut
    piece's text in front and its audio time added."""
    link = Link(CUT_LIMITS)
    link.take()
    link.speak("u1", 1, 7)
    link.server.partial()
    link.deliver()
    assert link.take() == [PartialFor("u1", words(1, 7), 140)]
    assert link.client.segment_of("u1") == link.server.machine.segment == 2


def test_a_continuation_is_learned_from_a_partial_before_more_audio():
    """Audio in flight when the cut was made opened the next segment: a partial naming it is taken
    as the same stream's, before that stream sends anything more."""
    link = Link(CUT_LIMITS, hold_down=True)
    link.speak("u1", 1, 6)  # frame 6 went into segment 2 before the cut's final was read
    link.server.partial()
    link.deliver()
    partials = [e for e in link.events if isinstance(e, PartialFor)]
    assert partials == [PartialFor("u1", words(1, 6), 120)]
    link.end("u1")
    link.deliver()
    assert link.finals() == [("u1", words(1, 6))]
    link.in_step()


# ---- cancel -----------------------------------------------------------------------------------


CANCELS: dict[str, tuple[list[tuple[Any, ...]], dict[int, str], list[str]]] = {
    # name: (steps before u2 speaks, server segments at the end, server errors)
    "mid-utterance": ([("speak", 1, 2), ("cancel",)], {1: "w1 w2", 2: "w9"}, []),
    "before any audio": ([("open",), ("cancel",)], {1: "w9"}, []),
    "after end, before its final": ([("hold",), ("speak", 1, 2), ("end",), ("cancel",)],
                                    {1: "w1 w2", 2: "w9"}, []),
    "right after a cut": ([("speak", 1, 5), ("cancel",)], {1: words(1, 5), 2: "w9"}, ["empty_segment"]),
}


@pytest.mark.parametrize(("steps", "segments", "errors"), CANCELS.values(), ids=CANCELS.keys())
def test_cancel_keeps_the_connection_in_step(steps, segments, errors):
    """A cancelled stream gets no event at all; a segment it had audio in is still ended (so the
    next stream's audio is not added to it) and its final dropped; the next stream gets its own
    segment and final."""
    link = Link(CUT_LIMITS)
    link.take()
    for step in steps:
        if step[0] == "hold":
            link.hold_down = True
        elif step[0] == "open":
            link.open("u1")
        elif step[0] == "speak":
            link.speak("u1", step[1], step[2])
        elif step[0] == "end":
            link.end("u1")
        else:
            link.run(link.client.cancel("u1"))
    link.speak("u2", 9, 9)
    link.end("u2")
    link.deliver()
    assert link.server.segments == segments
    assert link.finals() == [("u2", "w9")]
    assert link.failures() == []
    link.in_step(server_errors=errors)


def test_cancel_before_audio_sends_nothing():
    """Cancelling a stream that sent no audio puts nothing on the wire."""
    link = Link()
    link.open("u1")
    assert link.run(link.client.cancel("u1")) == []
    assert link.run(link.client.audio("u1", frame(1))) == []  # and the stream is gone


# ---- what the server should not send ----------------------------------------------------------


GARBAGE = {
    "not JSON": "hello",
    "a JSON list": "[1, 2]",
    "unknown type": '{"type":"surprise"}',
    "final without text": '{"type":"final","confidence":0.5,"t_ms":0}',
    "partial with a text of the wrong type": '{"type":"partial","text":5,"confidence":0.5,"t_ms":0}',
    "empty": "",
}


@pytest.mark.parametrize("text", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_from_the_server_is_an_event_not_an_exception(text):
    """A server message that does not decode is reported as a bad_server_message problem (never
    raised), and the streams go on as if it had not come."""
    link = Link()
    link.take()
    link.speak("u1", 1, 2)
    events = link.client.receive_text(text)
    assert [(type(e), e.code if isinstance(e, ServerProblem) else None) for e in events] == [
        (ServerProblem, "bad_server_message")]
    link.end("u1")
    assert link.finals() == [("u1", "w1 w2")]


def test_a_binary_frame_from_the_server_is_reported():
    """The server never sends binary frames; one is a problem event, not acted on."""
    link = Link()
    (event,) = link.client.receive_bytes(b"\x00\x01")
    assert isinstance(event, ServerProblem)
    assert event.code == "bad_server_message"


def test_a_final_no_stream_awaits_is_reported():
    """A final for a segment that no stream is waiting for is reported, not given to some stream."""
    link = Link()
    link.take()
    link.speak("u1", 1, 1)
    stray = p.encode(p.Final(text="x", confidence=1.0, t_ms=0, segment=7))
    (event,) = link.client.receive_text(stray)
    assert isinstance(event, ServerProblem)
    assert event.code == "unexpected_final"


@pytest.mark.parametrize("code", ["server_busy", "shutting_down", "unauthorized"])
def test_a_refusal_fails_every_stream_at_once(code):
    """error server_busy / shutting_down / unauthorized: a fatal problem event, every stream fails,
    and streams opened after it fail at once until the adapter has connected again."""
    link = Link(hold_down=True)
    link.speak("u1", 1, 1)
    link.end("u1")
    link.speak("u2", 2, 2)
    link.open("u3")
    events = link.client.receive_text(p.encode(p.Error(code=code, message="no")))
    assert events[0] == ServerProblem(code, "no", fatal=True)
    assert [e.key for e in events[1:] if isinstance(e, Failed)] == ["u1", "u2", "u3"]
    assert not link.client.is_connected
    assert link.client.open("u4") == [Failed("u4", "not connected to the server")]
    assert link.client.lost("closed") == []


def test_other_server_errors_are_reported_and_change_nothing():
    """Any other error message is reported as it came (not fatal) and the streams go on."""
    link = Link()
    link.take()
    link.speak("u1", 1, 1)
    events = link.client.receive_text(p.encode(p.Error(code="odd_length", message="odd")))
    assert events == [ServerProblem("odd_length", "odd")]
    link.end("u1")
    assert link.finals() == [("u1", "w1")]


# ---- losing the connection --------------------------------------------------------------------


def test_lost_fails_every_open_stream_once_and_a_new_connection_starts_afresh():
    """lost() fails each stream not yet answered (no audio yet, speaking, awaiting its final), but
    not a cancelled one, exactly once; afterwards their calls send nothing, a new stream fails at
    once, and after connected() the segments start again at 1."""
    link = Link(hold_down=True)
    link.speak("u1", 1, 1)
    link.end("u1")  # awaiting its final
    link.speak("u2", 2, 2)  # speaking
    link.open("u3")  # no audio yet
    link.open("u4")
    link.speak("u4", 3, 3)
    link.run(link.client.cancel("u4"))
    events = link.client.lost("connection to the server lost")
    assert events == [Failed(k, "connection to the server lost") for k in ("u1", "u2", "u3")]
    for key in ("u1", "u2", "u3"):
        assert link.client.audio(key, frame(9)) == []
        assert link.client.end(key) == []
        assert link.client.pause(key) == []
    assert link.client.open("u5") == [Failed("u5", "not connected to the server")]
    assert link.client.receive_text(p.encode(p.Final(text="late", confidence=1, t_ms=0, segment=1))) == []

    link.hold_down = False
    link.take()
    link.reconnect()
    link.speak("u6", 4, 4)
    assert link.client.segment_of("u6") == link.server.machine.segment == 1
    link.end("u6")
    assert link.finals() == [("u6", "w4")]
    link.in_step()


def test_connected_without_lost_fails_what_was_left():
    """connected() while streams are still open from the last connection fails them (each stream
    gets its one event) before the new init."""
    link = Link()
    link.take()
    link.speak("u1", 1, 1)
    actions = link.client.connected()
    assert actions[0] == Failed("u1", "reconnected")
    assert sent(actions) == ["init"]
