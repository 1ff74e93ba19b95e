"""The /stt message layer: client frames decoded once into typed messages or a PeerError with a stable
code; server messages encoded with the field names existing clients read."""

from __future__ import annotations

import json

import pytest
from stt_core import protocol as p
from stt_core.errors import PeerError


def decode_error(text: str) -> PeerError:
    with pytest.raises(PeerError) as info:
        p.decode_client_message(text)
    return info.value


def test_init_from_the_issue_decodes_with_every_field():
    """The init message exactly as the issue writes it decodes with each field kept."""
    msg = p.decode_client_message(
        '{"type":"init","session_id":"optional-id","sample_rate":16000,"lang":"en","enable_partials":true}')
    assert isinstance(msg, p.Init)
    got = (msg.session_id, msg.sample_rate, msg.lang, msg.enable_partials)
    assert got == ("optional-id", 16000, "en", True)


def test_init_defaults_when_only_type_is_sent():
    """Every init field but type is optional: 16 kHz, English, partials on, no session id."""
    msg = p.decode_client_message('{"type":"init"}')
    assert isinstance(msg, p.Init)
    assert (msg.session_id, msg.sample_rate, msg.lang, msg.enable_partials) == (None, 16000, "en", True)


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000])
def test_init_accepts_every_rate_from_8_to_48_khz(rate):
    """Any integer rate in 8-48 kHz is accepted as given."""
    msg = p.decode_client_message(json.dumps({"type": "init", "sample_rate": rate}))
    assert isinstance(msg, p.Init)
    assert msg.sample_rate == rate


def test_unknown_fields_from_newer_clients_are_ignored():
    """A client sending extra fields (a newer protocol) is not refused."""
    msg = p.decode_client_message('{"type":"init","sample_rate":8000,"codec":"pcm","x":{"y":1}}')
    assert isinstance(msg, p.Init)
    assert msg.sample_rate == 8000
    assert isinstance(p.decode_client_message('{"type":"end","flush":true}'), p.End)


def test_end_and_health_requests_decode():
    """{"type":"end"} and the {"type":"health"} extension decode to their own types."""
    assert isinstance(p.decode_client_message('{"type":"end"}'), p.End)
    assert isinstance(p.decode_client_message('{"type":"health"}'), p.HealthRequest)


@pytest.mark.parametrize("text", ["hello", "{", "", "[1, 2]", "42", "null", '"init"'])
def test_text_that_is_not_a_json_object_is_not_json(text):
    """Text frames that are not JSON objects give code not_json, and the session may go on."""
    err = decode_error(text)
    assert err.code == "not_json"
    assert not err.fatal
    assert err.message


@pytest.mark.parametrize("text", ['{"type":"start"}', '{"type":"INIT"}', '{"sample_rate":16000}',
                                  '{"type":null}', '{"type":7}', '{"type":"partial","text":"x"}'])
def test_unknown_or_missing_type_is_unknown_type(text):
    """A JSON object whose type is not init/end/health gives code unknown_type (not fatal)."""
    err = decode_error(text)
    assert err.code == "unknown_type"
    assert not err.fatal


@pytest.mark.parametrize("rate", [0, -16000, 7999, 48001, 96000, 10**12, "16000", "fast", 16000.0, True, None,
                                  [16000]])
def test_bad_sample_rate_is_refused_and_fatal(rate):
    """A sample_rate outside 8000-48000 or not an integer (strings, floats, booleans too) gives code
    bad_sample_rate, fatal: the server cannot guess how to read the audio."""
    err = decode_error(json.dumps({"type": "init", "sample_rate": rate}))
    assert err.code == "bad_sample_rate"
    assert err.fatal
    assert "sample_rate" in err.message


@pytest.mark.parametrize("extra", [{"enable_partials": "yes"}, {"session_id": "x" * 129}, {"lang": 5},
                                   {"session_id": 12}])
def test_other_bad_init_fields_are_invalid_message(extra):
    """A malformed init field other than the rate gives invalid_message, fatal, naming the field."""
    err = decode_error(json.dumps({"type": "init", "sample_rate": 16000, **extra}))
    assert err.code == "invalid_message"
    assert err.fatal
    assert next(iter(extra)) in err.message


def test_server_messages_use_the_documented_field_names():
    """partial and final carry type/text/confidence/t_ms, health carries ok, error carries code/message;
    absent optional fields are left out rather than sent as null."""
    partial = json.loads(p.encode(p.Partial(text="hel", confidence=0.5, t_ms=300)))
    assert partial["type"] == "partial"
    assert (partial["text"], partial["confidence"], partial["t_ms"]) == ("hel", 0.5, 300)
    assert None not in partial.values()
    final = json.loads(p.encode(p.Final(text="hello", confidence=0.9, t_ms=1200)))
    assert final["type"] == "final"
    assert (final["text"], final["confidence"], final["t_ms"]) == ("hello", 0.9, 1200)
    assert None not in final.values()
    assert json.loads(p.encode(p.Health(ok=True))) == {"type": "health", "ok": True}
    error = json.loads(p.encode(p.Error(code="not_json", message="m")))
    assert error == {"type": "error", "code": "not_json", "message": "m"}


@pytest.mark.parametrize("message", [
    p.Ready(session_id="s", sample_rate=48000, model="m", partial_interval_ms=300),
    p.Partial(text="a", confidence=0.25, t_ms=10, session_id="s", segment=2),
    p.Final(text="a b", confidence=1.0, t_ms=20, language="en", decode_ms=5, model="m", reason="shutdown"),
    p.Health(ok=False, model="m", device="cpu", compute_type="int8", active_sessions=3),
    p.Error(code="flood", message="slow down"),
])
def test_server_messages_round_trip_through_the_client_decoder(message):
    """What the server encodes, a client decodes back to the same message."""
    assert p.decode_server_message(p.encode(message)) == message


@pytest.mark.parametrize("text", ["nope", '{"type":"final"}', '{"type":"bogus","text":""}', "[]"])
def test_unexpected_server_frames_are_bad_server_message(text):
    """A client refuses garbage from a server with its own stable code."""
    with pytest.raises(PeerError) as info:
        p.decode_server_message(text)
    assert info.value.code == "bad_server_message"
