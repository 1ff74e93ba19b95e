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
from typing import Protocol

import structlog

from stt_core import __version__
from stt_core import vad as v
from stt_core.errors import ConfigError
from stt_core.sdnotify import Notifier

from .backend import Backend, BackendUnavailable, Transcript, UtteranceStream
from .backend_local import LocalBackend
from .backend_ws import WsBackend
from .failover import FailoverBackend
from .mqtt_link import MqttLink
from .settings import WorkerSettings
from .sources import StdinSource, WavSource

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


class Worker:
    def __init__(self, settings: WorkerSettings, *, notifier: Notifier | None = None) -> None:
        self.s = settings
        self.topic = settings.topic
        self.link = MqttLink(settings, settings.mqtt_client_id or f"stt-worker-{settings.site_id}")
        self.backend = make_backend(settings, self._backend_changed)
        self.source = make_source(settings)
        self.gate = v.VadGate(settings.vad_config())
        self.notifier = notifier or Notifier()
        self.current: Utterance | None = None
        self.finals: asyncio.Queue[Utterance | None] = asyncio.Queue()
        self.listening = False
        self.muted = False
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
        self.listening = True
        self.publish_state()
        await self.link.wait_connected(5.0)
        log.info("worker_started", site_id=self.s.site_id, backend=self.s.stt_backend, source=self.source.describe,
                 model=self.backend.model, mqtt=f"{self.s.mqtt_host}:{self.s.mqtt_port}", topic=self.topic)
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

    async def _shutdown(self, capture: asyncio.Task[None], publisher: asyncio.Task[None], reason: str) -> None:
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
        await self.link.close(timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(Exception):
            async with asyncio.timeout(0.5):
                await self.backend.stop()
        log.info("worker_stopped")

    async def _watchdog(self) -> None:
        assert self.notifier.watchdog_interval is not None
        while True:
            # a capture loop that stopped turning (a wedged device) stops the pings: systemd restarts us
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

        async def partial(text: str, t_ms: int) -> None:
            if self.current is not utt or not text:
                return
            if utt.first_partial_wall is None:
                utt.first_partial_wall = time.time()
            utt.partials += 1
            self.link.publish_ephemeral(f"{self.topic}/transcript/partial", json.dumps(
                {"utterance_id": uid, "text": text, "t_ms": t_ms, "backend": self._backend_label()}))

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
            except Exception as exc:  # noqa: BLE001 - one bad utterance must not stop the rest
                log.exception("final_failed", utterance_id=utt.id)
                self._publish_error(utt, "decode_failed", repr(exc))
                continue
            else:
                self._publish_final(utt, result)
            finally:
                self.finals.task_done()

    def _publish_final(self, utt: Utterance, t: Transcript) -> None:
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
            "language": t.language, "backend": t.backend, "model": t.model, "audio_s": round(utt.audio_ms / 1000, 3),
            "latency_ms": latency_ms, "started_at": iso(utt.started_wall), "ended_at": iso(utt.voiced_end_wall),
            "fallback": t.fallback,
        }
        self.link.publish_reliable(f"{self.topic}/transcript/final", json.dumps(payload))
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
        return self.s.stt_backend if self.backend.connected else "local" if self.s.stt_fallback == "local" else "ws"

    def _backend_changed(self, up: bool) -> None:
        self.publish_state()

    def publish_state(self) -> None:
        self.link.publish_retained(f"{self.topic}/state", json.dumps({
            "backend": self.s.stt_backend, "backend_connected": self.backend.connected,
            "listening": self.listening and not self.muted, "muted": self.muted, "model": self.backend.model,
            "version": __version__, "site_id": self.s.site_id}))
