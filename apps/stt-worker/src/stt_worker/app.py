"""The worker: audio source -> voice gate -> backend -> MQTT, with an ordered, bounded shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog
from stt_core import __version__
from stt_core import vad as v
from stt_core.errors import ConfigError, PeerError
from stt_core.sdnotify import Notifier

from . import control, discovery, hermes
from .backend import Backend, BackendUnavailable, Transcript, UtteranceStream
from .backend_local import LocalBackend
from .backend_ws import WsBackend
from .failover import FailoverBackend
from .mqtt_link import Incoming, MqttLink
from .persist import StateFile, state_dir
from .settings import WorkerSettings
from .sources import StdinSource, WavSource
from .topics import Topics

log = structlog.get_logger(__name__)


class Source(Protocol):
    describe: str

    def frames(self) -> AsyncIterator[bytes]: ...


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_source(settings: WorkerSettings) -> Source:
    frame_ms = settings.vad_frame_ms
    if settings.audio_source == "-":
        return StdinSource(frame_ms)
    if settings.audio_source == "mic":
        from .mic import MicSource

        return MicSource(settings.audio_device, frame_ms)
    return WavSource(Path(settings.audio_source), frame_ms, realtime=settings.audio_realtime)


def make_backend(settings: WorkerSettings, on_connection_change: callable | None = None) -> Backend:  # type: ignore[valid-type]
    if settings.stt_backend == "local":
        return LocalBackend(settings)
    ws = WsBackend(settings, on_connection_change)
    if settings.stt_fallback == "local":
        return FailoverBackend(ws, LocalBackend(settings))
    return ws


@dataclass
class Utterance:
    id: str
    stream: UtteranceStream
    started_wall: float
    t_start_ms: int
    voiced_end_wall: float = 0.0
    ended_wall: float = 0.0
    audio_ms: int = 0
    first_partial_wall: float | None = None
    partials: int = 0
    reason: str = ""
    extra: dict[str, object] = field(default_factory=dict)


def _session(utt: Utterance) -> str | None:
    """The Hermes session an utterance was started for (hermes/asr/startListening), if any."""
    sid = utt.extra.get("session_id")
    return sid if isinstance(sid, str) else None


class Worker:
    def __init__(self, settings: WorkerSettings, *, notifier: Notifier | None = None) -> None:
        self.s = settings
        self.topic = settings.topic
        self.link = MqttLink(settings, settings.mqtt_client_id or f"stt-worker-{settings.site_id}")
        self.topics = Topics.of(settings.mqtt_base_topic, settings.site_id)
        self.store = StateFile(state_dir(), settings.site_id, settings.stt_backend)
        saved = self.store.load()
        # backends are built on first use and kept: switching back and forth reloads nothing
        self._local: LocalBackend | None = None
        self._backends: dict[str, Backend] = {}
        self._started: set[str] = set()
        self._switching = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.backend_name = saved.backend or settings.stt_backend
        self.backend = self._backend(self.backend_name)
        self.source = make_source(settings)
        self.gate = v.VadGate(settings.vad_config())
        self.notifier = notifier or Notifier()
        self.current: Utterance | None = None
        self.finals: asyncio.Queue[Utterance | None] = asyncio.Queue()
        self.listening = False
        self.muted = saved.muted
        self._mute_epoch = 0  # bumped by every mute: finals of earlier utterances are not published
        self._last_frame = time.monotonic()
        self._stop = asyncio.Event()
        self.exit_code = 0

    # ---- lifecycle --------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        await self.link.start()
        self.link.on_connect = self.publish_state
        await self.backend.start()  # ConfigError (a model that cannot load) ends the run with 78
        self._started.add(self.backend_name)
        self._wire()
        self.listening = True
        self.publish_state()
        await self.link.wait_connected(5.0)
        log.info("worker_started", site_id=self.s.site_id, backend=self.backend_name,
                 source=self.source.describe, model=self.backend.model,
                 mqtt=f"{self.s.mqtt_host}:{self.s.mqtt_port}", topic=self.topic)
        self.notifier.ready(f"listening on {self.source.describe}")
        publisher = loop.create_task(self._publish_finals())
        watchdog = loop.create_task(self._watchdog()) if self.notifier.watchdog_interval else None
        capture = loop.create_task(self._capture())
        stop = loop.create_task(self._stop.wait())
        await asyncio.wait({capture, stop}, return_when=asyncio.FIRST_COMPLETED)
        ended_by_input = capture.done()
        if capture.done() and capture.exception() is not None:
            exc = capture.exception()
            if isinstance(exc, ConfigError):
                raise exc
            log.error("capture_failed", error=repr(exc))
            self.exit_code = 1
        await self._shutdown(capture, publisher, reason="end_of_input" if ended_by_input else "signal")
        for task in (watchdog, stop):
            if task is not None:
                task.cancel()
        return self.exit_code

    async def _shutdown(self, capture: asyncio.Task[None], publisher: asyncio.Task[None],
                        reason: str) -> None:
        """Ordered and bounded: stop capture, finish the current utterance's final, deliver every queued
        final to the broker, say offline, disconnect. SHUTDOWN_TIMEOUT_S bounds the whole of it."""
        self.notifier.stopping()
        deadline = time.monotonic() + self.s.shutdown_timeout_s
        log.info("worker_stopping", reason=reason)
        capture.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await capture
        for event in self.gate.close("flush"):
            self._on_event(event)
        self.finals.put_nowait(None)
        if reason == "end_of_input":
            # nobody asked us to stop: every utterance heard gets its final, however long the backlog
            # (stdin fed faster than real time); a signal meanwhile bounds the rest as usual
            stop = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait({publisher, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            deadline = time.monotonic() + self.s.shutdown_timeout_s
        try:
            async with asyncio.timeout(max(0.1, deadline - time.monotonic() - 0.5)):
                await publisher
        except TimeoutError:
            log.warning("shutdown_final_timeout")
            publisher.cancel()
        self.listening = False
        self.publish_state()
        if not await self.link.flush(max(0.1, deadline - time.monotonic() - 0.3)):
            log.warning("shutdown_undelivered", queued=self.link.queued)
        await self.link.close(timeout_s=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(Exception):
            async with asyncio.timeout(0.5):
                await self._stop_backends()
        log.info("worker_stopped")

    async def _watchdog(self) -> None:
        assert self.notifier.watchdog_interval is not None
        while True:
            # a capture loop that stopped turning (a wedged device or driver) stops the pings: systemd
            # restarts us. A device that is merely away does not: the microphone keeps yielding GAPs.
            if time.monotonic() - self._last_frame < max(10.0, 4 * self.notifier.watchdog_interval):
                self.notifier.watchdog()
            await asyncio.sleep(self.notifier.watchdog_interval)

    # ---- audio ------------------------------------------------------------------------------

    async def _capture(self) -> None:
        # AUDIO_REALTIME=0 reads a file "as fast as the decoder goes": each utterance's final is out
        # before the file is read on, so a long file neither floods a server nor piles up finals
        paced_by_decoder = isinstance(self.source, WavSource) and not self.source.realtime
        async for frame in self.source.frames():
            self._last_frame = time.monotonic()
            if not frame:  # the microphone is away (mic.GAP): what was being said ends here
                if self.gate.is_open:
                    log.info("utterance_cut_by_device_loss")
                for event in self.gate.close("flush"):
                    self._on_event(event)
                # nor does the pre-roll from before the gap lead into what is heard after it
                self.gate = v.VadGate(self.gate.config, self.gate.is_speech)
                continue
            if self.muted:
                continue
            for event in self.gate.feed(frame):
                self._on_event(event)
                if paced_by_decoder and isinstance(event, v.SpeechEnd):
                    await self.finals.join()
            if self.current is not None and self.gate.is_open and self.gate.t_ms == self.gate.voiced_end_ms:
                self.current.voiced_end_wall = time.time()

    def _on_event(self, event: v.Event) -> None:
        if isinstance(event, v.SpeechStart):
            self._begin(event)
        elif self.current is None:
            return
        elif isinstance(event, v.SpeechAudio):
            self.current.stream.feed(event.audio)
            self.current.audio_ms += len(event.audio) // 32
        elif isinstance(event, v.Pause):
            self.current.stream.pause()
        elif isinstance(event, v.Resume):
            self.current.stream.resume()
        elif isinstance(event, v.SpeechEnd):
            self._end(event)
        elif isinstance(event, v.SpeechDiscarded):
            log.debug("utterance_discarded", utterance_id=self.current.id, voiced_ms=event.voiced_ms)
            self.current.stream.cancel()
            self.current = None
            self.link.publish_retained(f"{self.topic}/speech", "OFF")

    def _begin(self, event: v.SpeechStart) -> None:
        now = time.time()
        uid = uuid.uuid4().hex[:16]
        held_ms = self.gate.t_ms - event.t_ms
        utt = Utterance(id=uid, stream=None, started_wall=now - held_ms / 1000, t_start_ms=event.t_ms)  # type: ignore[arg-type]
        utt.voiced_end_wall = now
        utt.extra["epoch"] = self._mute_epoch

        async def partial(text: str, t_ms: int) -> None:
            if self.current is not utt or not text:
                return
            if utt.first_partial_wall is None:
                utt.first_partial_wall = time.time()
            utt.partials += 1
            self.link.publish_ephemeral(f"{self.topic}/transcript/partial", json.dumps(
                {"utterance_id": uid, "text": text, "t_ms": t_ms, "backend": self._backend_label()}))
            self._announce_partial(utt, text, t_ms)

        utt.stream = self.backend.open(partial)
        utt.stream.feed(event.audio)
        utt.audio_ms = len(event.audio) // 32
        self.current = utt
        self.link.publish_retained(f"{self.topic}/speech", "ON")

    def _end(self, event: v.SpeechEnd) -> None:
        utt, self.current = self.current, None
        assert utt is not None
        utt.ended_wall = time.time()
        utt.reason = event.reason
        self.link.publish_retained(f"{self.topic}/speech", "OFF")
        self.finals.put_nowait(utt)

    # ---- finals -----------------------------------------------------------------------------

    async def _publish_finals(self) -> None:
        """One at a time, in the order spoken: a fast final never overtakes a slow earlier one."""
        while (utt := await self.finals.get()) is not None:
            try:
                result = await utt.stream.finish()
            except BackendUnavailable as exc:
                self._publish_error(utt, "backend_unavailable", str(exc))
                continue
            except Exception as exc:  # one bad utterance must not stop the rest
                log.exception("final_failed", utterance_id=utt.id)
                self._publish_error(utt, "decode_failed", repr(exc))
                continue
            else:
                self._publish_final(utt, result)
            finally:
                self.finals.task_done()

    def _publish_final(self, utt: Utterance, t: Transcript) -> None:
        if utt.extra.get("epoch") != self._mute_epoch or self.muted:
            log.info("utterance_dropped_muted", utterance_id=utt.id)
            return
        now = time.time()
        latency_ms = int((now - utt.voiced_end_wall) * 1000)
        timings = {"audio_ms": utt.audio_ms, "latency_ms": latency_ms,
                   "first_partial_ms": int((utt.first_partial_wall - utt.started_wall) * 1000)
                   if utt.first_partial_wall else None, "partials": utt.partials}
        if not t.text:
            log.info("utterance_empty", utterance_id=utt.id, backend=t.backend, **timings)
            return
        payload = {
            "site_id": self.s.site_id, "utterance_id": utt.id, "text": t.text, "confidence": t.confidence,
            "language": t.language, "backend": t.backend, "model": t.model,
            "audio_s": round(utt.audio_ms / 1000, 3), "latency_ms": latency_ms,
            "started_at": iso(utt.started_wall), "ended_at": iso(utt.voiced_end_wall),
            "fallback": t.fallback,
        }
        self.link.publish_reliable(f"{self.topic}/transcript/final", json.dumps(payload))
        self._announce_final(utt, payload)
        log.info("utterance", utterance_id=utt.id, text=t.text, backend=t.backend, fallback=t.fallback,
                 confidence=t.confidence, end=utt.reason, decode_ms=t.decode_ms, speculative=t.speculative,
                 **timings)

    def _publish_error(self, utt: Utterance, code: str, message: str) -> None:
        log.error("utterance_lost_backend", utterance_id=utt.id, code=code, detail=message)
        self.link.publish_reliable(f"{self.topic}/error", json.dumps({
            "site_id": self.s.site_id, "utterance_id": utt.id, "code": code, "message": message,
            "audio_s": round(utt.audio_ms / 1000, 3), "started_at": iso(utt.started_wall),
            "ended_at": iso(utt.voiced_end_wall)}))

    # ---- state ------------------------------------------------------------------------------

    def _backend_label(self) -> str:
        if self.backend.connected:
            return self.backend_name
        return "local" if self.s.stt_fallback == "local" else "ws"

    def _backend_changed(self, up: bool) -> None:
        self.publish_state()

    def publish_state(self) -> None:
        ws = self._ws()
        self.link.publish_retained(f"{self.topic}/state", json.dumps({
            "backend": self.backend_name, "active_backend": self._backend_label(),
            "backend_connected": self.backend.connected, "server_connected": ws.connected if ws else None,
            "listening": self.listening and not self.muted, "muted": self.muted, "model": self.backend.model,
            "version": __version__, "site_id": self.s.site_id}))

    # ---- control: Home Assistant, <base>/<site>/set, Hermes ------------------------------------

    def _wire(self) -> None:
        """Subscribe to the control topics (the link subscribes again after every reconnect), route
        what arrives, announce discovery."""
        self.link.on_message = self._on_message
        for topic in self.topics.commands:
            self.link.subscribe(topic)
        if self.s.ha_discovery:
            self.link.subscribe(discovery.status_topic(self.s))
            self.publish_discovery()
        if self.s.hermes:
            for topic in hermes.SUBSCRIPTIONS:
                self.link.subscribe(topic)
        self.link.publish_retained(self.topics.speech, "OFF")

    def publish_discovery(self) -> None:
        for topic, config in discovery.configs(self.s).items():
            self.link.publish_retained(topic, json.dumps(config))

    def _on_message(self, msg: Incoming) -> None:
        if msg.topic == discovery.status_topic(self.s):
            if msg.payload.strip() == b"online" and self.s.ha_discovery:
                log.info("home_assistant_online")
                self.publish_discovery()
            return
        if msg.retain:
            # a retained command would be applied again at every start: it is someone's mistake
            log.warning("control_retained_ignored", topic=msg.topic)
            return
        try:
            if msg.topic in hermes.SUBSCRIPTIONS:
                cmd = hermes.parse(msg.topic, msg.payload, self.s.site_id)
                if isinstance(cmd, hermes.Toggle):
                    self.set_muted(not cmd.on)
                elif isinstance(cmd, hermes.StartListening):
                    self.listen(cmd.session_id)
                elif isinstance(cmd, hermes.StopListening):
                    self.stop_listening(cmd.session_id)
                return
            for command in control.decode(self.topics, msg.topic, msg.payload):
                self.apply(command)
        except PeerError as exc:
            log.warning("control_refused", topic=msg.topic, code=exc.code, detail=exc.message)
            self.link.publish_reliable(self.topics.error, json.dumps(
                control.error_payload(self.s.site_id, msg.topic, msg.payload, exc.code, exc.message)))

    def apply(self, command: control.Command) -> None:
        if isinstance(command, control.SetMuted):
            self.set_muted(command.muted)
        elif isinstance(command, control.SetBackend):
            task = asyncio.get_running_loop().create_task(self.switch_backend(command.backend))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif command.start:
            self.listen(command.session_id)
        else:
            self.stop_listening(command.session_id)

    def set_muted(self, muted: bool) -> None:
        """A muted worker captures nothing and publishes no transcript: the utterance being spoken is
        dropped, and so are finals still being decoded."""
        if muted and not self.muted:
            self._mute_epoch += 1
            utt, self.current = self.current, None
            if utt is not None:
                utt.stream.cancel()
                self.link.publish_retained(self.topics.speech, "OFF")
                log.info("utterance_dropped_muted", utterance_id=utt.id)
            # a fresh gate: nothing heard before muting (pre-roll, an open utterance) leaks past it
            self.gate = v.VadGate(self.gate.config, self.gate.is_speech)
        if muted != self.muted:
            log.info("muted" if muted else "unmuted")
        self.muted = muted
        self.publish_state()
        self.store.save(muted=self.muted, backend=self.backend_name)

    def listen(self, session_id: str | None = None) -> None:
        """Start an utterance now (the Listen button, hermes/asr/startListening): it ends on the usual
        hangover, or at stop_listening."""
        if self.muted:
            raise control.ControlError("muted", "the worker is muted: unmute it first")
        for event in self.gate.open():
            self._on_event(event)
        if self.current is not None and session_id is not None:
            self.current.extra["session_id"] = session_id
        log.info("listen", session_id=session_id)

    def stop_listening(self, session_id: str | None = None) -> None:
        if self.current is None or session_id not in (None, self.current.extra.get("session_id", session_id)):
            return
        for event in self.gate.close("forced"):
            self._on_event(event)

    async def switch_backend(self, name: str) -> None:
        """From the next utterance on; the state confirms. The one in use stays if the other cannot
        start (a local model that does not load); ws with the server down works through the failover."""
        async with self._switching:
            if name != self.backend_name:
                backend = self._backend(name)
                try:
                    if name not in self._started:
                        await backend.start()
                        self._started.add(name)
                except Exception as exc:  # refuse the switch, keep working
                    log.error("backend_switch_failed", backend=name, error=str(exc))
                    self.link.publish_reliable(self.topics.error, json.dumps(control.error_payload(
                        self.s.site_id, self.topics.backend_set, name.encode(), "backend_failed", str(exc))))
                    self._backends.pop(name, None)
                    return
                self.backend, self.backend_name = backend, name
                log.info("backend_switched", backend=name, model=backend.model)
            self.publish_state()
            self.store.save(muted=self.muted, backend=self.backend_name)

    def _backend(self, name: str) -> Backend:
        """The backend called ``name``, built on first use. The local engine is one, shared with the
        ws backend's fallback, so it is loaded once whichever way the switches go."""
        if name not in self._backends:
            if self._local is None and (name == "local" or self.s.stt_fallback == "local"):
                self._local = LocalBackend(self.s)
            if name == "local":
                assert self._local is not None
                self._backends[name] = self._local
            else:
                ws = WsBackend(self.s, self._backend_changed)
                self._backends[name] = FailoverBackend(ws, self._local) if self._local is not None else ws
        return self._backends[name]

    def _ws(self) -> WsBackend | None:
        b = self._backends.get("ws")
        return b.primary if isinstance(b, FailoverBackend) else b if isinstance(b, WsBackend) else None

    async def _stop_backends(self) -> None:
        ws = self._ws()
        if ws is not None:
            await ws.stop()
        if self._local is not None:
            await self._local.stop()

    def _announce_final(self, utt: Utterance, payload: dict[str, Any]) -> None:
        """Beside transcript/final: Home Assistant's event (fires on every utterance, the same words
        twice included), the retained last transcript (sensor state and attributes), Hermes."""
        event = {"event_type": discovery.EVENT_TYPE, **payload}
        self.link.publish_reliable(self.topics.event, json.dumps(event))
        self.link.publish_retained(self.topics.last, json.dumps(payload))
        if self.s.hermes:
            self.link.publish_reliable(hermes.TEXT_CAPTURED, json.dumps(hermes.text_captured(
                text=payload["text"], likelihood=payload["confidence"], seconds=payload["audio_s"],
                site_id=self.s.site_id, session_id=_session(utt), lang=payload["language"])))

    def _announce_partial(self, utt: Utterance, text: str, t_ms: int) -> None:
        if self.s.hermes:
            # the likelihood of text that may still change is not known: 0, as Rhasspy's partials say
            self.link.publish_ephemeral(hermes.PARTIAL_TEXT_CAPTURED, json.dumps(hermes.partial_text_captured(
                text=text, likelihood=0.0, seconds=round(utt.audio_ms / 1000, 3), site_id=self.s.site_id,
                session_id=_session(utt), lang=self.s.whisper_lang)))
