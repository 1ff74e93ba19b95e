"""``STT_BACKEND=wyoming``: any Wyoming speech-to-text server at ``WYOMING_URI`` (stt-server's
listener, wyoming-faster-whisper, Home Assistant's Whisper add-on).

Wyoming is one request per connection, as Home Assistant uses it: each utterance connects, sends
``transcribe``, ``audio-start``, its audio as ``audio-chunk`` events, and ``audio-stop`` when the gate
closes, then reads until the ``transcript``. Audio said before the connection is up waits in the
stream's queue, so the first syllable is not lost to the handshake. A server that streams
``transcript-chunk`` events gets its chunks published as partials (joined: a chunk is "part of the
transcript"); one that does not (wyoming-faster-whisper) gives the final only.

The connection state shown in the worker's state (``server_connected``) comes from the utterances
themselves and, while the server is away, from a ``describe`` probe with jittered, capped backoff.
When an utterance's connection fails, the utterance machine replays its audio to the local engine.
"""

from __future__ import annotations

import asyncio

import structlog
from stt_core.daemon.backoff import Backoff
from stt_core.options import SpeechOptions
from wyoming.asr import Transcribe, Transcript, TranscriptChunk
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncClient
from wyoming.error import Error
from wyoming.info import Describe, Info

from .backend import BackendName, ConnectionChanged, Emit, FinalText, PartialText, StreamFailed
from .settings import WorkerSettings

log = structlog.get_logger(__name__)

RATE, WIDTH, CHANNELS = 16_000, 2, 1
_STOP = b""  # the queue's marker for audio-stop


class WyomingBackend:
    name: BackendName = "wyoming"

    def __init__(self, settings: WorkerSettings, emit: Emit) -> None:
        self.settings = settings
        self.uri = settings.wyoming_uri
        self._emit = emit
        self._connected = False
        self._model = "?"
        self.backoff = Backoff(initial=0.5, cap=settings.reconnect_max_s)
        self._probe: asyncio.Task[None] | None = None
        self._streams: set[WyomingStream] = set()

    @property
    def model(self) -> str:
        return self._model

    @property
    def connected(self) -> bool:
        return self._connected

    def client(self) -> AsyncClient:
        s = self.settings
        return AsyncClient.from_uri(self.uri, connect_timeout=s.ws_connect_timeout_s)

    async def start(self) -> None:
        """One ``describe`` to learn the server and its model; an unreachable server is not an error
        (utterances fall back, and the probe keeps looking)."""
        if not await self._describe():
            self._watch()

    async def stop(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
        for stream in list(self._streams):
            stream.cancel()

    def open(self, utterance_id: str, options: SpeechOptions) -> WyomingStream:
        stream = WyomingStream(self, utterance_id, options)
        self._streams.add(stream)
        return stream

    # ---- the server's state -----------------------------------------------------------------

    async def _describe(self) -> bool:
        try:
            async with asyncio.timeout(self.settings.ws_connect_timeout_s + 2), self.client() as c:
                await c.write_event(Describe().event())
                while (event := await c.read_event()) is not None:
                    if Info.is_type(event.type):
                        self._learned(Info.from_event(event))
                        self.up()
                        return True
        except (OSError, TimeoutError, ValueError, KeyError) as exc:
            log.warning("server_unreachable", uri=self.uri, error=str(exc) or type(exc).__name__)
        return False

    def _learned(self, info: Info) -> None:
        programs = [p for p in info.asr if p.installed] or info.asr
        models = [m for p in programs for m in p.models if m.installed]
        if models and models[0].name != self._model:
            self._model = models[0].name

    def up(self) -> None:
        self.backoff.reset()
        if not self._connected:
            self._connected = True
            log.info("server_connected", uri=self.uri, model=self._model)
            self._emit(ConnectionChanged("wyoming", True))

    def down(self, why: str) -> None:
        if self._connected:
            self._connected = False
            log.warning("server_lost", uri=self.uri, error=why)
            self._emit(ConnectionChanged("wyoming", False))
        self._watch()

    def _watch(self) -> None:
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._probe_until_up())

    async def _probe_until_up(self) -> None:
        while not self._connected:
            await asyncio.sleep(self.backoff.next_delay())
            if not self._connected:
                await self._describe()


class WyomingStream:
    """One utterance over its own connection. Never raises: everything comes back as events."""

    def __init__(self, backend: WyomingBackend, utterance_id: str, options: SpeechOptions) -> None:
        self.backend = backend
        self.id = utterance_id
        self.options = options
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._cancelled = False
        self._task = asyncio.get_running_loop().create_task(self._run())

    def feed(self, pcm16: bytes) -> None:
        if pcm16:
            self._queue.put_nowait(pcm16)

    def pause(self) -> None:
        """Wyoming has no hint for trailing silence: the server sees the audio and decides."""

    def resume(self) -> None:
        """See ``pause``."""

    def finish(self) -> None:
        self._queue.put_nowait(_STOP)

    def cancel(self) -> None:
        self._cancelled = True
        self._task.cancel()
        self.backend._streams.discard(self)

    async def _run(self) -> None:
        b = self.backend
        try:
            async with b.client() as client:
                await client.write_event(Transcribe(language=self.options.language,
                                                    transcript_terms=_terms(self.options)).event())
                await client.write_event(AudioStart(rate=RATE, width=WIDTH, channels=CHANNELS).event())
                reader = asyncio.get_running_loop().create_task(self._read(client))
                try:
                    await self._send_audio(client, reader)
                    await reader
                finally:
                    reader.cancel()
                    await asyncio.gather(reader, return_exceptions=True)
        except asyncio.CancelledError:
            if not self._cancelled:
                raise
        except Exception as exc:  # the connection failed, or the server answered nonsense
            why = str(exc) or type(exc).__name__
            self._fail(f"wyoming server: {why}")
            b.down(why)
        finally:
            b._streams.discard(self)

    async def _send_audio(self, client: AsyncClient, reader: asyncio.Task[None]) -> None:
        while True:
            pcm = await self._queue.get()
            if reader.done():
                return  # the server has answered (or failed): nothing more to send
            if pcm == _STOP:
                await client.write_event(AudioStop().event())
                return
            await client.write_event(AudioChunk(rate=RATE, width=WIDTH, channels=CHANNELS, audio=pcm).event())

    async def _read(self, client: AsyncClient) -> None:
        heard = ""
        while True:
            event = await client.read_event()
            if event is None:
                raise ConnectionError("the server closed the connection before the transcript")
            if TranscriptChunk.is_type(event.type):
                heard += TranscriptChunk.from_event(event).text
                if heard.strip() and not self._cancelled:
                    self.backend._emit(PartialText(self.id, "wyoming", heard.strip(), 0))
            elif Transcript.is_type(event.type):
                t = Transcript.from_event(event)
                self.backend.up()
                if not self._cancelled:
                    self.backend._emit(FinalText(self.id, "wyoming", t.text.strip(), _confidence(event.data),
                                                 t.language or self.options.language, self.backend.model))
                return
            elif Error.is_type(event.type):
                e = Error.from_event(event)
                self._fail(f"wyoming server error {e.code or ''}: {e.text}".strip())
                return

    def _fail(self, why: str) -> None:
        if not self._cancelled:
            self._cancelled = True
            self.backend._emit(StreamFailed(self.id, "wyoming", why))


def _confidence(data: dict[str, object]) -> float:
    """stt-server adds ``confidence`` to its transcripts; Wyoming itself has none, and 0 then says
    "not known", as Rhasspy's partials do."""
    value = data.get("confidence")
    return float(value) if isinstance(value, int | float) and 0 <= value <= 1 else 0.0


def _terms(options: SpeechOptions) -> list[str] | None:
    """WHISPER_HOTWORDS as Wyoming's transcript_terms (comma-separated words and names); Wyoming has
    no field for a free-text prompt."""
    if not options.hotwords:
        return None
    return [t.strip() for t in options.hotwords.split(",") if t.strip()] or None
