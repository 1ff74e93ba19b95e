"""HERMES=1 on a real worker and a real Mosquitto, driven as a Rhasspy-era automation would:
textCaptured / partialTextCaptured out, toggleOn/Off and start/stopListening in, per siteId."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from harness import speech
from tests.ha.live import LONG, SHORT, SHORT2, SITE, TOPIC, Ha, Worker

TEXT = "hermes/asr/textCaptured"
PARTIAL = "hermes/asr/partialTextCaptured"
FINAL_S = 20.0


def hermes(ha: Ha, verb: str, **fields: object) -> None:
    ha.publish(f"hermes/asr/{verb}", json.dumps(fields))


def test_text_captured_fields_and_types(start_worker: Callable[..., Worker], ha: Ha) -> None:
    """Every final is also hermes/asr/textCaptured with Rhasspy's fields and types, partials are
    partialTextCaptured; without a session, sessionId is null."""
    w = start_worker(HERMES="1")
    ha.wait_state(30, listening=True)
    mark = ha.mark()
    w.say(LONG)  # long enough for partials even when a loaded core makes them slow
    captured = ha.wait_topic(TEXT, FINAL_S, mark).json()
    final = ha.wait_topic(f"{TOPIC}/transcript/final", 5, mark).json()
    assert isinstance(captured["text"], str)
    assert captured["text"] == final["text"]
    assert isinstance(captured["likelihood"], float)
    assert 0.0 <= captured["likelihood"] <= 1.0
    assert captured["likelihood"] == final["confidence"]
    assert isinstance(captured["seconds"], float)
    assert abs(captured["seconds"] - speech.duration(LONG)) < 1.5
    assert captured["siteId"] == SITE
    assert captured["sessionId"] is None
    partials = [m.json() for m in ha.on(PARTIAL, mark)]
    assert partials, "no partialTextCaptured"
    for p in partials:
        assert isinstance(p["text"], str)
        assert p["text"]
        assert p["siteId"] == SITE
        assert isinstance(p["likelihood"], float)
        assert isinstance(p["seconds"], float)
        assert "sessionId" in p


def test_hermes_is_off_unless_asked(start_worker: Callable[..., Worker], ha: Ha) -> None:
    """Without HERMES=1: no hermes/ topics out, and toggleOff is not obeyed."""
    w = start_worker()
    ha.wait_state(30, listening=True)
    mark = ha.mark()
    hermes(ha, "toggleOff", siteId=SITE)
    w.say(SHORT)
    ha.wait_topic(f"{TOPIC}/transcript/final", FINAL_S, mark)
    time.sleep(0.3)
    out = [m.topic for m in ha.messages if m.topic.startswith("hermes/asr/")]
    assert out == ["hermes/asr/toggleOff"]  # only what the test itself sent


def test_toggle_off_stops_transcripts_and_toggle_on_resumes(start_worker: Callable[..., Worker],
                                                            ha: Ha) -> None:
    """toggleOff for another site changes nothing; for ours it mutes (no textCaptured, no final,
    the state says muted); toggleOn brings transcripts back."""
    w = start_worker(HERMES="1")
    ha.wait_state(30, listening=True)

    mark = ha.mark()
    hermes(ha, "toggleOff", siteId="another-room", reason="dialogueSession")
    w.say(SHORT)
    ha.wait_topic(TEXT, FINAL_S, mark)
    assert ha.latest(f"{TOPIC}/state").json()["muted"] is False  # type: ignore[union-attr]

    mark = ha.mark()
    hermes(ha, "toggleOff", siteId=SITE, reason="dialogueSession")
    ha.wait_state(5, mark, muted=True)
    w.say(SHORT2)
    time.sleep(speech.duration(SHORT2) + 2.0)
    assert not ha.on(TEXT, mark)
    assert not ha.on(f"{TOPIC}/transcript/final", mark)

    mark = ha.mark()
    hermes(ha, "toggleOn", siteId=SITE)
    ha.wait_state(5, mark, muted=False)
    w.say(SHORT2)
    assert ha.wait_topic(TEXT, FINAL_S, mark).json()["siteId"] == SITE


def test_start_listening_opens_the_gate_and_echoes_the_session(start_worker: Callable[..., Worker],
                                                                ha: Ha) -> None:
    """startListening for another site opens nothing; for ours the gate opens at once (speech ON in
    silence) and the utterance's textCaptured carries the sessionId."""
    w = start_worker(HERMES="1")
    ha.wait_state(30, listening=True)

    mark = ha.mark()
    hermes(ha, "startListening", siteId="another-room", sessionId="not-ours")
    time.sleep(1.5)
    assert not [m for m in ha.on(f"{TOPIC}/speech", mark) if m.text == "ON"]

    mark = ha.mark()
    hermes(ha, "startListening", siteId=SITE, sessionId="in-silence")
    ha.wait_topic(f"{TOPIC}/speech", 3, mark, where=lambda m: m.text == "ON")

    # The gate waits the listen timeout (5 s) for speech to start; leave margin on a busy core.
    ha.wait_topic(f"{TOPIC}/speech", 12, mark, where=lambda m: m.text == "OFF")
    mark = ha.mark()
    w.say(SHORT)
    hermes(ha, "startListening", siteId=SITE, sessionId="session-42", stopOnSilence=True)
    captured = ha.wait_topic(TEXT, FINAL_S, mark).json()
    assert captured["sessionId"] == "session-42"
    assert captured["text"]
    assert ha.wait_topic(f"{TOPIC}/transcript/final", 5, mark).json()["text"] == captured["text"]


def test_stop_listening_ends_the_utterance(start_worker: Callable[..., Worker], ha: Ha) -> None:
    """stopListening (for our site and session) ends the utterance being spoken: speech OFF at once,
    and its textCaptured, with the sessionId, covers only what was said until then."""
    w = start_worker(HERMES="1")
    ha.wait_state(30, listening=True)
    mark = ha.mark()
    length = w.say(LONG)
    hermes(ha, "startListening", siteId=SITE, sessionId="cut-short")
    ha.wait_topic(f"{TOPIC}/speech", 3, mark, where=lambda m: m.text == "ON")
    time.sleep(1.0)
    hermes(ha, "stopListening", siteId="another-room", sessionId="cut-short")  # not ours: no effect
    time.sleep(0.3)
    assert not [m for m in ha.on(f"{TOPIC}/speech", mark) if m.text == "OFF"]
    t_stop = time.monotonic()
    hermes(ha, "stopListening", siteId=SITE, sessionId="cut-short")
    off = ha.wait_topic(f"{TOPIC}/speech", 3, mark, where=lambda m: m.text == "OFF")
    assert off.t - t_stop < 3.0
    captured = ha.wait(lambda m: m.topic == TEXT and m.json()["sessionId"] == "cut-short", FINAL_S, mark,
                       what="textCaptured of the session").json()
    assert 1.0 < captured["seconds"] < length - 2.0
    assert captured["text"]
