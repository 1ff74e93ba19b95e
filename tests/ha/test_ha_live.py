"""Home Assistant's view of a real worker on a real Mosquitto: discovery checked against Home
Assistant's schema and against what the worker really publishes and obeys, then used as Home
Assistant uses it (mute, backend, listen, restart, removal). The microphone is a pipe fed in real time."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness import speech
from harness.procs import Mosquitto, Proc, free_port
from tests.ha import ha_schema
from tests.ha.live import LONG, PREFIX, SHORT, SHORT2, SITE, TOPIC, Ha, Worker, remove_discovery

N_CONFIGS = 9
FINAL_S = 20.0  # a final after the end of speech, with room for a loaded machine


def until(read: Callable[[], Any], want: Any, timeout: float) -> Any:
    """What read() returns once it equals want, or its last value after timeout (for the assert)."""
    end = time.monotonic() + timeout
    got = read()
    while got != want and time.monotonic() < end:
        time.sleep(0.05)
        got = read()
    return got


def ready(ha: Ha, since: int = 0, timeout: float = 30.0) -> dict[str, object]:
    return ha.wait_state(timeout, since, listening=True)


def discovered(ha: Ha, n: int = N_CONFIGS, timeout: float = 10.0) -> dict[str, dict[str, object]]:
    end = time.monotonic() + timeout
    while len(cfgs := ha.configs()) < n and time.monotonic() < end:
        time.sleep(0.05)
    return {t: ha_schema.expand(c) for t, c in cfgs.items()}


def of(cfgs: dict[str, dict[str, object]], component: str, object_id: str) -> dict[str, object]:
    return next(c for t, c in cfgs.items() if t.split("/")[1] == component and t.split("/")[-2] == object_id)


def final_after(ha: Ha, since: int, timeout: float = FINAL_S) -> dict[str, object]:
    return ha.wait_topic(f"{TOPIC}/transcript/final", timeout, since).json()  # type: ignore[no-any-return]


def no_message(ha: Ha, topic: str, since: int, seconds: float) -> None:
    time.sleep(seconds)
    got = ha.on(topic, since)
    assert not got, f"{len(got)} messages on {topic}: {[m.text[:80] for m in got]}"


def test_discovery_is_valid_and_every_topic_is_live(start_worker: Callable[..., Worker], ha: Ha) -> None:
    """Every config passes Home Assistant's schema; every state / attributes / availability topic is
    one the worker publishes, with values the entity accepts; every command topic is obeyed."""
    w = start_worker(WS_URL=f"ws://127.0.0.1:{free_port()}/stt", WS_CONNECT_TIMEOUT_S="1")
    ready(ha)
    cfgs = discovered(ha)
    assert len(cfgs) == N_CONFIGS
    assert {ha_schema.component_of(t) for t in cfgs} == set(ha_schema.COMPONENTS)
    for topic in cfgs:
        assert ha_schema.problems(topic, ha.configs()[topic]) == []

    mark = ha.mark()
    w.say(SHORT)
    final_after(ha, mark)
    for published in ("transcript/last", "transcript/event"):  # both follow the final, in no set order
        ha.wait_topic(f"{TOPIC}/{published}", 5, mark)
    for topic, c in cfgs.items():
        comp = ha_schema.component_of(topic)
        for key in ha_schema.PUBLISHED_BY_DEVICE:
            if key in c:
                last = ha.latest(str(c[key]))
                assert last is not None, f"{topic}: nothing published on its {key} {c[key]}"
                if key == "availability_topic":
                    assert last.text == c.get("payload_available", "online")
                if key == "json_attributes_topic":
                    assert isinstance(last.json(), dict)
        if "state_topic" not in c:
            continue
        payload = ha.latest(str(c["state_topic"]))
        assert payload is not None
        value = ha_schema.render(c.get("value_template"), payload.text)  # type: ignore[arg-type]
        if comp == "binary_sensor":
            assert value in (c.get("payload_on", "ON"), c.get("payload_off", "OFF"), "None"), (topic, value)
        elif comp == "switch":
            assert value in (c.get("state_on", "ON"), c.get("state_off", "OFF")), (topic, value)
        elif comp == "select":
            assert value in c["options"], (topic, value)  # type: ignore[operator]
        elif comp == "event":
            assert json.loads(value)["event_type"] in c["event_types"]  # type: ignore[operator]
        elif comp == "sensor":
            assert value, topic
            if "unit_of_measurement" in c or "state_class" in c:
                float(value)

    # command topics: Home Assistant's own payloads, each obeyed and confirmed by the state
    mute = of(cfgs, "switch", "mute")
    mark = ha.mark()
    ha.publish(str(mute["command_topic"]), str(mute.get("payload_on", "ON")))
    state = ha.wait_state(5, mark, muted=True)
    assert ha_schema.render(str(mute["value_template"]), json.dumps(state)) == mute.get("state_on", "ON")
    mark = ha.mark()
    ha.publish(str(mute["command_topic"]), str(mute.get("payload_off", "OFF")))
    ha.wait_state(5, mark, muted=False)
    select = of(cfgs, "select", "backend")
    for option in [*select["options"], "local"]:  # type: ignore[misc]
        mark = ha.mark()
        ha.publish(str(select["command_topic"]), option)
        state = ha.wait_state(10, mark, backend=option)
        assert ha_schema.render(str(select["value_template"]), json.dumps(state)) == option
    button = of(cfgs, "button", "listen")
    mark = ha.mark()
    ha.publish(str(button["command_topic"]), str(button.get("payload_press", "PRESS")))
    ha.wait_topic(f"{TOPIC}/speech", 5, mark, where=lambda m: m.text == "ON")
    assert w.alive()


def test_mute_switch_drops_the_utterance_and_silences_until_unmuted(
        start_worker: Callable[..., Worker], ha: Ha) -> None:
    """Muting mid-utterance drops that utterance; a muted worker hears nothing and publishes no
    transcript; unmuted, transcripts (and HA events) come again."""
    w = start_worker()
    ready(ha)
    mute_cmd = str(of(discovered(ha), "switch", "mute")["command_topic"])

    mark = ha.mark()
    w.say(SHORT)
    first = final_after(ha, mark)
    ha.wait_topic(f"{TOPIC}/transcript/event", 5, mark)

    # mid-utterance: the gate is open, then Mute
    mark = ha.mark()
    length = w.say(LONG)
    ha.wait_topic(f"{TOPIC}/speech", 5, mark, where=lambda m: m.text == "ON")
    time.sleep(1.0)
    ha.publish(mute_cmd, "ON")
    confirmed = ha.wait_topic(f"{TOPIC}/state", 5, mark, where=lambda m: m.json()["muted"] is True)
    assert confirmed.json()["listening"] is False
    muted_at = ha.index(confirmed)  # what the worker published after it took the mute in
    ha.wait_topic(f"{TOPIC}/speech", 2, mark, where=lambda m: m.text == "OFF")
    time.sleep(length)
    # while muted: more speech, not even the gate opens
    w.say(SHORT2)
    time.sleep(speech.duration(SHORT2) + 2.0)
    for topic in ("transcript/final", "transcript/event"):
        assert not ha.on(f"{TOPIC}/{topic}", mark), f"{topic} of an utterance dropped by muting"
    assert not ha.on(f"{TOPIC}/transcript/partial", muted_at), "partials while muted"
    assert not [m for m in ha.on(f"{TOPIC}/speech", muted_at) if m.text == "ON"]

    mark = ha.mark()
    ha.publish(mute_cmd, "OFF")
    ha.wait_state(5, mark, muted=False, listening=True)
    w.say(SHORT)
    again = final_after(ha, mark)
    event = ha.wait_topic(f"{TOPIC}/transcript/event", 5, mark).json()
    # the same sentence, though not the same samples (where the gate cuts it differs): both its words
    assert speech.wer([(speech.refs()[SHORT], first["text"]), (speech.refs()[SHORT], again["text"])]) <= 0.25
    assert event["text"] == again["text"]
    assert w.logs("utterance_dropped_muted")


def test_backend_select_switches_to_the_server_and_back(
        start_worker: Callable[..., Worker], ha: Ha, server: tuple[Proc, int]) -> None:
    """Select ws: the state confirms, the next utterance goes to the real server; select local:
    back to the embedded engine. The transcript says which backend made it."""
    w = start_worker(WS_URL=f"ws://127.0.0.1:{server[1]}/stt", WS_CONNECT_TIMEOUT_S="15",
                     WS_FINAL_TIMEOUT_S="20")
    state = ready(ha)
    assert state["backend"] == "local"
    assert state["server_connected"] is None
    select_cmd = str(of(discovered(ha), "select", "backend")["command_topic"])

    mark = ha.mark()
    ha.publish(select_cmd, "ws")
    state = ha.wait_state(20, mark, backend="ws")
    assert state["server_connected"] is True
    assert state["active_backend"] == "ws"
    mark = ha.mark()
    w.say(SHORT)
    f = final_after(ha, mark)
    assert f["backend"] == "ws"
    assert not f["fallback"]

    mark = ha.mark()
    ha.publish(f"{TOPIC}/set", json.dumps({"backend": "local"}))
    state = ha.wait_state(10, mark, backend="local")
    assert state["active_backend"] == "local"
    w.say(SHORT2)
    assert final_after(ha, mark)["backend"] == "local"


def test_switch_to_ws_while_the_server_is_down_still_transcribes(
        start_worker: Callable[..., Worker], ha: Ha) -> None:
    """ws selected with no server: the state says ws (server disconnected, local active) and the
    utterance is transcribed by the failover."""
    w = start_worker(WS_URL=f"ws://127.0.0.1:{free_port()}/stt", WS_CONNECT_TIMEOUT_S="1")
    ready(ha)
    mark = ha.mark()
    ha.publish(f"{TOPIC}/backend/set", "ws")
    state = ha.wait_state(20, mark, backend="ws")
    assert state["server_connected"] is False
    assert state["active_backend"] == "local"
    w.say(SHORT)
    f = final_after(ha, mark)
    assert f["backend"] == "local"
    assert f["fallback"] is True
    assert f["text"]


def test_listen_button_opens_the_gate_in_silence(start_worker: Callable[..., Worker], ha: Ha) -> None:
    """Listen starts an utterance now (push-to-talk): speech ON in silence, OFF on the hangover;
    {"listen": true} on /set does the same."""
    start_worker()
    ready(ha)
    listen_cmd = str(of(discovered(ha), "button", "listen")["command_topic"])
    time.sleep(1.0)
    assert not [m for m in ha.on(f"{TOPIC}/speech") if m.text == "ON"]  # silence alone opens nothing
    for topic, payload in ((listen_cmd, "PRESS"), (f"{TOPIC}/set", '{"listen": true}')):
        mark = ha.mark()
        t0 = time.monotonic()
        ha.publish(topic, payload)
        on = ha.wait_topic(f"{TOPIC}/speech", 3, mark, where=lambda m: m.text == "ON")
        assert on.t - t0 < 3.0
        # The gate waits VAD listen timeout (5 s) for speech to start; leave margin on a busy CI core.
        ha.wait_topic(f"{TOPIC}/speech", 12, mark, where=lambda m: m.text == "OFF")


def test_home_assistant_restart_gets_discovery_again(
        start_worker: Callable[..., Worker], ha: Ha, broker: Mosquitto) -> None:
    """A new Home Assistant subscriber gets the retained configs; when it publishes
    homeassistant/status online, every config is sent again (even one the broker lost)."""
    start_worker()
    ready(ha)
    cfgs = discovered(ha)
    lost = next(iter(cfgs))
    ha.close()

    ha2 = Ha(broker.port, topics=[f"{PREFIX}/#"])
    try:
        assert set(discovered(ha2)) == set(cfgs)
        assert all(m.retain for m in ha2.messages)
        ha2.publish(lost, "", retain=True)  # the broker forgot one
        time.sleep(0.3)
        mark = ha2.mark()
        ha2.publish(f"{PREFIX}/status", "online")
        ha2.wait(lambda m: m.topic == lost and bool(m.raw), 5, mark, what="the lost config again")
        again = until(lambda: {m.topic for m in ha2.messages[mark:] if m.raw and m.topic.endswith("/config")},
                      set(cfgs), 5)
        assert again == set(cfgs)
    finally:
        ha2.close()
    ha3 = Ha(broker.port, topics=[f"{PREFIX}/#"])
    try:
        assert set(discovered(ha3)) == set(cfgs)
    finally:
        ha3.close()


def test_remove_discovery_clears_every_config(
        start_worker: Callable[..., Worker], ha: Ha, broker: Mosquitto, tmp_path: Path) -> None:
    """stt-worker --remove-discovery empties every config topic (acknowledged), exits 0, and leaves
    the running worker's availability alone."""
    w = start_worker()
    ready(ha)
    assert len(discovered(ha)) == N_CONFIGS
    r = remove_discovery(broker.port, tmp_path / "state")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "discovery_removed" in r.stdout + r.stderr
    assert until(ha.configs, {}, 5) == {}
    assert ha.latest(f"{TOPIC}/availability").text == "online"  # type: ignore[union-attr]
    fresh = Ha(broker.port, topics=[f"{PREFIX}/#"])
    try:
        time.sleep(1.0)
        assert [m for m in fresh.messages if m.raw] == []
    finally:
        fresh.close()
    assert w.alive()


@pytest.mark.parametrize("env", [{"HA_DISCOVERY": "0"}])
def test_discovery_can_be_turned_off(start_worker: Callable[..., Worker], ha: Ha,
                                     env: dict[str, str]) -> None:
    """HA_DISCOVERY=0: nothing under the discovery prefix, not even after Home Assistant's birth;
    the control topics still work."""
    start_worker(**env)
    ready(ha)
    ha.publish(f"{PREFIX}/status", "online")
    mark = ha.mark()
    ha.publish(f"{TOPIC}/set", '{"muted": true}')
    ha.wait_state(5, mark, muted=True)
    time.sleep(0.5)
    assert not [m for m in ha.messages if m.topic.startswith(PREFIX + "/") and m.topic.endswith("/config")]


BAD = [
    (f"{TOPIC}/set", "mute please", "invalid_json"),
    (f"{TOPIC}/set", '{"mute": true}', "invalid_command"),
    (f"{TOPIC}/set", '{"backend": "cloud"}', "invalid_command"),
    (f"{TOPIC}/set", "[]", "invalid_command"),
    (f"{TOPIC}/mute/set", "MAYBE", "invalid_command"),
    (f"{TOPIC}/backend/set", "gpu", "invalid_command"),
    (f"{TOPIC}/listen/set", "HOLD", "invalid_command"),
    (f"{TOPIC}/set", "x" * 5000, "payload_too_large"),
]


def test_bad_commands_are_answered_on_the_error_topic(start_worker: Callable[..., Worker], ha: Ha) -> None:
    """Each bad payload gets an answer on <base>/<site>/error naming code, topic and payload; the
    worker stays up, changes nothing, and obeys the next good command."""
    w = start_worker()
    ready(ha)
    for topic, payload, code in BAD:
        mark = ha.mark()
        ha.publish(topic, payload)
        err = ha.wait_topic(f"{TOPIC}/error", 5, mark).json()
        assert err["code"] == code
        assert err["topic"] == topic
        assert err["site_id"] == SITE
        assert err["payload"] == payload[:200]
        assert err["message"]
    assert w.alive()
    assert ha.latest(f"{TOPIC}/state").json()["muted"] is False  # type: ignore[union-attr]
    mark = ha.mark()
    ha.publish(f"{TOPIC}/set", '{"muted": true}')
    ha.wait_state(5, mark, muted=True)
    # Listen while muted is refused, not silently ignored
    mark = ha.mark()
    ha.publish(f"{TOPIC}/listen/set", "PRESS")
    assert ha.wait_topic(f"{TOPIC}/error", 5, mark).json()["code"] == "muted"
    assert len(w.logs("control_refused")) == len(BAD) + 1


def test_repeated_words_fire_an_event_each_on_a_wav(start_worker: Callable[..., Worker], ha: Ha,
                                                    broker: Mosquitto, tmp_path: Path) -> None:
    """The same sentence twice (a WAV played in real time): two events, each with its final's text
    (the sentence's words both times), so an automation fires on each; the retained last transcript is
    the last final; exit 0 at the end."""
    wav, _ = speech.concat([SHORT, SHORT], tmp_path / "twice.wav", gap_s=1.5, lead_s=1.0)
    w = start_worker(wav=wav)
    assert w.proc.wait(60) == 0
    time.sleep(0.3)
    finals = [m.json() for m in ha.on(f"{TOPIC}/transcript/final")]
    events = [m.json() for m in ha.on(f"{TOPIC}/transcript/event")]
    assert len(finals) == 2
    assert len(events) == 2
    assert [e["text"] for e in events] == [f["text"] for f in finals]
    # not compared with each other: the gate cuts the two at different sample offsets, and the model
    # may punctuate them differently
    assert speech.wer([(speech.refs()[SHORT], f["text"]) for f in finals]) <= 0.25, finals
    assert all(e["event_type"] == "final" for e in events)
    assert {"text", "confidence", "backend", "latency_ms"} <= events[0].keys()
    assert [e["utterance_id"] for e in events] == [f["utterance_id"] for f in finals]
    last = ha.latest(f"{TOPIC}/transcript/last")
    assert last is not None
    assert last.retain is False
    assert last.json() == finals[-1]
    late = Ha(broker.port, topics=[f"{TOPIC}/transcript/last"])
    try:
        got = late.wait_topic(f"{TOPIC}/transcript/last", 5)
        assert got.retain
        assert got.json() == finals[-1]
    finally:
        late.close()


def test_muted_and_backend_survive_a_restart(start_worker: Callable[..., Worker], ha: Ha) -> None:
    """With a state directory (STATE_DIRECTORY here), muted and the chosen backend are restored."""
    dead = f"ws://127.0.0.1:{free_port()}/stt"
    w = start_worker(WS_URL=dead, WS_CONNECT_TIMEOUT_S="1")
    ready(ha)
    mark = ha.mark()
    ha.publish(f"{TOPIC}/set", '{"muted": true, "backend": "ws"}')
    ha.wait_state(10, mark, muted=True, backend="ws")
    assert w.end_input() == 0
    mark = ha.mark()
    start_worker(WS_URL=dead, WS_CONNECT_TIMEOUT_S="1")
    state = ha.wait_state(30, mark, listening=False, muted=True, backend="ws")
    assert state["muted"] is True
