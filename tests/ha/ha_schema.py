"""Home Assistant's MQTT discovery schema for the components the worker announces, as a table.

Written from Home Assistant's documentation (integrations/mqtt: discovery topic, payload and the
abbreviation list; binary_sensor.mqtt, event.mqtt, sensor.mqtt, switch.mqtt, select.mqtt,
button.mqtt: each one's configuration variables, which are required, their types and defaults).
``problems(topic, payload)`` reads a payload the way Home Assistant does (abbreviations expanded,
``~`` substituted) and lists what Home Assistant would refuse or silently get wrong.
"""

from __future__ import annotations

import json
import re
from typing import Any

# the discovery abbreviations (a subset: those that can appear for these components)
ABBREVIATIONS = {
    "avty": "availability", "avty_mode": "availability_mode", "avty_t": "availability_topic",
    "avty_tpl": "availability_template", "cmd_t": "command_topic", "cmd_tpl": "command_template",
    "dev": "device", "dev_cla": "device_class", "def_ent_id": "default_entity_id", "e": "encoding",
    "en": "enabled_by_default", "ent_cat": "entity_category", "ent_pic": "entity_picture",
    "evt_typ": "event_types", "exp_aft": "expire_after", "frc_upd": "force_update", "ic": "icon",
    "json_attr_t": "json_attributes_topic", "json_attr_tpl": "json_attributes_template", "name": "name",
    "o": "origin", "obj_id": "object_id", "off_dly": "off_delay", "ops": "options", "opt": "optimistic",
    "pl_avail": "payload_available", "pl_not_avail": "payload_not_available", "pl_off": "payload_off",
    "pl_on": "payload_on", "pl_prs": "payload_press", "qos": "qos", "ret": "retain",
    "stat_cla": "state_class",
    "stat_off": "state_off", "stat_on": "state_on", "stat_t": "state_topic", "sug_dsp_prc":
    "suggested_display_precision", "t": "topic", "uniq_id": "unique_id",
    "unit_of_meas": "unit_of_measurement",
    "val_tpl": "value_template", "p": "platform",
}
DEVICE_ABBREVIATIONS = {"cns": "connections", "cu": "configuration_url", "ids": "identifiers", "name": "name",
                        "mf": "manufacturer", "mdl": "model", "mdl_id": "model_id", "hw": "hw_version",
                        "sw": "sw_version", "sa": "suggested_area", "sn": "serial_number",
                        "via_device": "via_device"}
ORIGIN_ABBREVIATIONS = {"name": "name", "sw": "sw_version", "url": "support_url"}

COMMON = {"availability", "availability_mode", "availability_template", "availability_topic", "device",
          "default_entity_id", "enabled_by_default", "encoding", "entity_category", "entity_picture", "icon",
          "json_attributes_template", "json_attributes_topic", "name", "object_id", "origin",
          "payload_available", "payload_not_available", "qos", "unique_id", "platform"}

# component -> (required keys, the component's own optional keys)
COMPONENTS: dict[str, tuple[set[str], set[str]]] = {
    "binary_sensor": ({"state_topic"}, {"device_class", "expire_after", "force_update", "off_delay",
                                        "payload_on", "payload_off", "value_template"}),
    "event": ({"state_topic", "event_types"}, {"device_class", "value_template"}),
    "sensor": ({"state_topic"}, {"device_class", "expire_after", "force_update", "last_reset_value_template",
                                 "options", "state_class", "suggested_display_precision",
                                 "unit_of_measurement", "value_template"}),
    "switch": ({"command_topic"}, {"command_template", "device_class", "optimistic", "payload_on",
                                   "payload_off", "retain", "state_on", "state_off", "state_topic",
                                   "value_template"}),
    "select": ({"command_topic", "options"}, {"command_template", "optimistic", "retain", "state_topic",
                                               "value_template"}),
    "button": ({"command_topic"}, {"command_template", "device_class", "payload_press", "retain"}),
}
DEVICE_KEYS = set(DEVICE_ABBREVIATIONS.values())
ORIGIN_KEYS = set(ORIGIN_ABBREVIATIONS.values())
DEVICE_CLASSES = {
    "binary_sensor": {"battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door",
                      "garage_door", "gas", "heat", "light", "lock", "moisture", "motion", "moving",
                      "occupancy", "opening", "plug", "power", "presence", "problem", "running", "safety",
                      "smoke", "sound",
                      "tamper", "update", "vibration", "window"},
    "event": {"button", "doorbell", "motion"},
    "button": {"identify", "restart", "update"},
    "switch": {"outlet", "switch"},
    # sensor: only the classes used here, with the units Home Assistant accepts for them
    "sensor": {"duration", "timestamp", "enum"},
}
DURATION_UNITS = {"d", "h", "min", "s", "ms", "µs"}
STATE_CLASSES = {"measurement", "total", "total_increasing", "measurement_angle"}
ENTITY_CATEGORIES = {"config", "diagnostic"}
TOPIC_RE = re.compile(r"^[^+#]+$")
ID_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
# <discovery_prefix>/<component>/[<node_id>/]<object_id>/config
CONFIG_TOPIC_RE = re.compile(r"^(?P<prefix>.+?)/(?P<component>[a-z_]+)/(?:(?P<node>[a-zA-Z0-9_-]+)/)?"
                             r"(?P<object>[a-zA-Z0-9_-]+)/config$")

TOPIC_KEYS = ("state_topic", "command_topic", "json_attributes_topic", "availability_topic")
PUBLISHED_BY_DEVICE = ("state_topic", "json_attributes_topic", "availability_topic")
SUBSCRIBED_BY_DEVICE = ("command_topic",)


def expand(payload: dict[str, Any]) -> dict[str, Any]:
    """As Home Assistant reads a discovery payload: abbreviations expanded, ``~`` substituted into
    ``*_topic`` values that begin or end with it."""
    out = {ABBREVIATIONS.get(k, k): v for k, v in payload.items()}
    if isinstance(out.get("device"), dict):
        out["device"] = {DEVICE_ABBREVIATIONS.get(k, k): v for k, v in out["device"].items()}
    if isinstance(out.get("origin"), dict):
        out["origin"] = {ORIGIN_ABBREVIATIONS.get(k, k): v for k, v in out["origin"].items()}
    base = out.pop("~", None)
    if isinstance(base, str):
        for k, v in list(out.items()):
            if k.endswith("_topic") and isinstance(v, str):
                if v.startswith("~"):
                    out[k] = base + v[1:]
                elif v.endswith("~"):
                    out[k] = v[:-1] + base
    return out


def component_of(topic: str) -> str:
    m = CONFIG_TOPIC_RE.match(topic)
    return m.group("component") if m else ""


def problems(topic: str, raw: dict[str, Any]) -> list[str]:
    """What Home Assistant would refuse in this config (or take, but not as meant)."""
    out: list[str] = []
    m = CONFIG_TOPIC_RE.match(topic)
    if not m:
        return [f"{topic}: not <prefix>/<component>/[<node_id>/]<object_id>/config"]
    comp = m.group("component")
    if comp not in COMPONENTS:
        return [f"{topic}: component {comp} not one of {sorted(COMPONENTS)}"]
    c = expand(raw)
    required, own = COMPONENTS[comp]
    out += [f"{topic}: lacks required {k}" for k in sorted(required - c.keys())]
    unknown = c.keys() - required - own - COMMON
    out += [f"{topic}: {k} is not a {comp} option" for k in sorted(unknown)]
    for k in TOPIC_KEYS:
        if k in c and not (isinstance(c[k], str) and c[k] and TOPIC_RE.match(c[k])):
            out.append(f"{topic}: {k} {c[k]!r} is not a topic one can publish to")
    if "availability" in c and "availability_topic" in c:
        out.append(f"{topic}: availability and availability_topic must not be used together")
    if not ("availability" in c or "availability_topic" in c):
        out.append(f"{topic}: not tied to an availability topic")
    if not isinstance(c.get("unique_id"), str) or not c["unique_id"]:
        out.append(f"{topic}: no unique_id (no device registry, no renaming in the UI)")
    dev = c.get("device")
    if not isinstance(dev, dict):
        out.append(f"{topic}: no device block")
    else:
        if not (dev.get("identifiers") or dev.get("connections")):
            out.append(f"{topic}: device has neither identifiers nor connections")
        out += [f"{topic}: device.{k} unknown" for k in sorted(dev.keys() - DEVICE_KEYS)]
        ids = dev.get("identifiers")
        if not (isinstance(ids, str) or (isinstance(ids, list) and all(isinstance(i, str) for i in ids))):
            out.append(f"{topic}: device.identifiers must be a string or a list of strings")
    orig = c.get("origin")
    if orig is not None and (not isinstance(orig, dict) or not orig.get("name") or orig.keys() - ORIGIN_KEYS):
        out.append(f"{topic}: origin needs a name and only {sorted(ORIGIN_KEYS)}")
    if "entity_category" in c and c["entity_category"] not in ENTITY_CATEGORIES:
        out.append(f"{topic}: entity_category {c['entity_category']!r}")
    if "qos" in c and c["qos"] not in (0, 1, 2):
        out.append(f"{topic}: qos {c['qos']!r}")
    if c.get("device_class") is not None and c["device_class"] not in DEVICE_CLASSES.get(comp, set()):
        out.append(f"{topic}: device_class {c['device_class']!r} is not one of {comp}'s")
    if comp == "event":
        types = c.get("event_types")
        if not (isinstance(types, list) and types and all(isinstance(x, str) and x for x in types)):
            out.append(f"{topic}: event_types must be a non-empty list of strings")
    if comp == "select":
        opts = c.get("options")
        if not (isinstance(opts, list) and opts and all(isinstance(x, str) for x in opts)):
            out.append(f"{topic}: options must be a non-empty list of strings")
    if comp == "sensor":
        if c.get("device_class") == "duration" and c.get("unit_of_measurement") not in DURATION_UNITS:
            out.append(f"{topic}: a duration needs a unit among {sorted(DURATION_UNITS)}")
        if "state_class" in c and c["state_class"] not in STATE_CLASSES:
            out.append(f"{topic}: state_class {c['state_class']!r}")
        if "suggested_display_precision" in c and not isinstance(c["suggested_display_precision"], int):
            out.append(f"{topic}: suggested_display_precision must be an integer")
    for k in ("payload_on", "payload_off", "state_on", "state_off", "payload_press", "payload_available",
              "payload_not_available", "value_template", "name", "icon"):
        if k in c and not isinstance(c[k], str):
            out.append(f"{topic}: {k} must be a string")
    return out


def render(template: str | None, payload: str) -> str:
    """A value template rendered as Home Assistant's MQTT integration does: Jinja in a sandbox, with
    the payload as ``value`` and, when it is JSON, as ``value_json``; the result stripped."""
    from jinja2.sandbox import SandboxedEnvironment

    if template is None:
        return payload
    try:
        value_json = json.loads(payload)
    except ValueError:
        value_json = None
    return SandboxedEnvironment().from_string(template).render(value=payload, value_json=value_json).strip()
