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
Several servers (WYOMING_URI=tcp://a:10300,tcp://b:10300): see ``WyomingBackend``.
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
from .probe import probe_delay
from .settings import WorkerSettings

log = structlog.get_logger(__name__)

RATE, WIDTH, CHANNELS = 16_000, 2, 1
# on a less preferred server, the preferred ones are probed this often (at most; RECONNECT_MAX_S if lower)
PROBE_MAX_S = 10.0
_STOP = b""  # the queue's marker for audio-stop


class WyomingBackend:
    """WYOMING_URI may list several servers, most preferred first. Each utterance connects to the one
    in use, and at once to the next in the list when that one does not take the connection (its audio
    waits in the stream's queue meanwhile); a server that fails an utterance after taking it sends
    that utterance to the fallback, as with one server. While the one in use is not the first, a
    ``describe`` probe of the preferred ones brings the worker back to the first that answers (an
    utterance already connected keeps its server: switching is between utterances by nature)."""

    name: BackendName = "wyoming"

    def __init__(self, settings: WorkerSettings, emit: Emit) -> None:
        self.settings = settings
        self.uris = settings.wyoming_uris
        self._index = 0  # the server in use (or the preferred one, while none answers)
        self._emit = emit
        self._connected = False
        self._model = "?"
        self.backoff = Backoff(initial=0.5, cap=settings.reconnect_max_s)
        self._probe_s = min(PROBE_MAX_S, settings.reconnect_max_s)
        self._probe: asyncio.Task[None] | None = None
        self._streams: set[WyomingStream] = set()

    @property
    def model(self) -> str:
        return self._model

    @property
    def draft_model(self) -> None:
        """Wyoming's ``info`` names one model per program: a draft model is not told apart."""
        return None

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def uri(self) -> str:
        return self.uris[self._index]

    @property
    def url(self) -> str:
        """The server in use, as the retained state shows it."""
        return self.uri

    def client(self, index: int | None = None) -> AsyncClient:
        s = self.settings
        uri = self.uris[self._index if index is None else index]
        return AsyncClient.from_uri(uri, connect_timeout=s.ws_connect_timeout_s)

    def order(self) -> list[int]:
        """The servers an utterance tries, in turn: the one in use, then the rest of the list after
        it, then the ones before it (the probe, not every utterance, finds those back)."""
        n = len(self.uris)
        return [(self._index + k) % n for k in range(n)]

    async def start(self) -> None:
        """One ``describe`` per server in order, until one answers: the server and its model. None
        answering is not an error (utterances fall back, and the probe keeps looking)."""
        for index in range(len(self.uris)):
            if await self._describe(index):
                self.use(index)
                break
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

    async def _describe(self, index: int) -> bool:
        try:
            async with asyncio.timeout(self.settings.ws_connect_timeout_s + 2), self.client(index) as c:
                await c.write_event(Describe().event())
                while (event := await c.read_event()) is not None:
                    if Info.is_type(event.type):
                        self._learned(Info.from_event(event))
                        return True
        except (OSError, TimeoutError, ValueError, KeyError) as exc:
            log.warning("server_unreachable", uri=self.uris[index], error=str(exc) or type(exc).__name__)
        return False

    def _learned(self, info: Info) -> None:
        programs = [p for p in info.asr if p.installed] or info.asr
        models = [m for p in programs for m in p.models if m.installed]
        if models and models[0].name != self._model:
            self._model = models[0].name

    def use(self, index: int) -> None:
        """Server ``index`` answered: it is the one in use from the next utterance on."""
        self.backoff.reset()
        if index != self._index or not self._connected:
            moved = self._connected and index != self._index
            self._index, self._connected = index, True
            log.info("server_switch" if moved else "server_connected", uri=self.uri, model=self._model,
                     preference=index + 1, servers=len(self.uris))
            self._emit(ConnectionChanged("wyoming", True))  # the state names the server
        if index > 0:
            self._watch()

    def answered(self, index: int) -> None:
        """An utterance's transcript came from server ``index``: it is up (an utterance that began
        before a switch does not switch the worker back)."""
        if index == self._index or not self._connected:
            self.use(index)

    async def connect_first(self) -> tuple[AsyncClient, int]:
        """A connection to the first server in ``order`` that takes one, and which it is."""
        why = "no server"
        for index in self.order():
            client = self.client(index)
            try:
                await client.connect()
            except (OSError, TimeoutError) as exc:
                why = str(exc) or type(exc).__name__
                log.warning("server_unreachable", uri=self.uris[index], error=why)
                continue
            if index != self._index or not self._connected:
                self.use(index)
            return client, index
        raise ConnectionError(f"no server of WYOMING_URI took the connection (last: {why})")

    def down(self, why: str) -> None:
        if self._connected:
            self._connected = False
            log.warning("server_lost", uri=self.uri, error=why)
            self._emit(ConnectionChanged("wyoming", False))
        self._watch()

    def _watch(self) -> None:
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._probe_until_first())

    async def _probe_until_first(self) -> None:
        """While no server answers: rounds of the whole list with backoff between them. While a less
        preferred one is in use: the ones before it, every few seconds. Ends on the first server."""
        while not (self._connected and self._index == 0):
            if self._connected:
                await asyncio.sleep(probe_delay(self._probe_s))
            else:
                await asyncio.sleep(self.backoff.next_delay())
            candidates = range(self._index if self._connected else len(self.uris))
            for index in candidates:
                if await self._describe(index):
                    self.use(index)
                    break


class WyomingStream:
    """One utterance over its own connection. Never raises: everything comes back as events."""

    def __init__(self, backend: WyomingBackend, utterance_id: str, options: SpeechOptions) -> None:
        self.backend = backend
        self.id = utterance_id
        self.options = options
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._cancelled = False
        self._server = backend._index  # which of WYOMING_URI's servers took it (set on connecting)
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
            client, self._server = await b.connect_first()
            try:
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
            finally:
                await client.disconnect()
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
                self.backend.answered(self._server)
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
