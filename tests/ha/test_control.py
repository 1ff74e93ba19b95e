"""control.py without a broker: /set JSON and the per-entity command payloads into typed commands,
everything else into a ControlError with a stable code."""

from __future__ import annotations

import json

import pytest
from stt_core.errors import PeerError
from stt_worker import control
from stt_worker.control import Listen, SetBackend, SetMuted
from stt_worker.payloads import Payloads
from stt_worker.settings import WorkerSettings
from stt_worker.topics import Topics

T = Topics.of("stt", "kitchen")


@pytest.mark.parametrize(("payload", "commands"), [
    (b'{"muted": true}', [SetMuted(True)]),
    (b'{"muted": false}', [SetMuted(False)]),
    (b'{"backend": "ws"}', [SetBackend("ws")]),
    (b'{"backend": "local"}', [SetBackend("local")]),
    (b'{"listen": true}', [Listen(True)]),
    (b'{"listen": false}', [Listen(False)]),
    (b' {"listen": true, "muted": false} ', [SetMuted(False), Listen(True)]),  # unmute first, then listen
])
def test_set_json_decodes(payload: bytes, commands: list[control.Command]) -> None:
    """Each documented /set key gives its command; several keys apply in a fixed order."""
    assert control.decode(T, "stt/kitchen/set", payload) == commands


@pytest.mark.parametrize(("payload", "code"), [
    (b"mute please", control.INVALID_JSON),
    (b"", control.INVALID_JSON),
    (b"[1, 2]", control.INVALID_COMMAND),
    (b"{}", control.INVALID_COMMAND),
    (b'{"mute": true}', control.INVALID_COMMAND),  # a typo is refused, not ignored
    (b'{"muted": "yes"}', control.INVALID_COMMAND),
    (b'{"muted": 1}', control.INVALID_COMMAND),
    (b'{"backend": "cloud"}', control.INVALID_COMMAND),
    (b'\xff\xfe{"muted": true}', control.INVALID_COMMAND),
    (b'{"muted": true, "pad": "' + b"x" * 5000 + b'"}', control.PAYLOAD_TOO_LARGE),
])
def test_bad_set_payloads_are_refused_with_a_code(payload: bytes, code: str) -> None:
    """Bad payloads raise a PeerError-style ControlError naming what is wrong."""
    with pytest.raises(control.ControlError) as err:
        control.decode(T, T.set, payload)
    assert isinstance(err.value, PeerError)
    assert err.value.code == code
    assert err.value.message


@pytest.mark.parametrize(("topic", "payload", "command"), [
    ("stt/kitchen/mute/set", b"ON", SetMuted(True)),
    ("stt/kitchen/mute/set", b"OFF", SetMuted(False)),
    ("stt/kitchen/mute/set", b"off\n", SetMuted(False)),
    ("stt/kitchen/backend/set", b"ws", SetBackend("ws")),
    ("stt/kitchen/backend/set", b"local", SetBackend("local")),
    ("stt/kitchen/listen/set", b"PRESS", Listen(True)),
])
def test_per_entity_payloads_decode(topic: str, payload: bytes, command: control.Command) -> None:
    """What Home Assistant's switch, select and button send on the announced command topics."""
    assert control.decode(T, topic, payload) == [command]


@pytest.mark.parametrize(("topic", "payload"), [
    ("stt/kitchen/mute/set", b"MAYBE"),
    ("stt/kitchen/backend/set", b"gpu"),
    ("stt/kitchen/listen/set", b"HOLD"),
    ("stt/kitchen/other/set", b"ON"),
])
def test_bad_per_entity_payloads_are_refused(topic: str, payload: bytes) -> None:
    """An option the entity does not have, or a topic that is no command topic, is refused."""
    with pytest.raises(control.ControlError):
        control.decode(T, topic, payload)


def test_error_payload_names_topic_code_and_payload() -> None:
    """The answer on <base>/<site>/error carries enough to find the sender's mistake."""
    m = Payloads(WorkerSettings(site_id="kitchen", mqtt_base_topic="stt")).refused(
        T.set, b'{"mute": 1}', "invalid_command", "muted: field required")
    # QoS 1 on its own small queue while the broker is away: a flood of bad commands never pushes a
    # final out of the finals' queue
    assert (m.topic, m.delivery) == ("stt/kitchen/error", "control_error")
    assert json.loads(m.payload) == {"site_id": "kitchen", "code": "invalid_command",
                                     "message": "muted: field required", "topic": "stt/kitchen/set",
                                     "payload": '{"mute": 1}'}
