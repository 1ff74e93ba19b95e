"""discovery.py without a broker: every config Home Assistant would accept, and the value templates
rendered as Home Assistant renders them, on the payloads the worker publishes."""

from __future__ import annotations

import json

import pytest
from stt_worker import discovery
from stt_worker.settings import WorkerSettings

from tests.ha import ha_schema

COMPONENTS = {"binary_sensor", "event", "sensor", "switch", "select", "button"}


def settings(**kw: object) -> WorkerSettings:
    base: dict[str, object] = {"site_id": "kitchen", "mqtt_base_topic": "stt", "audio_source": "mic",
                               "ha_discovery_prefix": "homeassistant", "ha_discovery": True}
    base.update(kw)
    return WorkerSettings(_env_file=None, **base)  # type: ignore[arg-type, call-arg]


def by_object(cfgs: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    return {t.split("/")[-2]: c for t, c in cfgs.items()}


def final(text: str = "lights on please", **kw: object) -> dict[str, object]:
    f: dict[str, object] = {"site_id": "kitchen", "utterance_id": "abc", "text": text, "confidence": 0.873,
                            "language": "en", "backend": "local", "model": "tiny.en", "audio_s": 1.9,
                            "latency_ms": 412, "started_at": "x", "ended_at": "y", "fallback": False}
    f.update(kw)
    return f


def test_every_config_passes_home_assistants_schema() -> None:
    """Each payload has what its component requires, only options it knows, and valid values."""
    cfgs = discovery.configs(settings())
    assert {ha_schema.component_of(t) for t in cfgs} == COMPONENTS
    for topic, cfg in cfgs.items():
        assert ha_schema.problems(topic, cfg) == [], topic


def test_topics_follow_the_discovery_layout_under_the_prefix() -> None:
    """<prefix>/<component>/<node_id>/<object_id>/config, node id from the site id, prefix honoured."""
    cfgs = discovery.configs(settings(ha_discovery_prefix="ha-test", site_id="Living Room.2"))
    for topic in cfgs:
        m = ha_schema.CONFIG_TOPIC_RE.match(topic)
        assert m
        assert m.group("prefix") == "ha-test"
        assert m.group("node") == "stt_Living_Room_2"
    assert discovery.status_topic(settings(ha_discovery_prefix="ha-test")) == "ha-test/status"


def test_unique_ids_are_unique_and_stable() -> None:
    """unique_id depends on the site alone: the same after a restart, an upgrade or a new broker."""
    a = discovery.configs(settings())
    b = discovery.configs(settings(mqtt_host="elsewhere", ha_discovery_prefix="other"))
    ids_a = [c["unique_id"] for c in a.values()]
    assert len(set(ids_a)) == len(ids_a) == 9
    assert sorted(ids_a) == sorted(c["unique_id"] for c in b.values())
    other_site = {c["unique_id"] for c in discovery.configs(settings(site_id="office")).values()}
    assert not other_site & set(ids_a)


def test_one_device_per_site_on_the_workers_availability_topic() -> None:
    """Every entity: the same device block (name, model, sw_version, identifiers) and availability."""
    cfgs = discovery.configs(settings())
    devices = {json.dumps(c["device"], sort_keys=True) for c in cfgs.values()}
    assert len(devices) == 1
    dev = next(iter(cfgs.values()))["device"]
    assert isinstance(dev, dict)
    assert dev["identifiers"] == ["stt_kitchen"]
    assert dev["name"]
    assert dev["model"]
    assert dev["sw_version"]
    assert {c["availability_topic"] for c in cfgs.values()} == {"stt/kitchen/availability"}
    assert all(c["origin"]["name"] == "stt-bridge" for c in cfgs.values())  # type: ignore[index]


def test_entities_and_their_topics() -> None:
    """The entities of the issue, on the worker's topics; diagnostics marked so."""
    o = by_object(discovery.configs(settings()))
    assert o["speech"]["state_topic"] == "stt/kitchen/speech"
    assert o["transcript"]["state_topic"] == "stt/kitchen/transcript/event"
    assert o["transcript"]["event_types"] == ["final"]
    assert o["last_transcript"]["json_attributes_topic"] == "stt/kitchen/transcript/last"
    assert o["mute"]["command_topic"] == "stt/kitchen/mute/set"
    assert o["backend"]["command_topic"] == "stt/kitchen/backend/set"
    assert o["backend"]["options"] == ["local", "ws", "wyoming"]
    assert o["listen"]["command_topic"] == "stt/kitchen/listen/set"
    diagnostic = {k for k, c in o.items() if c.get("entity_category") == "diagnostic"}
    assert diagnostic == {"server", "latency", "confidence"}
    assert o["server"]["device_class"] == "connectivity"


@pytest.mark.parametrize(("muted", "shown"), [(True, "ON"), (False, "OFF")])
def test_mute_switch_reads_the_state(muted: bool, shown: str) -> None:
    """The switch's template turns the worker's state into its state_on / state_off."""
    c = by_object(discovery.configs(settings()))["mute"]
    state = json.dumps({"muted": muted, "backend": "local", "server_connected": None})
    assert ha_schema.render(c["value_template"], state) == shown  # type: ignore[arg-type]
    assert shown == (c["state_on"] if muted else c["state_off"])


def test_backend_select_and_server_connectivity_read_the_state() -> None:
    """The select shows the chosen backend; connectivity is ON / OFF, unknown (None) with no server."""
    o = by_object(discovery.configs(settings()))
    for backend in ("local", "ws"):
        assert ha_schema.render(o["backend"]["value_template"], json.dumps({"backend": backend})) == backend  # type: ignore[arg-type]
    tpl = o["server"]["value_template"]
    assert ha_schema.render(tpl, json.dumps({"server_connected": True})) == "ON"  # type: ignore[arg-type]
    assert ha_schema.render(tpl, json.dumps({"server_connected": False})) == "OFF"  # type: ignore[arg-type]
    assert ha_schema.render(tpl, json.dumps({"server_connected": None})) == "None"  # type: ignore[arg-type]


def test_last_transcript_state_is_cut_to_255_and_attributes_keep_it_all() -> None:
    """A long utterance: the sensor state fits Home Assistant's 255 characters, the attributes
    (json_attributes_topic, the same retained payload) carry the full text and the fields."""
    c = by_object(discovery.configs(settings()))["last_transcript"]
    long_text = " ".join(["word"] * 200)
    payload = json.dumps(final(long_text))
    state = ha_schema.render(c["value_template"], payload)  # type: ignore[arg-type]
    assert len(state) <= 255
    assert long_text.startswith(state)
    short = ha_schema.render(c["value_template"], json.dumps(final("lights on")))  # type: ignore[arg-type]
    assert short == "lights on"
    attrs = json.loads(payload)
    assert attrs["text"] == long_text
    assert attrs["confidence"] == 0.873


def test_latency_and_confidence_sensors_render_numbers() -> None:
    """Diagnostics: last latency in ms, last confidence in percent, both numeric for statistics."""
    o = by_object(discovery.configs(settings()))
    payload = json.dumps(final())
    assert float(ha_schema.render(o["latency"]["value_template"], payload)) == 412  # type: ignore[arg-type]
    assert float(ha_schema.render(o["confidence"]["value_template"], payload)) == pytest.approx(87.3)  # type: ignore[arg-type]
    assert o["latency"]["unit_of_measurement"] == "ms"
    assert o["confidence"]["unit_of_measurement"] == "%"


def test_schema_table_catches_what_home_assistant_refuses() -> None:
    """The test's own schema table can fail: a missing event_types, an unknown key, no availability."""
    t = "homeassistant/event/n/o/config"
    good = {"state_topic": "a/b", "event_types": ["final"], "unique_id": "u", "availability_topic": "a/av",
            "device": {"identifiers": ["x"]}}
    assert ha_schema.problems(t, good) == []
    assert ha_schema.problems(t, {**good, "event_types": []})
    assert ha_schema.problems(t, {k: v for k, v in good.items() if k != "availability_topic"})
    assert ha_schema.problems(t, {**good, "stat_topic": "x"})  # a typo Home Assistant would ignore
    abbreviated = {"stat_t": "a/b", "evt_typ": ["final"], "uniq_id": "u", "avty_t": "a/av",
                   "dev": {"ids": "x"}}
    assert ha_schema.problems(t, abbreviated) == []
