"""The one seam between paho-mqtt's network thread and the worker's event loop.

paho runs its loop in a thread and calls back from there; everything crossing into the worker goes
through ``loop.call_soon_threadsafe`` here and nowhere else (as aiomqtt does). What it guarantees:

* availability: ``online`` retained on every connect, ``offline`` as the Last Will and on clean exit;
* retained topics (state, speech) are remembered and re-published after every reconnect;
* reliable messages (finals) wait in a bounded queue while the broker is away and are delivered in
  order, one at a time, each acknowledged (QoS 1 PUBACK) before the next: none lost, none reordered;
* ephemeral messages (partials, QoS 0) are dropped while disconnected: stale ones help nobody.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion

from .payloads import Message
from .settings import WorkerSettings

log = structlog.get_logger(__name__)

ACK_TIMEOUT_S = 10.0


# paho's names for a CONNACK refusing who we are (MQTT 3.1.1 codes 4 and 5, MQTT 5 codes 134 and 135)
_CREDENTIALS_REFUSED = frozenset({"Bad user name or password", "Not authorized"})


@dataclass(frozen=True)
class Incoming:
    topic: str
    payload: bytes
    retain: bool


class MqttLink:
    def __init__(self, settings: WorkerSettings, client_id: str, *, announce: bool = True) -> None:
        """``announce=False``: a helper connection (``--remove-discovery``) that must not touch the
        worker's availability topic, so no Last Will and no online/offline."""
        self.settings = settings
        self.announce = announce
        self.availability_topic = settings.topics.availability
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = asyncio.Event()
        self._retained: dict[str, str] = {}
        self._reliable: collections.deque[tuple[str, str, bool]] = collections.deque()
        self._reliable_ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._subscriptions: list[str] = []
        self.on_message: Callable[[Incoming], None] | None = None
        self.on_connect: Callable[[], None] | None = None
        self.dropped = 0
        self._drainer: asyncio.Task[None] | None = None

        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        if announce:
            c.will_set(self.availability_topic, "offline", qos=1, retain=True)
        if settings.mqtt_username:
            pw = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
            c.username_pw_set(settings.mqtt_username, pw)
        if settings.mqtt_tls:
            c.tls_set(ca_certs=str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None,
                      cert_reqs=ssl.CERT_REQUIRED)
        c.max_inflight_messages_set(20)
        self._jitter_reconnect(c)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        self.client = c

    @staticmethod
    def _jitter_reconnect(c: mqtt.Client) -> None:
        # paho doubles the delay up to the cap; drawing both ends afresh after each disconnect keeps a
        # houseful of devices from reconnecting in lock-step after the broker restarts (not security-relevant,
        # so the plain PRNG is right). paho annotates min_delay as int, but only ever adds it to a monotonic
        # clock and doubles it (Client._reconnect_wait, paho-mqtt 2.x), so fractional seconds work; whole
        # seconds would leave just two cohorts (1 s and 2 s) and defeat the jitter.
        min_delay = random.uniform(0.5, 1.5)
        max_delay = int(random.uniform(20, 30))
        c.reconnect_delay_set(min_delay=min_delay, max_delay=max_delay)  # type: ignore[arg-type]

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        s = self.settings
        self.client.connect_async(s.mqtt_host, s.mqtt_port, keepalive=s.mqtt_keepalive_s)
        self.client.loop_start()
        self._drainer = self._loop.create_task(self._drain())

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the broker; ``False`` if still disconnected (never raises)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._connected.wait()
        return self._connected.is_set()

    async def flush(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` until every reliable message is acknowledged by the broker;
        ``False`` if some are still outstanding (never raises)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        return self._idle.is_set()

    async def close(self, timeout_s: float = 2.0) -> None:
        """Clean goodbye: offline (retained) acknowledged, then disconnect, so no Last Will fires.

        ``timeout_s`` bounds the wait for that acknowledgement, which blocks in paho's
        ``wait_for_publish`` on a worker thread: a caller's ``asyncio.timeout`` could not stop it."""
        if self._drainer is not None:
            self._drainer.cancel()
        if self.connected and self.announce:
            info = self.client.publish(self.availability_topic, "offline", qos=1, retain=True)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(info.wait_for_publish, timeout_s)
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)

    # ---- publishing -------------------------------------------------------------------------

    def subscribe(self, topic: str) -> None:
        self._subscriptions.append(topic)
        # paho's own state, not the loop's: a connect whose callback already ran must not miss this topic
        if self.client.is_connected():
            self.client.subscribe(topic, qos=1)

    def publish(self, message: Message) -> None:
        """One message, delivered as it says (see ``payloads.Delivery``)."""
        if message.delivery == "retained":
            self._publish_retained(message.topic, message.payload)
        elif message.delivery == "ephemeral":
            self._publish_ephemeral(message.topic, message.payload)
        else:
            retain = message.delivery == "reliable_retained"
            self._publish_reliable(message.topic, message.payload, retain=retain)

    def _publish_retained(self, topic: str, payload: str) -> None:
        """Retained state: remembered, and re-published after every reconnect."""
        self._retained[topic] = payload
        if self.connected:
            self.client.publish(topic, payload, qos=1, retain=True)

    def _publish_ephemeral(self, topic: str, payload: str) -> None:
        if self.connected:
            self.client.publish(topic, payload, qos=0)

    def _publish_reliable(self, topic: str, payload: str, *, retain: bool = False) -> None:
        """QoS 1, queued while the broker is away (bounded: the oldest are dropped past the limit)."""
        if len(self._reliable) >= self.settings.mqtt_queue_size:
            self._reliable.popleft()
            self.dropped += 1
            log.error("mqtt_queue_full", dropped_total=self.dropped, limit=self.settings.mqtt_queue_size)
        self._reliable.append((topic, payload, retain))
        self._idle.clear()
        self._reliable_ready.set()

    @property
    def queued(self) -> int:
        return len(self._reliable)

    async def _drain(self) -> None:
        assert self._loop is not None
        while True:
            if not self._reliable:
                self._idle.set()
                self._reliable_ready.clear()
                await self._reliable_ready.wait()
                continue
            await self._connected.wait()
            topic, payload, retain = self._reliable[0]
            fut: asyncio.Future[None] = self._loop.create_future()
            info = self.client.publish(topic, payload, qos=1, retain=retain)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                await asyncio.sleep(0.2)  # disconnected between the check and the publish: retry
                continue
            self._acks[info.mid] = fut
            if info.is_published():
                fut.set_result(None)
            try:
                async with asyncio.timeout(ACK_TIMEOUT_S):
                    await fut
            except (TimeoutError, ConnectionError):
                continue  # not acknowledged: send again (QoS 1 is at-least-once by design)
            finally:
                self._acks.pop(info.mid, None)
            if self._reliable and self._reliable[0] == (topic, payload, retain):
                self._reliable.popleft()

    # ---- paho's thread ----------------------------------------------------------------------

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(fn, *args)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            if str(reason) in _CREDENTIALS_REFUSED:
                # retried all the same (a broker may refuse while its own auth plugin starts), but said
                # plainly, since it is almost always a wrong variable
                log.error("mqtt_refused", reason=str(reason), hint="check MQTT_USERNAME and MQTT_PASSWORD")
            else:
                log.warning("mqtt_refused", reason=str(reason))
            return
        if self.announce:
            client.publish(self.availability_topic, "online", qos=1, retain=True)
        for topic, payload in list(self._retained.items()):
            client.publish(topic, payload, qos=1, retain=True)
        for topic in self._subscriptions:
            client.subscribe(topic, qos=1)
        self._call(self._connected_in_loop)

    def _connected_in_loop(self) -> None:
        log.info("mqtt_connected", host=self.settings.mqtt_host, port=self.settings.mqtt_port)
        self._connected.set()
        if self.on_connect is not None:
            self.on_connect()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._jitter_reconnect(client)
        self._call(self._disconnected_in_loop, str(reason))

    def _disconnected_in_loop(self, reason: str) -> None:
        if self._connected.is_set():
            log.warning("mqtt_disconnected", reason=reason, queued=len(self._reliable))
        self._connected.clear()
        for fut in self._acks.values():
            if not fut.done():
                fut.set_exception(ConnectionError("disconnected before PUBACK"))

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self._call(self._acked, mid)

    def _acked(self, mid: int) -> None:
        fut = self._acks.get(mid)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._call(self._message_in_loop, Incoming(msg.topic, bytes(msg.payload), bool(msg.retain)))

    def _message_in_loop(self, msg: Incoming) -> None:
        if self.on_message is not None:
            try:
                self.on_message(msg)
            except Exception:  # a bad control message must never take the worker down
                log.exception("mqtt_message_failed", topic=msg.topic)
