"""The one seam between paho-mqtt's network thread and the worker's event loop.

paho runs its loop in a thread and calls back from there; everything crossing into the worker goes
through ``loop.call_soon_threadsafe`` here and nowhere else (as aiomqtt does). What it guarantees:

* availability: ``online`` (retained) only once the worker is ready (``set_ready``: the backend can take
  speech) and the broker has acknowledged every subscription (SUBACK), so a command sent the moment
  Home Assistant shows the worker available is applied; ``offline`` as the Last Will and on clean exit;
* retained topics (state, speech) are remembered and re-published after every reconnect;
* reliable messages (finals and what goes with them) wait on disk (``outbox.Outbox``) while the broker
  is away, are delivered in order and deleted only on the broker's PUBACK: none lost through an
  outage, a crash or a power cut;
* each is handed to paho once per process: paho itself sends it again, with the same packet id, after
  a reconnect until the PUBACK comes, so the worker never adds a copy of its own. The only duplicate
  left is QoS 1's own (a PUBACK lost with the connection, or with the process), and it carries the same
  ``utterance_id``, on which a consumer may dedupe;
* control errors (a refused command's answer) wait in a small queue in memory, dropped first: a flood
  of bad commands never pushes a final out;
* ephemeral messages (partials, QoS 0) are dropped while disconnected: stale ones help nobody.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion

from .outbox import Outbox
from .payloads import Message
from .settings import WorkerSettings

log = structlog.get_logger(__name__)

# finals handed to paho at once: paho keeps them until their PUBACK and sends them again after a
# reconnect; more in flight buys nothing for a few finals a minute, and bounds paho's memory after a
# long outage
WINDOW = 10
# refused commands' answers kept while the broker is away; older ones are dropped first
CONTROL_ERRORS_KEPT = 20


# paho's names for a CONNACK refusing who we are (MQTT 3.1.1 codes 4 and 5, MQTT 5 codes 134 and 135)
_CREDENTIALS_REFUSED = frozenset({"Bad user name or password", "Not authorized"})


@dataclass(frozen=True)
class Incoming:
    topic: str
    payload: bytes
    retain: bool


class MqttLink:
    def __init__(self, settings: WorkerSettings, client_id: str, *, announce: bool = True,
                 outbox_path: Path | None = None) -> None:
        """``announce=False``: a helper connection (``--remove-discovery``) that must not touch the
        worker's availability topic, so no Last Will and no online/offline. ``outbox_path``: where
        finals wait for the broker (None: in memory)."""
        self.settings = settings
        self.announce = announce
        self.availability_topic = settings.topics.availability
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = asyncio.Event()
        self._retained: dict[str, str] = {}
        max_age = settings.mqtt_queue_max_age_h * 3600 or None
        self.outbox = Outbox(outbox_path, max_bytes=int(settings.mqtt_queue_max_mb * 1024 * 1024),
                             max_age_s=max_age)
        self._handed: dict[int, int] = {}  # paho's mid -> outbox row, handed once, until its PUBACK
        self._last_handed = 0  # the newest row handed to paho
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._control_errors: collections.deque[Message] = collections.deque(maxlen=CONTROL_ERRORS_KEPT)
        self._subscriptions: list[str] = []
        self._unacked_subs: set[int] = set()  # SUBACKs still due on this connection
        self._ready = False
        self._online = False  # said online on this connection
        self.on_message: Callable[[Incoming], None] | None = None
        self.on_connect: Callable[[], None] | None = None
        self.on_dropped: Callable[[int], None] | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._settle_idle()

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
        c.on_subscribe = self._on_subscribe
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

    def set_ready(self) -> None:
        """The worker can take speech and has subscribed to its commands: ``online`` may be said (at
        once if the subscriptions are acknowledged, else on the last SUBACK)."""
        self._ready = True
        self._maybe_online()

    async def wait_connected(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the broker; ``False`` if still disconnected (never raises)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._connected.wait()
        return self._connected.is_set()

    async def flush(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` until every reliable message is acknowledged by the broker;
        ``False`` if some are still outstanding (never raises). Those stay on disk for the next run."""
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
        self.outbox.close()

    # ---- publishing -------------------------------------------------------------------------

    def subscribe(self, topic: str) -> None:
        self._subscriptions.append(topic)
        # paho's own state, not the loop's: a connect whose callback already ran must not miss this topic
        if self.client.is_connected():
            self._subscribe(topic)

    def _subscribe(self, topic: str) -> None:
        rc, mid = self.client.subscribe(topic, qos=1)
        if rc == mqtt.MQTT_ERR_SUCCESS and mid is not None:
            self._unacked_subs.add(mid)

    def publish(self, message: Message) -> None:
        """One message, delivered as it says (see ``payloads.Delivery``)."""
        self.publish_all([message])

    def publish_all(self, messages: list[Message], utterance: str | None = None) -> None:
        """Messages as their delivery says; the reliable ones among them go to disk together, as one
        utterance's (``utterance``: its id), so the bound keeps or drops them together."""
        reliable: list[tuple[str, str, bool]] = []
        for m in messages:
            if m.delivery == "retained":
                self._publish_retained(m.topic, m.payload)
            elif m.delivery == "ephemeral":
                if self.connected:
                    self.client.publish(m.topic, m.payload, qos=0)
            elif m.delivery == "control_error":
                self._control_error(m)
            else:
                reliable.append((m.topic, m.payload, m.delivery == "reliable_retained"))
        if reliable:
            self._publish_reliable(utterance or f"-{time.time_ns()}", reliable)

    def _publish_retained(self, topic: str, payload: str) -> None:
        """Retained state: remembered, and re-published after every reconnect."""
        self._retained[topic] = payload
        if self.connected:
            self.client.publish(topic, payload, qos=1, retain=True)

    def _control_error(self, m: Message) -> None:
        if self.connected:
            self.client.publish(m.topic, m.payload, qos=1)
        else:
            self._control_errors.append(m)  # the deque drops the oldest past its bound

    def _publish_reliable(self, utterance: str, messages: list[tuple[str, str, bool]]) -> None:
        """QoS 1, kept on disk until acknowledged (bounded: the oldest utterances are dropped)."""
        floor = self._last_handed
        dropped = self.outbox.add(utterance, messages, floor=floor) + self.outbox.expire(floor=floor)
        if dropped:
            self._dropped(dropped)
        self._idle.clear()
        self._wake.set()

    def _dropped(self, n: int) -> None:
        log.error("mqtt_queue_full", dropped=n, dropped_total=self.outbox.dropped,
                  queued_bytes=self.outbox.queued_bytes, max_mb=self.settings.mqtt_queue_max_mb,
                  max_age_h=self.settings.mqtt_queue_max_age_h)
        if self.on_dropped is not None:
            self.on_dropped(n)

    @property
    def queued(self) -> int:
        """Reliable messages not yet acknowledged by the broker."""
        return self.outbox.queued

    @property
    def dropped(self) -> int:
        return self.outbox.dropped

    def diagnostics(self) -> dict[str, Any]:
        """What the retained diagnostics topic says of the queue."""
        age = self.outbox.oldest_age_s()
        return {"queued_messages": self.outbox.queued, "queued_utterances": self.outbox.utterances,
                "queued_bytes": self.outbox.queued_bytes, "dropped_total": self.outbox.dropped,
                "oldest_queued_s": round(age, 1) if age is not None else None,
                "persistent": self.outbox.path is not None}

    def diagnostics_json(self) -> str:
        return json.dumps(self.diagnostics())

    def _settle_idle(self) -> None:
        if not self._handed and not self.outbox.after(self._last_handed, 1):
            self._idle.set()
        else:
            self._idle.clear()

    async def _drain(self) -> None:
        """Hand the queued rows to paho in order, at most ``WINDOW`` unacknowledged at a time, each once
        per process. A row handed while the broker is away waits in paho, which sends it on connect."""
        while True:
            room = WINDOW - len(self._handed)
            rows = self.outbox.after(self._last_handed, room) if room > 0 and self.connected else []
            if not rows:
                self._settle_idle()
                self._wake.clear()
                await self._wake.wait()
                continue
            expired = self.outbox.expire(floor=self._last_handed)
            if expired:
                self._dropped(expired)
                continue
            for row in rows:
                info = self.client.publish(row.topic, row.payload, qos=1, retain=row.retain)
                self._last_handed = row.id
                if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                    # NO_CONN: disconnected between the check and the call; paho has queued it all the
                    # same and sends it after the reconnect: handing it again would make a copy
                    self._handed[info.mid] = row.id
                else:  # a message paho refuses outright (too large for MQTT): it would never go
                    log.error("mqtt_publish_refused", topic=row.topic, rc=mqtt.error_string(info.rc))
                    self.outbox.delete(row.id)

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
        self._call(self._connected_in_loop)

    def _connected_in_loop(self) -> None:
        log.info("mqtt_connected", host=self.settings.mqtt_host, port=self.settings.mqtt_port,
                 queued=self.outbox.queued)
        self._online = False
        self._unacked_subs.clear()
        for topic in self._subscriptions:
            self._subscribe(topic)
        for topic, payload in list(self._retained.items()):
            self.client.publish(topic, payload, qos=1, retain=True)
        while self._control_errors:
            m = self._control_errors.popleft()
            self.client.publish(m.topic, m.payload, qos=1)
        self._connected.set()
        self._wake.set()
        self._maybe_online()
        if self.on_connect is not None:
            self.on_connect()

    def _maybe_online(self) -> None:
        if (self.announce and self._ready and self.connected and not self._online
                and not self._unacked_subs):
            self._online = True
            self.client.publish(self.availability_topic, "online", qos=1, retain=True)
            log.info("mqtt_online", topic=self.availability_topic)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        self._call(self._subscribed, mid, [str(r) for r in reasons if r.is_failure])

    def _subscribed(self, mid: int, failures: list[str]) -> None:
        if failures:
            # a broker ACL that refuses a command topic: the worker works, but cannot be controlled there
            log.error("mqtt_subscribe_refused", reasons=failures, hint="check the broker's ACL for this user")
        self._unacked_subs.discard(mid)
        self._maybe_online()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._jitter_reconnect(client)
        self._call(self._disconnected_in_loop, str(reason))

    def _disconnected_in_loop(self, reason: str) -> None:
        if self._connected.is_set():
            log.warning("mqtt_disconnected", reason=reason, queued=self.outbox.queued)
        self._connected.clear()
        self._online = False

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self._call(self._acked, mid)

    def _acked(self, mid: int) -> None:
        row = self._handed.pop(mid, None)
        if row is None:
            return  # a retained or QoS 0 message, or availability
        self.outbox.delete(row)
        self._wake.set()
        self._settle_idle()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._call(self._message_in_loop, Incoming(msg.topic, bytes(msg.payload), bool(msg.retain)))

    def _message_in_loop(self, msg: Incoming) -> None:
        if self.on_message is not None:
            try:
                self.on_message(msg)
            except Exception:  # a bad control message must never take the worker down
                log.exception("mqtt_message_failed", topic=msg.topic)
