"""Every MQTT topic the worker publishes or subscribes to, in one place.

Derived from ``MQTT_BASE_TOPIC``, ``SITE_ID`` and ``HA_DISCOVERY_PREFIX`` only, plus the fixed names
of Hermes (Rhasspy / Snips). Pure data, so discovery, the control decoder, the payload builder and the
tests all agree on the names; no other module writes a topic string.
"""

from __future__ import annotations

from dataclasses import dataclass

# Hermes' own names (Rhasspy / Snips ASR): fixed by its clients, the same for every site
HERMES_TEXT_CAPTURED = "hermes/asr/textCaptured"
HERMES_PARTIAL_TEXT_CAPTURED = "hermes/asr/partialTextCaptured"
HERMES_TOGGLE_ON = "hermes/asr/toggleOn"
HERMES_TOGGLE_OFF = "hermes/asr/toggleOff"
HERMES_START_LISTENING = "hermes/asr/startListening"
HERMES_STOP_LISTENING = "hermes/asr/stopListening"
HERMES_SUBSCRIPTIONS = (HERMES_TOGGLE_ON, HERMES_TOGGLE_OFF, HERMES_START_LISTENING, HERMES_STOP_LISTENING)


@dataclass(frozen=True)
class Topics:
    base: str  # <MQTT_BASE_TOPIC>/<SITE_ID>
    discovery_prefix: str = "homeassistant"

    @classmethod
    def of(cls, base_topic: str, site_id: str, discovery_prefix: str = "homeassistant") -> Topics:
        return cls(f"{base_topic}/{site_id}", discovery_prefix)

    # ---- published by the worker
    @property
    def availability(self) -> str:
        return f"{self.base}/availability"  # online / offline, retained, Last Will

    @property
    def state(self) -> str:
        return f"{self.base}/state"  # retained JSON: muted, backend, connections, version

    @property
    def speech(self) -> str:
        return f"{self.base}/speech"  # retained ON / OFF while the gate is open

    @property
    def final(self) -> str:
        return f"{self.base}/transcript/final"  # QoS 1, one per utterance

    @property
    def partial(self) -> str:
        return f"{self.base}/transcript/partial"  # QoS 0

    @property
    def event(self) -> str:
        return f"{self.base}/transcript/event"  # QoS 1, {"event_type": "final", ...} for HA's event entity

    @property
    def last(self) -> str:
        return f"{self.base}/transcript/last"  # retained JSON of the last final (sensor state + attributes)

    @property
    def error(self) -> str:
        return f"{self.base}/error"  # QoS 1: lost utterances and refused commands

    @property
    def diagnostics(self) -> str:
        return f"{self.base}/diagnostics"  # retained JSON: the queue of finals waiting for the broker

    def discovery_config(self, component: str, node_id: str, object_id: str) -> str:
        """Home Assistant's discovery topic of one entity (retained), as zigbee2mqtt lays it out."""
        return f"{self.discovery_prefix}/{component}/{node_id}/{object_id}/config"

    # ---- subscribed by the worker
    @property
    def set(self) -> str:
        return f"{self.base}/set"  # JSON: {"muted": true}, {"backend": "ws"}, {"listen": true}

    @property
    def mute_set(self) -> str:
        return f"{self.base}/mute/set"  # ON / OFF (Home Assistant's switch)

    @property
    def backend_set(self) -> str:
        return f"{self.base}/backend/set"  # a backend's name (Home Assistant's select)

    @property
    def listen_set(self) -> str:
        return f"{self.base}/listen/set"  # PRESS (Home Assistant's button)

    @property
    def commands(self) -> tuple[str, ...]:
        return (self.set, self.mute_set, self.backend_set, self.listen_set)

    @property
    def ha_status(self) -> str:
        return f"{self.discovery_prefix}/status"  # Home Assistant says `online` here after a restart
