"""The server's transcripts on MQTT, in the worker's topic layout so one Node-RED flow or Home Assistant
automation reads both: ``<MQTT_BASE_TOPIC>/<site>/transcript/final`` (QoS 1) and ``.../partial``
(QoS 0, with MQTT_PARTIALS), where the site is the session's id (``/stt``'s ``session_id``, seed 004's
``clientId``, else one made per connection). The server's own retained availability, with a Last
Will, is ``<MQTT_BASE_TOPIC>/stt-server/availability``.

paho runs its own network thread and queues while the broker is away (bounded), so ``put`` never
blocks the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from .metrics import Metrics
from .settings import ServerSettings
from .transcript import Transcript

log = structlog.get_logger(__name__)
MAX_QUEUED = 10_000  # messages paho keeps while the broker is away; past it, new ones are dropped
CLOSE_WAIT_S = 3.0  # how long shutdown waits for the broker to take what is queued


class MqttSink:
    def __init__(self, settings: ServerSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.base = settings.mqtt_base_topic.rstrip("/")
        self.availability = f"{self.base}/stt-server/availability"
        client_id = settings.mqtt_client_id or f"stt-server-{socket.gethostname()}"[:64]
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        c.will_set(self.availability, "offline", qos=1, retain=True)
        if settings.mqtt_username:
            pw = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
            c.username_pw_set(settings.mqtt_username, pw)
        if settings.mqtt_tls:
            c.tls_set(ca_certs=str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None)
        c.max_queued_messages_set(MAX_QUEUED)
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        self.client = c

    async def start(self) -> None:
        st = self.settings
        assert st.mqtt_host is not None
        # connect_async: a broker that is down at start-up is retried by paho's loop, never fatal
        self.client.connect_async(st.mqtt_host, st.mqtt_port, keepalive=30)
        self.client.loop_start()
        log.info("mqtt_transcripts", host=st.mqtt_host, port=st.mqtt_port, base_topic=self.base,
                 partials=st.mqtt_partials)

    def put(self, t: Transcript) -> None:
        topic = f"{self.base}/{t.site}/transcript/{'final' if t.final else 'partial'}"
        info = self.client.publish(topic, json.dumps(t.fields()), qos=1 if t.final else 0)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            self.metrics.error("mqtt_queue_full", dialect=t.dialect)
            log.warning("mqtt_queue_full", topic=topic)

    async def close(self) -> None:
        offline = self.client.publish(self.availability, "offline", qos=1, retain=True)
        if self.client.is_connected():
            # QoS 1 goes out in order: once the broker has the last message, it has the finals before it
            with contextlib.suppress(RuntimeError, ValueError):
                await asyncio.to_thread(offline.wait_for_publish, CLOSE_WAIT_S)
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        if rc.is_failure:
            log.warning("mqtt_refused", reason=str(rc))
            return
        client.publish(self.availability, "online", qos=1, retain=True)
        log.info("mqtt_connected", host=self.settings.mqtt_host)

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        if rc.value != 0:
            log.warning("mqtt_disconnected", reason=str(rc))
