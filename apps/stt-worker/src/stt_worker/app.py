"""The worker: audio source -> utterance machine -> backends and MQTT, with an ordered, bounded shutdown.

This is the adapter around ``utterances.UtteranceMachine``, as ``connection.py`` is for the server's
session: it owns the devices, tasks and the loop. It feeds the machine frames, backend events and
commands, each with the time, and carries out the actions the machine returns; every decision
(utterances, failover, the order of finals, muting) is the machine's.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

import structlog
from stt_core import vad as v
from stt_core.daemon.notify import Notifier
from stt_core.errors import ConfigError, PeerError

from . import control, hermes
from . import utterances as u
from .backend import BackendEvent, BackendName, ConnectionChanged, Stream
from .backends import REMOTE, Backends, fallback_of
from .mqtt_link import Incoming, MqttLink
from .outbox import outbox_path
from .payloads import Payloads, WorkerState
from .persist import StateFile, state_dir
from .settings import WorkerSettings
from .sources import StdinSource, WavSource
from .topics import HERMES_SUBSCRIPTIONS

log = structlog.get_logger(__name__)


class Source(Protocol):
    describe: str

    def frames(self) -> AsyncIterator[bytes]: ...


def make_source(settings: WorkerSettings) -> Source:
    frame_ms = settings.vad_frame_ms
    if settings.audio_source == "-":
        return StdinSource(frame_ms)
    if settings.audio_source == "mic":
        from .mic import MicSource

        return MicSource(settings.audio_device, frame_ms, block_ms=settings.audio_block_ms)
    return WavSource(Path(settings.audio_source), frame_ms, realtime=settings.audio_realtime)


class Worker:
    def __init__(self, settings: WorkerSettings, *, notifier: Notifier | None = None) -> None:
        self.s = settings
        self.topics = settings.topics
        directory = state_dir()
        self.link = MqttLink(settings, settings.mqtt_client_id or f"stt-worker-{settings.site_id}",
                             outbox_path=outbox_path(directory, settings.site_id))
        self.payloads = Payloads(settings)
        self.store = StateFile(directory, settings.site_id, settings.stt_backend)
        saved = self.store.load()
        self.fallback = fallback_of(settings)
        self.machine = u.UtteranceMachine(
            gate=v.VadGate(settings.vad_config()), backend=saved.backend or settings.stt_backend,
            fallback=self.fallback, remote=REMOTE, final_timeout_s=settings.ws_final_timeout_s,
            options=settings.speech_options(), muted=saved.muted)
        self.backends = Backends(settings, self._emit)
        self.streams: dict[str, Stream] = {}  # by utterance id: the stream each one is on now
        self.source = make_source(settings)
        self.notifier = notifier or Notifier()
        self.listening = False
        self._settled = asyncio.Event()  # set while no utterance waits for its final
        self._settled.set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due: float | None = None
        # unloads the local engine once it is only the fallback again and unused (FALLBACK_KEEP_S)
        self._release: asyncio.TimerHandle | None = None
        self._switching = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_frame = time.monotonic()
        self._stop = asyncio.Event()
        self.exit_code = 0

    # ---- lifecycle --------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        self.link.on_connect = self._on_mqtt_connect
        self.link.on_dropped = lambda _n: self.publish_diagnostics()
        await self.link.start()
        # ConfigError (a model that cannot load) ends the run with 78
        chosen = await self.backends.start(self.machine.backend)
        if not chosen.connected and self.fallback is not None:
            self.backends.prewarm(self.fallback)  # the server is away: have the fallback ready
        self._wire()
        self.listening = True
        self.publish_state()
        # the backend takes speech and the commands are subscribed: online from here (on their SUBACK)
        self.link.set_ready()
        await self.link.wait_connected(5.0)
        log.info("worker_started", site_id=self.s.site_id, backend=self.machine.backend,
                 source=self.source.describe, model=chosen.model,
                 mqtt=f"{self.s.mqtt_host}:{self.s.mqtt_port}", topic=self.topics.base,
                 outbox=str(self.link.outbox.path or "memory"))
        self.notifier.ready(f"listening on {self.source.describe}")
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
        await self._shutdown(capture, reason="end_of_input" if ended_by_input else "signal")
        for task in (watchdog, stop):
            if task is not None:
                task.cancel()
        return self.exit_code

    async def _shutdown(self, capture: asyncio.Task[None], reason: str) -> None:
        """Ordered and bounded: stop capture, finish the current utterance's final, deliver every queued
        final to the broker, say offline, disconnect. SHUTDOWN_TIMEOUT_S bounds the whole of it."""
        self.notifier.stopping()
        deadline = time.monotonic() + self.s.shutdown_timeout_s
        log.info("worker_stopping", reason=reason)
        capture.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await capture
        self._apply(self.machine.flush(time.time()))
        if reason == "end_of_input":
            # nobody asked us to stop: every utterance heard gets its final, however long the backlog
            # (stdin fed faster than real time); a signal meanwhile bounds the rest as usual
            settled = asyncio.ensure_future(self._settled.wait())
            stop = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait({settled, stop}, return_when=asyncio.FIRST_COMPLETED)
            settled.cancel()
            stop.cancel()
            deadline = time.monotonic() + self.s.shutdown_timeout_s
        try:
            async with asyncio.timeout(max(0.1, deadline - time.monotonic() - 0.5)):
                await self._settled.wait()
        except TimeoutError:
            log.warning("shutdown_final_timeout", waiting=len(self.machine.pending))
        self.listening = False
        self.publish_state()
        if not await self.link.flush(max(0.1, deadline - time.monotonic() - 0.3)):
            log.warning("shutdown_undelivered", queued=self.link.queued)
        await self.link.close(timeout_s=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(Exception):
            async with asyncio.timeout(0.5):
                await self.backends.stop()
        log.info("worker_stopped")

    async def _watchdog(self) -> None:
        assert self.notifier.watchdog_interval is not None
        while True:
            # a capture loop that stopped turning (a wedged device or driver) stops the pings: systemd
            # restarts us. A device that is merely away does not: the microphone keeps yielding GAPs.
            if time.monotonic() - self._last_frame < max(10.0, 4 * self.notifier.watchdog_interval):
                self.notifier.watchdog()
            await asyncio.sleep(self.notifier.watchdog_interval)

    # ---- what goes into the machine -----------------------------------------------------------

    async def _capture(self) -> None:
        # AUDIO_REALTIME=0 reads a file "as fast as the decoder goes": each utterance's final is out
        # before the file is read on, so a long file neither floods a server nor piles up finals
        paced_by_decoder = isinstance(self.source, WavSource) and not self.source.realtime
        async for frame in self.source.frames():
            self._last_frame = time.monotonic()
            if not frame:  # the microphone is away (mic.GAP): what was being said ends here
                if self.machine.current is not None:
                    log.info("utterance_cut_by_device_loss")
                self._apply(self.machine.device_gap(time.time()))
                continue
            actions = self.machine.frame(frame, time.time())
            self._apply(actions)
            if paced_by_decoder and any(isinstance(a, u.FinishStream) for a in actions):
                await self._settled.wait()

    def _emit(self, event: BackendEvent) -> None:
        """What the backends answer. Taken up after the action being carried out, never inside it
        (a stream that fails as it is opened must not re-enter the machine)."""
        asyncio.get_running_loop().call_soon(self._backend_event, event)

    def _backend_event(self, event: BackendEvent) -> None:
        if isinstance(event, ConnectionChanged):
            self.publish_state()
            if not event.connected and self.fallback is not None:
                self.backends.prewarm(self.fallback)
        self._apply(self.machine.backend_event(event, time.time()))
        self._keep_or_release_local()

    # ---- the local engine as a fallback: loaded for an outage, unloaded after it ----------------

    def _local_unused(self) -> bool:
        """The local engine is built, is not the chosen backend, the chosen one is up, and no utterance
        is on it: it is a fallback with nothing to do."""
        chosen = self.backends.built(self.machine.backend)
        return (self.machine.backend != "local" and self.backends.built("local") is not None
                and chosen is not None and chosen.connected
                and not any(utt.backend == "local" for utt in self.machine.pending))

    def _keep_or_release_local(self) -> None:
        """The release is due FALLBACK_KEEP_S after the local engine was last needed (its last final,
        or the server's return), and is called off by any new need of it."""
        unused = self._local_unused()
        if unused and self._release is None:
            self._release = asyncio.get_running_loop().call_later(self.s.fallback_keep_s, self._release_local)
        elif not unused and self._release is not None:
            self._release.cancel()
            self._release = None

    def _release_local(self) -> None:
        self._release = None
        if not self._local_unused():
            return
        log.info("fallback_released", backend="local", after_s=self.s.fallback_keep_s)
        task = self.backends.release("local")
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _tick(self) -> None:
        self._timer, self._timer_due = None, None
        self._apply(self.machine.tick(time.time()))

    # ---- what comes out of it ---------------------------------------------------------------

    def _apply(self, actions: list[u.Action]) -> None:
        if not actions:
            return  # the machine changed nothing (most frames of silence): no bookkeeping per frame
        for action in actions:
            self._do(action)
        if self.machine.idle:
            self._settled.set()
            self._keep_or_release_local()
        else:
            self._settled.clear()
        self._schedule_tick()

    def _do(self, a: u.Action) -> None:  # noqa: PLR0912 (one branch per action, flat on purpose)
        if isinstance(a, u.OpenStream):
            self.streams[a.utterance_id] = self.backends.get(a.backend).open(a.utterance_id, a.options)
        elif isinstance(a, u.Feed | u.PauseStream | u.ResumeStream | u.FinishStream):
            stream = self.streams.get(a.utterance_id)
            if stream is None:
                return
            if isinstance(a, u.Feed):
                stream.feed(a.pcm)
            elif isinstance(a, u.PauseStream):
                stream.pause()
            elif isinstance(a, u.ResumeStream):
                stream.resume()
            else:
                stream.finish()
        elif isinstance(a, u.CancelStream):
            cancelled = self.streams.pop(a.utterance_id, None)
            if cancelled is not None:
                cancelled.cancel()
        elif isinstance(a, u.SpeechActive):
            self.link.publish(self.payloads.speech(a.on))
        elif isinstance(a, u.HeardPartial):
            for message in self.payloads.partial(a):
                self.link.publish(message)
        elif isinstance(a, u.HeardFinal):
            self._published(a)
        elif isinstance(a, u.Lost):
            self.streams.pop(a.utterance_id, None)
            log.error("utterance_lost_backend", utterance_id=a.utterance_id, code=a.code, detail=a.message)
            self.link.publish_all([self.payloads.lost(a)], utterance=a.utterance_id)
        elif isinstance(a, u.FailedOver):
            log.warning("failover", utterance_id=a.utterance_id, reason=a.reason, to=a.to_backend,
                        audio_ms=a.audio_ms)
        elif isinstance(a, u.Dropped):
            self.streams.pop(a.utterance_id, None)
            level = log.debug if a.reason == "too_short" else log.info
            level(f"utterance_dropped_{a.reason}", utterance_id=a.utterance_id, audio_ms=a.audio_ms)
        else:
            self.publish_state()
            self.store.save(muted=self.machine.muted, backend=self.machine.backend)

    def _published(self, f: u.HeardFinal) -> None:
        self.streams.pop(f.utterance_id, None)
        self.link.publish_all(self.payloads.final(f), utterance=f.utterance_id)
        log.info("utterance", utterance_id=f.utterance_id, text=f.text, backend=f.backend,
                 fallback=f.fallback, confidence=f.confidence, end=f.end, decode_ms=f.decode_ms,
                 speculative=f.speculative, audio_ms=f.audio_ms, latency_ms=f.latency_ms,
                 first_partial_ms=f.first_partial_ms, partials=f.partials)

    def _schedule_tick(self) -> None:
        """One timer, at the machine's next deadline (a remote final that is late), none when idle."""
        due = self.machine.next_deadline()
        if due == self._timer_due:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_due = due
        if due is not None:
            self._timer = asyncio.get_running_loop().call_later(max(0.0, due - time.time()), self._tick)

    def _on_mqtt_connect(self) -> None:
        self.publish_state()
        self.publish_diagnostics()

    def publish_diagnostics(self) -> None:
        self.link.publish(self.payloads.diagnostics(self.link.diagnostics()))

    def publish_state(self) -> None:
        chosen = self.backends.built(self.machine.backend)
        connected = chosen is not None and chosen.connected
        # the server of the chosen backend, or of the remote one built last time it was chosen
        remote = [self.machine.backend] if self.machine.backend in REMOTE else sorted(REMOTE)
        server = next((b for name in remote if (b := self.backends.built(name)) is not None), None)
        self.link.publish(self.payloads.state(WorkerState(
            backend=self.machine.backend,
            active_backend=self.machine.backend if connected or self.fallback is None else self.fallback,
            backend_connected=connected, server_connected=server.connected if server else None,
            server_url=getattr(server, "url", None),  # ws and wyoming: the one in use of their list
            listening=self.listening, muted=self.machine.muted, model=chosen.model if chosen else "?",
            draft_model=chosen.draft_model if chosen else None)))

    # ---- control: Home Assistant, <base>/<site>/set, Hermes ------------------------------------

    def _wire(self) -> None:
        """Subscribe to the control topics (the link subscribes again after every reconnect), route
        what arrives, announce discovery."""
        self.link.on_message = self._on_message
        for topic in self.topics.commands:
            self.link.subscribe(topic)
        if self.s.ha_discovery:
            self.link.subscribe(self.topics.ha_status)
            self.publish_discovery()
        if self.s.hermes:
            for topic in HERMES_SUBSCRIPTIONS:
                self.link.subscribe(topic)
        self.link.publish(self.payloads.speech(False))

    def publish_discovery(self) -> None:
        for message in self.payloads.discovery():
            self.link.publish(message)

    def _on_message(self, msg: Incoming) -> None:
        if msg.topic == self.topics.ha_status:
            if msg.payload.strip() == b"online" and self.s.ha_discovery:
                log.info("home_assistant_online")
                self.publish_discovery()
            return
        if msg.retain:
            # a retained command would be applied again at every start: it is someone's mistake
            log.warning("control_retained_ignored", topic=msg.topic)
            return
        try:
            if msg.topic in HERMES_SUBSCRIPTIONS:
                heard = hermes.parse(msg.topic, msg.payload, self.s.site_id)
                commands = [hermes.as_command(heard)] if heard is not None else []
            else:
                commands = control.decode(self.topics, msg.topic, msg.payload)
            for command in commands:
                self.apply(command)
        except PeerError as exc:
            log.warning("control_refused", topic=msg.topic, code=exc.code, detail=exc.message)
            self.link.publish(self.payloads.refused(msg.topic, msg.payload, exc.code, exc.message))

    def apply(self, command: control.Command) -> None:
        now = time.time()
        if isinstance(command, control.SetMuted):
            if command.muted != self.machine.muted:
                log.info("muted" if command.muted else "unmuted")
            self._apply(self.machine.set_muted(command.muted, now))
        elif isinstance(command, control.SetBackend):
            task = asyncio.get_running_loop().create_task(self.switch_backend(command.backend))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif command.start:
            self._apply(self.machine.listen(command.session_id, now))
            log.info("listen", session_id=command.session_id)
        else:
            self._apply(self.machine.stop_listening(command.session_id, now))

    async def switch_backend(self, name: BackendName) -> None:
        """From the next utterance on; the state confirms. The one in use stays if the other cannot
        start (a local model that does not load); a server that is down works through the failover."""
        async with self._switching:
            if name != self.machine.backend:
                try:
                    backend = await self.backends.start(name)
                except Exception as exc:  # refuse the switch, keep working
                    log.error("backend_switch_failed", backend=name, error=str(exc))
                    self.link.publish(self.payloads.refused(
                        self.topics.backend_set, name.encode(), "backend_failed", str(exc)))
                    return
                log.info("backend_switched", backend=name, model=backend.model)
            self._apply(self.machine.use_backend(name))
