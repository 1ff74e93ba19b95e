"""Fuzzing the worker's wire formats: the control topics and Hermes in (anyone on the broker can
publish there), the published payloads out. A message in is commands or the worker's own
``ControlError``; a message out is JSON that reads back to what was put in, whatever the text."""

from __future__ import annotations

import functools
import json
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st
from stt_worker import control, hermes
from stt_worker.backend import BACKEND_NAMES
from stt_worker.payloads import Payloads, WorkerState
from stt_worker.settings import WorkerSettings
from stt_worker.topics import HERMES_SUBSCRIPTIONS, Topics
from stt_worker.utterances import HeardFinal, HeardPartial, Lost

from tests.fuzz import strategies as fs

TOPICS = Topics.of("stt", "kitchen")
SITE = "kitchen"

set_payloads = st.fixed_dictionaries({}, optional={
    "muted": st.one_of(st.booleans(), fs.json_values), "backend": st.sampled_from([*BACKEND_NAMES, "x", 1]),
    "listen": st.one_of(st.booleans(), st.just("true"), st.none()),
    "mute": st.booleans()})
words = st.sampled_from(["ON", "OFF", "on", " off ", "true", "0", "1", "PRESS", "press", "", "local", "WS",
                         "wyoming", "toggle"])



control_payloads = st.one_of(
    set_payloads.map(json.dumps).map(str.encode), words.map(str.encode), fs.random_bytes,
    fs.garbage_text(set_payloads).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.integers(1, 4096).map(lambda n: b"[" * n), st.integers(1, 4096).map(lambda n: b'{"a":' * (n // 5)))


@given(st.one_of(st.sampled_from(TOPICS.commands), st.text(max_size=30)), control_payloads)
@example(TOPICS.set, b"[" * 4000)
@example(TOPICS.set, b'{"muted": true, "x": ' + b"[" * 3000 + b"]" * 3000 + b"}")
def test_control_decode_gives_commands_or_a_control_error(topic: str, payload: bytes) -> None:
    out = fs.outcome(control.decode, TOPICS, topic, payload)
    if isinstance(out, control.ControlError):
        assert out.code in (control.INVALID_JSON, control.INVALID_COMMAND, control.PAYLOAD_TOO_LARGE,
                            control.UNKNOWN_TOPIC)
        return
    assert topic in TOPICS.commands
    assert out, "a message that is not refused changes something"
    assert all(isinstance(c, control.SetMuted | control.SetBackend | control.Listen) for c in out)


@given(set_payloads)
def test_a_set_payload_applies_each_key_it_names(data: dict[str, Any]) -> None:
    out = fs.outcome(control.decode_set, json.dumps(data).encode())
    given = {k: v for k, v in data.items() if v is not None}  # a null is the key left out
    valid = (given and set(data) <= {"muted", "backend", "listen"}
             and all(isinstance(given[k], bool) for k in ("muted", "listen") if k in given)
             and given.get("backend", "local") in BACKEND_NAMES)
    if not valid:
        assert isinstance(out, control.ControlError)
        return
    assert not isinstance(out, control.ControlError)
    order = (("muted", "SetMuted"), ("backend", "SetBackend"), ("listen", "Listen"))
    assert [type(c).__name__ for c in out] == [name for key, name in order if key in given]


hermes_payloads = st.one_of(
    st.fixed_dictionaries({}, optional={"siteId": st.one_of(st.sampled_from([SITE, "default", "other"]),
                                                            fs.json_values),
                                        "sessionId": st.one_of(st.text(max_size=20), fs.json_values),
                                        "reason": st.text(max_size=10)}).map(json.dumps).map(str.encode),
    fs.random_bytes, fs.garbage_text().map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.integers(1, 4096).map(lambda n: b"[" * n))


@given(st.one_of(st.sampled_from(HERMES_SUBSCRIPTIONS), st.text(max_size=30)), hermes_payloads,
       st.sampled_from([SITE, "default"]))
@example("hermes/asr/toggleOff", b"[" * 4000, SITE)
def test_hermes_parse_gives_a_command_none_or_a_control_error(topic: str, payload: bytes, site: str) -> None:
    out = fs.outcome(hermes.parse, topic, payload, site)
    if isinstance(out, control.ControlError) or out is None:
        return
    assert topic in HERMES_SUBSCRIPTIONS
    assert isinstance(out, hermes.Toggle | hermes.StartListening | hermes.StopListening)
    assert isinstance(hermes.as_command(out), control.SetMuted | control.Listen)


# ---- what the worker publishes -----------------------------------------------------------------------

any_text = st.text(max_size=60)  # a transcript is whatever the model wrote: quotes, control characters...
wall_times = st.floats(0, 4e9)


@functools.cache  # settings are read once: building them per example would be most of the run
def payloads(hermes_on: bool) -> Payloads:
    return Payloads(WorkerSettings(_env_file=None, site_id=SITE, mqtt_base_topic="stt",  # type: ignore[call-arg]
                                   audio_source="mic", hermes=hermes_on))


finals = st.builds(HeardFinal, utterance_id=any_text, text=any_text, confidence=st.floats(0, 1),
                   language=st.one_of(st.none(), st.just("en")), model=any_text, fallback=st.booleans(),
                   audio_ms=st.integers(0, 10**7), latency_ms=st.integers(-(10**6), 10**7),
                   started_at=wall_times, voiced_end_at=wall_times,
                   session_id=st.one_of(st.none(), any_text))


@given(finals, st.booleans())
def test_final_payloads_are_json_that_reads_back(final: HeardFinal, hermes_on: bool) -> None:
    msgs = payloads(hermes_on).final(final)
    assert len(msgs) == (4 if hermes_on else 3)
    for m in msgs:
        data = json.loads(m.payload, parse_constant=_no_constants)
        assert data["text"] == final.text


@given(st.builds(HeardPartial, utterance_id=any_text, text=any_text, t_ms=st.integers(0, 10**7),
                 audio_ms=st.integers(0, 10**7), session_id=st.one_of(st.none(), any_text)), st.booleans())
def test_partial_payloads_are_json_that_reads_back(partial: HeardPartial, hermes_on: bool) -> None:
    for m in payloads(hermes_on).partial(partial):
        assert json.loads(m.payload, parse_constant=_no_constants)["text"] == partial.text


@given(st.builds(Lost, utterance_id=any_text, message=any_text, audio_ms=st.integers(0, 10**7),
                 started_at=wall_times, voiced_end_at=wall_times),
       st.builds(WorkerState, model=any_text))
def test_lost_and_state_payloads_are_json(lost: Lost, state: WorkerState) -> None:
    p = payloads(False)
    assert json.loads(p.lost(lost).payload)["message"] == lost.message
    assert json.loads(p.state(state).payload)["model"] == state.model


@given(st.text(max_size=80), st.binary(max_size=600), any_text, any_text)
def test_a_refused_command_echoes_a_short_prefix_as_json(topic: str, payload: bytes, code: str,
                                                        message: str) -> None:
    data = json.loads(payloads(False).refused(topic, payload, code, message).payload)
    assert len(data["payload"].encode("utf-8", "surrogatepass")) <= 3 * 200
    assert data["topic"] == topic


def _no_constants(name: str) -> None:
    raise AssertionError(f"{name} is not JSON; a consumer's parser would refuse the message")
