"""Home Assistant MQTT discovery: every config payload this worker announces, built from settings alone.

Pure: ``configs(settings)`` returns ``{config topic: payload dict}`` and does no I/O; the worker
publishes them retained on connect and again when Home Assistant's status topic says ``online``,
``stt-worker --remove-discovery`` publishes an empty retained payload to each topic.

One device per site; every entity is tied to the worker's availability topic and has a ``unique_id``
made from the site id alone, so it survives restarts, upgrades and a change of broker. Full key
names are used (no abbreviations): the payloads are small and read best as they are documented.
Topics follow ``<prefix>/<component>/<node_id>/<object_id>/config`` as zigbee2mqtt does, with the
node id made from the site id.
"""

from __future__ import annotations

import re
from typing import Any

from stt_core import __version__

from .backend import BACKEND_NAMES
from .settings import WorkerSettings
from .topics import Topics

# Home Assistant's sensor state is capped at 255 characters; the full text is in the attributes
STATE_MAX = 255
EVENT_TYPE = "final"
MUTE_ON, MUTE_OFF = "ON", "OFF"
PRESS = "PRESS"

# state payloads the templates below read (the worker's ``publish_state`` writes them)
_SWITCH_TPL = "{{ 'ON' if value_json.muted else 'OFF' }}"
_SERVER_TPL = ("{{ 'None' if value_json.server_connected is none else "
               "('ON' if value_json.server_connected else 'OFF') }}")


def node_id(site_id: str) -> str:
    """The site id as Home Assistant allows in a discovery topic level: ``[a-zA-Z0-9_-]``."""
    return "stt_" + re.sub(r"[^a-zA-Z0-9_-]", "_", site_id)


def status_topic(settings: WorkerSettings) -> str:
    """Where Home Assistant says ``online`` after it (re)starts: discovery must be sent again then."""
    return settings.topics.ha_status


def device(settings: WorkerSettings) -> dict[str, Any]:
    return {
        "identifiers": [node_id(settings.site_id)],
        "name": f"STT {settings.site_id}",
        "manufacturer": "stt-bridge",
        "model": "stt-worker",
        "sw_version": __version__,
    }


def origin() -> dict[str, Any]:
    return {"name": "stt-bridge", "sw_version": __version__}


def _entities(t: Topics) -> list[tuple[str, str, dict[str, Any]]]:
    """(component, object id, the entity's own keys) for every entity of the device."""
    return [
        ("binary_sensor", "speech", {
            "name": "Speech", "state_topic": t.speech, "payload_on": "ON", "payload_off": "OFF",
            "device_class": "sound", "icon": "mdi:account-voice"}),
        ("event", "transcript", {
            "name": "Transcript", "state_topic": t.event, "event_types": [EVENT_TYPE],
            "icon": "mdi:text-to-speech"}),
        ("sensor", "last_transcript", {
            "name": "Last transcript", "state_topic": t.last,
            "value_template": f"{{{{ value_json.text[:{STATE_MAX}] }}}}",
            "json_attributes_topic": t.last, "icon": "mdi:text"}),
        ("switch", "mute", {
            "name": "Mute", "command_topic": t.mute_set, "state_topic": t.state,
            "value_template": _SWITCH_TPL,
            "payload_on": MUTE_ON, "payload_off": MUTE_OFF, "state_on": MUTE_ON, "state_off": MUTE_OFF,
            "icon": "mdi:microphone-off"}),
        ("select", "backend", {
            "name": "Backend", "command_topic": t.backend_set, "state_topic": t.state,
            "value_template": "{{ value_json.backend }}", "options": list(BACKEND_NAMES),
            "json_attributes_topic": t.state, "entity_category": "config", "icon": "mdi:server-network"}),
        ("button", "listen", {
            "name": "Listen", "command_topic": t.listen_set, "payload_press": PRESS,
            "icon": "mdi:microphone"}),
        ("binary_sensor", "server", {
            "name": "Server", "state_topic": t.state, "value_template": _SERVER_TPL,
            "payload_on": "ON", "payload_off": "OFF", "device_class": "connectivity",
            "entity_category": "diagnostic"}),
        ("sensor", "latency", {
            "name": "Last latency", "state_topic": t.last, "value_template": "{{ value_json.latency_ms }}",
            "unit_of_measurement": "ms", "device_class": "duration", "state_class": "measurement",
            "entity_category": "diagnostic", "icon": "mdi:timer-outline"}),
        ("sensor", "confidence", {
            "name": "Last confidence", "state_topic": t.last,
            "value_template": "{{ (value_json.confidence * 100) | round(1) }}", "unit_of_measurement": "%",
            "state_class": "measurement", "suggested_display_precision": 0, "entity_category": "diagnostic",
            "icon": "mdi:check-decagram-outline"}),
    ]


def configs(settings: WorkerSettings) -> dict[str, dict[str, Any]]:
    """Every discovery config of this worker: ``{"<prefix>/<component>/<node>/<object>/config": payload}``."""
    t = settings.topics
    node = node_id(settings.site_id)
    dev, orig = device(settings), origin()
    out: dict[str, dict[str, Any]] = {}
    for component, object_id, keys in _entities(t):
        out[t.discovery_config(component, node, object_id)] = {
            **keys,
            "unique_id": f"{node}_{object_id}",
            "availability_topic": t.availability, "payload_available": "online",
            "payload_not_available": "offline",
            "qos": 1,
            "device": dev,
            "origin": orig,
        }
    return out
