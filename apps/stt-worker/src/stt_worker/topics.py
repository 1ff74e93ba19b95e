"""Every MQTT topic of one worker, in one place: derived from ``MQTT_BASE_TOPIC`` and ``SITE_ID`` only.

Pure data, so discovery, the control decoder, the worker and the tests all agree on the names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    base: str  # <MQTT_BASE_TOPIC>/<SITE_ID>

    @classmethod
    def of(cls, base_topic: str, site_id: str) -> Topics:
        return cls(f"{base_topic}/{site_id}")

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

    # ---- subscribed by the worker
    @property
    def set(self) -> str:
        return f"{self.base}/set"  # JSON: {"muted": true}, {"backend": "ws"}, {"listen": true}

    @property
    def mute_set(self) -> str:
        return f"{self.base}/mute/set"  # ON / OFF (Home Assistant's switch)

    @property
    def backend_set(self) -> str:
        return f"{self.base}/backend/set"  # local / ws (Home Assistant's select)

    @property
    def listen_set(self) -> str:
        return f"{self.base}/listen/set"  # PRESS (Home Assistant's button)

    @property
    def commands(self) -> tuple[str, ...]:
        return (self.set, self.mute_set, self.backend_set, self.listen_set)
