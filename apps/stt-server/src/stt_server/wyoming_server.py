"""The Wyoming listener (``WYOMING_PORT``, 10300 by default): Home Assistant Assist's speech-to-text
on the same engine, model, limits and metrics as ``/stt``.

Events are read and written with the ``wyoming`` package's own framing (``async_read_event``,
``async_write_event``), through a reader that bounds what a header may claim: the package reads
whatever ``data_length`` or ``payload_length`` a peer announces, and a lying header must cost an
``error`` event and a closed connection, not the server's memory. The session logic is the sans-I/O
``WyomingSession``; this module only moves events and runs the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from typing import Any

import faster_whisper
import structlog
from stt_core import __version__, jsonwire
from stt_core import session as s
from stt_core.engine import PartialResult
from stt_core.errors import PeerError
from wyoming.error import Error
from wyoming.event import Event, async_read_event, async_write_event
from wyoming.info import AsrModel, AsrProgram, Attribution, Info

from . import wyoming_session as w
from .context import REFUSALS, Context, SegmentRunner, peer_address
from .peer_errors import PeerErrors

log = structlog.get_logger(__name__)

MAX_HEADER_BYTES = 64 * 1024  # one JSON line
MAX_DATA_BYTES = 64 * 1024  # the data section a header announces
PROGRAM = "stt-bridge"
SERVICE = "_wyoming._tcp.local."
REPO = "https://github.com/stt-bridge/stt-bridge"


class FrameTooLarge(Exception):
    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(f"{what} of {size} bytes is over the limit of {limit}")


class BadFrame(Exception):
    """Bytes that are not a Wyoming event (``async_read_event`` would answer them with None, as it
    answers the end of the stream)."""


class _BoundedReader:
    """What ``async_read_event`` reads through (``readline``, ``readexactly``). The header line is
    bounded by the stream's own limit (``MAX_HEADER_BYTES``) and must be a JSON object; the lengths
    it announces are checked before anything more is read, and the data section must be JSON too."""

    def __init__(self, reader: asyncio.StreamReader, max_payload: int) -> None:
        self.reader = reader
        self.limits = {"data_length": MAX_DATA_BYTES, "payload_length": max_payload}
        self._data_length: int | None = None  # the data section the last header announced, not read yet

    async def readline(self) -> bytes:
        try:
            line = await self.reader.readline()
        except ValueError:  # asyncio's own limit: the line is over MAX_HEADER_BYTES
            raise BadFrame(f"a header line over {MAX_HEADER_BYTES} bytes") from None
        if not line:
            return line  # the end of the stream
        try:
            header = jsonwire.loads(line)
        except PeerError:
            raise BadFrame("not a Wyoming event: a JSON header line was expected") from None
        if not isinstance(header, dict) or not isinstance(header.get("type"), str):
            raise BadFrame("a Wyoming header is a JSON object with a type")
        for key, limit in self.limits.items():
            n = header.get(key)
            if n is not None and not isinstance(n, int):
                raise BadFrame(f"{key} must be a number of bytes")
            if isinstance(n, int) and n > limit:
                raise FrameTooLarge(key, n, limit)
        n = header.get("data_length")
        self._data_length = n if isinstance(n, int) and n > 0 else None
        return line

    async def readexactly(self, n: int) -> bytes:
        data = await self.reader.readexactly(n)
        if self._data_length is not None and n == self._data_length:
            self._data_length = None
            try:
                ok = isinstance(jsonwire.loads(data), dict)
            except PeerError:
                ok = False
            if not ok:
                raise BadFrame("the data section is not a JSON object")
        return data


def build_info(ctx: Context) -> Info:
    """What ``describe`` answers: one ASR program, the model loaded, its real languages. With a draft
    model its name is in the description: the transcript chunks (partials) come from it, the transcript
    from ``name``; listed as a model of its own it would look like one a client could choose."""
    draft = f"; partials by Whisper {ctx.info.draft_model}" if ctx.info.draft_model else ""
    model = AsrModel(name=ctx.info.model, description=f"Whisper {ctx.info.model} on {ctx.info.device}{draft}",
                     attribution=Attribution(name="OpenAI Whisper, faster-whisper (SYSTRAN)",
                                             url="https://github.com/SYSTRAN/faster-whisper"),
                     installed=True, languages=list(ctx.languages), version=faster_whisper.__version__)
    program = AsrProgram(name=PROGRAM, attribution=Attribution(name="stt-bridge", url=REPO), installed=True,
                         description="Streaming Whisper speech-to-text with partials (stt-bridge)",
                         version=__version__, models=[model], supports_transcript_streaming=True,
                         # Home Assistant's pipeline ends the utterance: this listener never does
                         requires_external_vad=True)
    return Info(asr=[program])


class WyomingConnection:
    def __init__(self, ctx: Context, info: Info, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.ctx = ctx
        st = ctx.settings
        self.machine = w.WyomingSession(
            info=info, languages=ctx.languages,
            limits=w.WyomingLimits(max_segment_s=st.max_segment_s, max_chunks_per_s=st.max_frames_per_s),
            vad=st.vad_config())
        self.reader = _BoundedReader(reader, st.max_frame_bytes)
        self.writer = writer
        self.segment = SegmentRunner(ctx, "wyoming")
        self._lock = asyncio.Lock()
        self._closing = False
        peer = writer.get_extra_info("peername")
        self.log = log.bind(peer=str(peer[0]) if peer else "?", dialect="wyoming")
        self.peer_errors = PeerErrors(self.log, ctx.metrics, "wyoming")

    async def run(self) -> None:
        idle = self.ctx.settings.idle_timeout_s
        try:
            while not self._closing:
                try:
                    async with asyncio.timeout(idle):
                        event = await self._read()
                except TimeoutError:
                    await self.apply(self.machine.idle_timeout())
                    continue
                except (BadFrame, FrameTooLarge, asyncio.IncompleteReadError, ConnectionError, RecursionError,
                        KeyError, TypeError, AttributeError, ValueError) as exc:
                    await self.apply(self._framing_error(exc))
                    continue
                if event is None:
                    break  # the peer closed the connection
                await self.apply(self.machine.receive(event, time.monotonic()))
        finally:
            if self.segment.open:
                self.log.info("segment_abandoned", segment=self.machine.segment)
                self.segment.cancel()
            self.peer_errors.summary()
            with contextlib.suppress(Exception):
                self.writer.close()
                await self.writer.wait_closed()

    async def _read(self) -> Event | None:
        return await async_read_event(self.reader)  # type: ignore[arg-type]

    def _framing_error(self, exc: BaseException) -> list[w.Action]:
        if isinstance(exc, FrameTooLarge):
            return self.machine.refuse("payload_too_large", str(exc))
        if isinstance(exc, BadFrame):
            return self.machine.refuse("bad_event", str(exc))
        if isinstance(exc, asyncio.IncompleteReadError):
            return self.machine.refuse("truncated", f"the connection ended {len(exc.partial)} bytes into "
                                                    f"{exc.expected} that a header announced")
        return self.machine.refuse("bad_event", f"not a Wyoming event ({type(exc).__name__})")

    async def shutdown(self) -> None:
        """Server stopping: audio being streamed still gets its transcript, then the close."""
        await self.apply(self.machine.shutdown())

    async def apply(self, actions: list[w.Action]) -> None:
        async with self._lock:
            for action in actions:
                await self._do(action)

    async def _do(self, action: w.Action) -> None:
        if isinstance(action, w.Reply):
            await self._send(action.event)
        elif isinstance(action, s.OpenSegment):
            options = action.options
            self.log.info("transcribe", language=options.language, hotwords=bool(options.hotwords),
                          vad_sensitivity=self.machine.vad_sensitivity)
            self.segment.start(action.sample_rate, action.options, self._partial)
        elif isinstance(action, s.Audio):
            self.segment.feed(action.pcm)
        elif isinstance(action, s.PauseSegment):
            self.segment.pause()
        elif isinstance(action, s.ResumeSegment):
            self.segment.resume()
        elif isinstance(action, s.EndSegment):
            result = await self.segment.finish()
            if result is not None:
                self.log.info("final", segment=self.machine.segment, audio_ms=result.t_ms,
                              decode_ms=result.decode_ms, chars=len(result.text),
                              speculative=result.speculative)
                for reply in self.machine.final(result):
                    await self._do(reply)
        elif isinstance(action, w.Hangup):
            self._closing = True
            self.segment.cancel()
            with contextlib.suppress(Exception):
                self.writer.close()

    async def _partial(self, result: PartialResult) -> None:
        for action in self.machine.partial(result.text):
            await self._do(action)

    async def _send(self, event: Event) -> None:
        if Error.is_type(event.type):
            self.peer_errors(str(event.data.get("code") or "error"), event.data.get("text"))
        with contextlib.suppress(ConnectionError, RuntimeError):
            await async_write_event(event, self.writer)


class WyomingListener:
    """The TCP server, sessions counted with ``/stt``'s against ``MAX_SESSIONS``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.info = build_info(ctx)
        self.server: asyncio.Server | None = None
        self._zeroconf: Any = None

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> list[tuple[str, int]]:
        """Listen on host:port; with ``tls`` every connection is TLS from its first byte (the
        handshake bounded, so that a client that never finishes one does not hold a socket)."""
        self.server = await asyncio.start_server(self._handle, host, port, limit=MAX_HEADER_BYTES, ssl=tls,
                                                 ssl_handshake_timeout=10 if tls is not None else None)
        return [s.getsockname()[:2] for s in self.server.sockets]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = peer_address(writer.get_extra_info("peername"))
        refusal = self.ctx.refusal(peer)
        if refusal is not None:
            self.ctx.metrics.error(refusal, dialect="wyoming")
            with contextlib.suppress(Exception):
                await async_write_event(Error(text=REFUSALS[refusal], code=refusal).event(), writer)
                writer.close()
            return
        conn = WyomingConnection(self.ctx, self.info, reader, writer)
        self.ctx.admit(conn, peer)
        self.ctx.metrics.count("sessions_total", dialect="wyoming")
        try:
            await conn.run()
        except Exception:  # one connection's bug must not take the listener down
            conn.log.exception("wyoming_connection_failed")
        finally:
            self.ctx.leave(conn)

    async def advertise(self, host: str, port: int, name: str | None = None) -> None:
        """``_wyoming._tcp`` over mDNS, as wyoming-faster-whisper's ``--zeroconf`` does (the
        ``zeroconf`` package, the record ``wyoming.zeroconf`` registers), so Home Assistant offers the
        service by itself. An unspecified address (0.0.0.0) cannot be advertised (Home Assistant drops
        it): the address this host reaches the network with is. Unregistered at shutdown."""
        from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

        name = name or f"{PROGRAM}-{socket.gethostname().split('.')[0]}"
        address = host if host not in ("0.0.0.0", "::", "") else _outward_address()
        info = AsyncServiceInfo(SERVICE, f"{name}.{SERVICE}", addresses=[socket.inet_aton(address)],
                                port=port, properties={"version": __version__})
        self._zeroconf = AsyncZeroconf()
        await self._zeroconf.async_register_service(info)
        log.info("zeroconf_advertised", service=SERVICE, name=name, address=address, port=port)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self._zeroconf is not None:
            with contextlib.suppress(Exception):
                await self._zeroconf.async_unregister_all_services()
                await self._zeroconf.async_close()


def _outward_address() -> str:
    """The IPv4 address multicast would leave by (no packet is sent: a UDP connect only routes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("224.0.0.251", 5353))
            return str(sock.getsockname()[0])
        except OSError:
            return "127.0.0.1"
