"""payloads.py without a broker: every message the worker publishes, its topic, JSON and delivery."""

from __future__ import annotations

import json

from stt_worker import discovery
from stt_worker.payloads import Payloads, WorkerState
from stt_worker.settings import WorkerSettings
from stt_worker.utterances import HeardFinal, HeardPartial, Lost

FINAL = HeardFinal(
    utterance_id="abc", text="turn on the light", confidence=0.875, language="en", backend="ws",
    model="tiny.en", fallback=False, audio_ms=2345, latency_ms=321, started_at=1_700_000_000.0,
    voiced_end_at=1_700_000_002.5, session_id="s-1", first_partial_ms=410, partials=3, end="silence",
    decode_ms=120, speculative=True)


def payloads(**kw: object) -> Payloads:
    base: dict[str, object] = {"site_id": "kitchen", "mqtt_base_topic": "stt", "audio_source": "mic"}
    return Payloads(WorkerSettings(_env_file=None, **{**base, **kw}))  # type: ignore[arg-type, call-arg]


def test_a_final_goes_to_final_event_and_last_with_the_documented_fields() -> None:
    """Finals and events are QoS 1 and queued, the last transcript retained; all three carry the same
    fields, the event with Home Assistant's event_type added."""
    msgs = payloads().final(FINAL)
    assert [(m.topic, m.delivery) for m in msgs] == [
        ("stt/kitchen/transcript/final", "reliable"), ("stt/kitchen/transcript/event", "reliable"),
        ("stt/kitchen/transcript/last", "retained")]
    fields = json.loads(msgs[0].payload)
    assert fields == {
        "site_id": "kitchen", "utterance_id": "abc", "text": "turn on the light", "confidence": 0.875,
        "language": "en", "backend": "ws", "model": "tiny.en", "audio_s": 2.345, "latency_ms": 321,
        "started_at": "2023-11-14T22:13:20.000Z", "ended_at": "2023-11-14T22:13:22.500Z", "fallback": False,
        "end": "silence", "continues": None, "part": 1}
    assert json.loads(msgs[1].payload) == {"event_type": discovery.EVENT_TYPE, **fields}
    assert json.loads(msgs[2].payload) == fields


def test_hermes_messages_are_added_only_when_hermes_is_on() -> None:
    partial = HeardPartial("abc", "turn on", 900, "local", 900, "s-1")
    assert [m.topic for m in payloads().partial(partial)] == ["stt/kitchen/transcript/partial"]
    on = payloads(hermes=True)
    captured = on.final(FINAL)[-1]
    assert (captured.topic, captured.delivery) == ("hermes/asr/textCaptured", "reliable")
    assert json.loads(captured.payload)["sessionId"] == "s-1"
    partials = on.partial(partial)
    assert [(m.topic, m.delivery) for m in partials] == [
        ("stt/kitchen/transcript/partial", "ephemeral"), ("hermes/asr/partialTextCaptured", "ephemeral")]
    assert json.loads(partials[0].payload) == {"utterance_id": "abc", "text": "turn on", "t_ms": 900,
                                               "backend": "local"}


def test_state_speech_and_lost() -> None:
    p = payloads()
    state = p.state(WorkerState(backend="ws", active_backend="local", backend_connected=False,
                                server_connected=False, listening=True, muted=True, model="?"))
    assert (state.topic, state.delivery) == ("stt/kitchen/state", "retained")
    body = json.loads(state.payload)
    assert (body["listening"], body["muted"], body["active_backend"]) == (False, True, "local")
    assert (p.speech(True).topic, p.speech(True).payload, p.speech(False).payload) == (
        "stt/kitchen/speech", "ON", "OFF")
    lost = p.lost(Lost("abc", "backend_unavailable", "server away", 1500, 1_700_000_000.0, 1_700_000_001.5))
    assert (lost.topic, lost.delivery) == ("stt/kitchen/error", "reliable")
    assert json.loads(lost.payload)["code"] == "backend_unavailable"


def test_discovery_and_its_removal_cover_the_same_topics() -> None:
    p = payloads(ha_discovery_prefix="ha")
    announced = p.discovery()
    removed = p.undiscovery()
    assert {m.topic for m in announced} == {m.topic for m in removed}
    assert all(m.topic.startswith("ha/") and m.topic.endswith("/config") for m in announced)
    assert {m.delivery for m in announced} == {"retained"}
    assert {(m.payload, m.delivery) for m in removed} == {("", "reliable_retained")}
