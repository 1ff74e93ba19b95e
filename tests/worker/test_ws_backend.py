"""WsBackend in process, against a real websockets server that speaks /stt through the server's own
session machine (with a stand-in decoder: each 20 ms frame's samples hold a word number). What is
checked is the shell's part: the token, the frames it writes (queued audio coalesced), and the
session's events turned into the worker's backend events."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator, Callable
from http import HTTPStatus
from typing import Any

import pytest
import structlog
from stt_core import protocol as p
from stt_core import session as s
from stt_worker.backend import (
    BackendEvent,
    ConnectionChanged,
    FinalText,
    PartialText,
    SpeechOptions,
    StreamFailed,
)
from stt_worker.backend_ws import COALESCE_BYTES, WsBackend
from stt_worker.settings import WorkerSettings
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

FRAME_BYTES = 640


def frame(word: int) -> bytes:
    return struct.pack("<h", word) * (FRAME_BYTES // 2)


def words_of(pcm: bytes) -> str:
    return " ".join(f"w{struct.unpack_from('<h', pcm, i)[0]}" for i in range(0, len(pcm), FRAME_BYTES))


class FakeStt:
    """A /stt endpoint: SessionMachine plus a decoder that reads the words back."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.authorization: list[str | None] = []
        self.frames: list[int] = []  # sizes of the binary frames received
        self.texts: list[str] = []
        self.server: Server | None = None

    def check(self, connection: ServerConnection, request: Request) -> Response | None:
        got = request.headers.get("Authorization")
        self.authorization.append(got)
        if self.token is not None and got != f"Bearer {self.token}":
            return connection.respond(HTTPStatus.UNAUTHORIZED, "unauthorized\n")
        return None

    async def handler(self, ws: ServerConnection) -> None:
        machine = s.SessionMachine(model="tiny")
        pcm = b""
        async for msg in ws:
            if isinstance(msg, str):
                self.texts.append(msg)
                actions = machine.receive_text(msg)
            else:
                self.frames.append(len(msg))
                actions = machine.receive_bytes(msg, time.monotonic())
            for a in actions:
                if isinstance(a, s.Send):
                    await ws.send(p.encode(a.message))
                elif isinstance(a, s.OpenSegment):
                    pcm = b""
                elif isinstance(a, s.Audio):
                    pcm += a.pcm
                    await ws.send(p.encode(p.Partial(text=words_of(pcm), confidence=0.5, t_ms=len(pcm) // 32,
                                                     segment=machine.segment)))
                elif isinstance(a, s.EndSegment):
                    await ws.send(p.encode(p.Final(text=words_of(pcm), confidence=0.9, t_ms=len(pcm) // 32,
                                                   segment=machine.segment, model="tiny",
                                                   reason=a.reason)))  # type: ignore[arg-type]
                elif isinstance(a, s.Close):
                    await ws.close(a.code.value, a.reason)


@pytest.fixture
async def stt() -> AsyncIterator[tuple[FakeStt, int]]:
    fake = FakeStt()
    async with serve(fake.handler, "127.0.0.1", 0, process_request=fake.check) as server:
        fake.server = server
        yield fake, server.sockets[0].getsockname()[1]


def backend_for(port: int, events: list[BackendEvent], **kw: Any) -> WsBackend:
    settings = WorkerSettings(_env_file=None, ws_url=f"ws://127.0.0.1:{port}/stt",  # type: ignore[call-arg]
                              site_id="kitchen", **{"ws_connect_timeout_s": 3, **kw})
    return WsBackend(settings, events.append)


async def until(cond: Callable[[], bool]) -> None:
    """Wait (up to 5 s) for a condition on the backend, its events or the server."""
    async with asyncio.timeout(5.0):
        while not cond():  # noqa: ASYNC110 (conditions on several objects; no one event to wait on)
            await asyncio.sleep(0.01)


async def test_an_utterance_goes_out_coalesced_and_comes_back_as_events(stt):
    """After start() the backend is connected and has the server's model; an utterance's partial and
    final come back as PartialText / FinalText events for it; audio queued at once goes out in frames
    of at most COALESCE_BYTES; pause and end reach the server."""
    fake, port = stt
    events: list[BackendEvent] = []
    backend = backend_for(port, events)
    with structlog.testing.capture_logs() as logs:
        await backend.start()
    try:
        assert backend.connected
        assert "server_connected" in [entry["event"] for entry in logs]
        await until(lambda: backend.model == "tiny")
        assert events[0] == ConnectionChanged(backend="ws", connected=True)

        stream = backend.open("u1", SpeechOptions())
        for w in range(1, 21):  # 400 ms queued before the writer runs
            stream.feed(frame(w))
        await until(lambda: any(isinstance(e, PartialText) for e in events))
        stream.pause()
        stream.finish()
        await until(lambda: any(isinstance(e, FinalText) for e in events))
        final = next(e for e in events if isinstance(e, FinalText))
        assert (final.utterance_id, final.backend, final.model, final.language) == ("u1", "ws", "tiny", "en")
        assert final.text == " ".join(f"w{i}" for i in range(1, 21))
        partial = next(e for e in events if isinstance(e, PartialText))
        assert (partial.utterance_id, partial.backend) == ("u1", "ws")
        assert fake.frames == [COALESCE_BYTES, COALESCE_BYTES]
        assert [p.decode_client_message(t).type for t in fake.texts] == ["init", "pause", "end"]
        assert fake.authorization == [None]
    finally:
        await backend.stop()


async def test_the_token_goes_as_a_bearer_header_and_a_refusal_fails_streams_at_once(stt):
    """WS_TOKEN is sent as Authorization: Bearer; a server that refuses it (HTTP 401) is logged as
    server_refused, the backend stays disconnected and a stream opened then fails at once."""
    fake, port = stt
    fake.token = "s3cret"
    events: list[BackendEvent] = []
    good = backend_for(port, events, ws_token="s3cret")
    await good.start()
    try:
        assert good.connected
    finally:
        await good.stop()
    assert fake.authorization == ["Bearer s3cret"]

    bad = backend_for(port, events, ws_token="wrong", ws_connect_timeout_s=0.5)  # start() waits this long
    with structlog.testing.capture_logs() as logs:
        await bad.start()
        await until(lambda: any(entry["event"] == "server_refused" for entry in logs))
    try:
        assert not bad.connected
        events.clear()
        bad.open("u1", SpeechOptions()).finish()
        assert events == [StreamFailed(utterance_id="u1", backend="ws", reason="not connected to the server")]
    finally:
        await bad.stop()


async def test_a_server_that_goes_away_fails_the_open_stream_and_says_so(stt):
    """When the connection drops, the stream still waiting fails (StreamFailed), the backend says it
    is disconnected (ConnectionChanged), and a stream opened afterwards fails at once."""
    fake, port = stt
    events: list[BackendEvent] = []
    backend = backend_for(port, events)
    await backend.start()
    try:
        await until(lambda: backend.model == "tiny")
        stream = backend.open("u1", SpeechOptions())
        stream.feed(frame(1))
        await until(lambda: fake.frames != [])
        assert fake.server is not None
        fake.server.close()  # closes every connection and stops accepting
        await until(lambda: not backend.connected)
        await until(lambda: ConnectionChanged(backend="ws", connected=False) in events)
        failed = [e for e in events if isinstance(e, StreamFailed)]
        assert [(e.utterance_id, e.reason) for e in failed] == [("u1", "connection to the server lost")]
        stream.finish()  # already failed: nothing more for it
        backend.open("u2", SpeechOptions())
        failed = [e for e in events if isinstance(e, StreamFailed)]
        assert [e.utterance_id for e in failed] == ["u1", "u2"]
    finally:
        await backend.stop()
