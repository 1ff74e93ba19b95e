"""hermes.py without a broker: Rhasspy's payloads out, its ASR commands in, other sites ignored."""

from __future__ import annotations

import json

import pytest
from stt_worker import hermes, topics
from stt_worker.control import ControlError


def test_text_captured_has_rhasspys_fields_and_types() -> None:
    """textCaptured: text, likelihood, seconds, siteId, sessionId with Rhasspy's names and types."""
    p = hermes.text_captured(text="lights on", likelihood=0.91, seconds=1.9, site_id="kitchen",
                             session_id="s-1", lang="en")
    assert json.loads(json.dumps(p)) == p
    assert p["text"] == "lights on"
    assert p["siteId"] == "kitchen"
    assert p["sessionId"] == "s-1"
    assert isinstance(p["likelihood"], float)
    assert isinstance(p["seconds"], float)
    none = hermes.text_captured(text="x", likelihood=1, seconds=2, site_id="k", session_id=None)
    assert none["sessionId"] is None
    assert isinstance(none["likelihood"], float)


def test_partial_text_captured_has_the_same_fields() -> None:
    """partialTextCaptured carries text, likelihood, seconds, siteId, sessionId too."""
    p = hermes.partial_text_captured(text="lights", likelihood=0.0, seconds=0.6, site_id="kitchen",
                                     session_id=None)
    assert {"text", "likelihood", "seconds", "siteId", "sessionId"} <= p.keys()


@pytest.mark.parametrize(("topic", "payload", "command"), [
    (topics.HERMES_TOGGLE_OFF, b'{"siteId": "kitchen", "reason": "dialogueSession"}', hermes.Toggle(False)),
    (topics.HERMES_TOGGLE_ON, b'{"siteId": "kitchen"}', hermes.Toggle(True)),
    (topics.HERMES_START_LISTENING, b'{"siteId": "kitchen", "sessionId": "abc", "stopOnSilence": true}',
     hermes.StartListening("abc")),
    (topics.HERMES_STOP_LISTENING, b'{"siteId": "kitchen", "sessionId": "abc"}', hermes.StopListening("abc")),
    (topics.HERMES_START_LISTENING, b'{"siteId": "kitchen"}', hermes.StartListening(None)),
])
def test_commands_for_this_site(topic: str, payload: bytes, command: hermes.HermesCommand) -> None:
    """toggleOn/Off and start/stopListening for our siteId become commands (extra fields ignored)."""
    assert hermes.parse(topic, payload, "kitchen") == command


@pytest.mark.parametrize("topic", topics.HERMES_SUBSCRIPTIONS)
def test_other_sites_are_ignored(topic: str) -> None:
    """A message for another siteId (or Rhasspy's default site) is not ours."""
    assert hermes.parse(topic, b'{"siteId": "office", "sessionId": "x"}', "kitchen") is None
    assert hermes.parse(topic, b"{}", "kitchen") is None
    assert hermes.parse(topic, b"{}", "default") is not None


def test_unrelated_topics_give_nothing() -> None:
    """textCaptured (our own output) and other Hermes topics are not commands."""
    assert hermes.parse(topics.HERMES_TEXT_CAPTURED, b'{"siteId": "kitchen"}', "kitchen") is None


@pytest.mark.parametrize("payload", [b"toggle off", b"[]", b'{"siteId": 5}',
                                     b'{"siteId": "k", "sessionId": []}'])
def test_bad_payloads_raise(payload: bytes) -> None:
    """A payload that is not Hermes' JSON raises a ControlError (answered on the error topic)."""
    with pytest.raises(ControlError):
        hermes.parse(topics.HERMES_TOGGLE_OFF, payload, "kitchen")
