"""stt-worker end to end: a WAV of real speech in, everything the worker promises on a real Mosquitto,
with each backend (the embedded model in-process; a real stt-server over loopback)."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from harness import speech
from harness.procs import Mosquitto, Proc
from tests.worker import helpers as h

FAST_IDS = [*h.MEDIUM, *h.SHORT]  # five sentences, 27 s of audio
REALTIME_IDS = ["LJ001-0004", "LJ001-0008"]
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|\+00:00)$")
STATE_FIELDS = {"backend", "backend_connected", "listening", "model", "version"}


def backend_env(backend: str, server: tuple[Proc, int], wyoming_port: int) -> dict[str, str]:
    if backend == "local":
        return {"STT_BACKEND": "local"}
    # A generous final timeout: these tests check the server's finals, and a loaded CI core must not
    # turn one into a (correct, but different) local fallback.
    timeouts = {"STT_FALLBACK": "local", "WS_FINAL_TIMEOUT_S": "20", "WS_CONNECT_TIMEOUT_S": "15"}
    if backend == "wyoming":
        return {"STT_BACKEND": "wyoming", "WYOMING_URI": f"tcp://127.0.0.1:{wyoming_port}", **timeouts}
    return {"STT_BACKEND": "ws", "WS_URL": f"ws://127.0.0.1:{server[1]}/stt", **timeouts}


def parse_time(value: str) -> datetime:
    assert ISO_UTC.match(value), f"not an ISO-8601 UTC time: {value!r}"
    t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert t.utcoffset() == timedelta(0)
    return t


def check_final_fields(f: dict[str, Any], backend: str, t_from: float, t_to: float) -> None:
    missing = h.FINAL_FIELDS - f.keys()
    assert not missing, f"final lacks {missing}: {f}"
    assert f["site_id"] == h.SITE, f
    assert re.fullmatch(r"[0-9a-f]{8,}", f["utterance_id"]), f
    assert f["backend"] == backend, f
    assert f.get("fallback") is False, f
    assert f["model"] == "tiny.en (embedded)", f
    assert f["language"] == "en", f
    assert isinstance(f["confidence"], float), f
    assert 0.0 < f["confidence"] <= 1.0, f
    assert isinstance(f["audio_s"], float | int), f
    assert 0.5 < f["audio_s"] < 30, f
    assert isinstance(f["latency_ms"], int), f
    assert 0 <= f["latency_ms"] < 20_000, f
    started, ended = parse_time(f["started_at"]), parse_time(f["ended_at"])
    # started_at is set back by the pre-roll held when the gate opened (stream time): with
    # AUDIO_REALTIME=0 that can reach just before the worker started
    lo, hi = datetime.fromtimestamp(t_from - 0.5, UTC), datetime.fromtimestamp(t_to, UTC)
    assert lo <= started <= ended <= hi, (f["started_at"], f["ended_at"], lo, hi)


@pytest.fixture(scope="module")
def fast_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return h.speech_wav(tmp_path_factory.mktemp("e2e") / "five.wav", FAST_IDS, gap_s=1.5)


@pytest.mark.parametrize("backend", ["local", "ws", "wyoming"])
def test_every_sentence_of_a_wav_is_transcribed_and_published(
        broker: Mosquitto, server: tuple[Proc, int], wyoming_port: int, fast_wav: Path, backend: str) -> None:
    """AUDIO_REALTIME=0, five sentences: one final per sentence (WER <= 15%, in the order spoken), each
    with every documented field (ISO-8601 UTC times within the run, the backend that made it, the model),
    no error events, and the worker exits 0 by itself at the end of the file, leaving retained
    availability=offline, speech=OFF and a state that is no longer listening for a new subscriber."""
    col = h.Collector(broker.port)
    t0 = time.time()
    w = h.start_worker(h.worker_env(broker.port, fast_wav, **backend_env(backend, server, wyoming_port)))
    try:
        assert h.wait_exit(w, 120) == 0, h.tail(w)
    finally:
        w.stop()
    t1 = time.time()
    time.sleep(0.3)
    col.close()
    finals = col.finals()
    h.assert_transcribed(FAST_IDS, finals)
    for f in finals:
        check_final_fields(f, backend, t0, t1)
    assert len({f["utterance_id"] for f in finals}) == len(finals)
    assert col.errors() == []
    after = h.retained(broker.port)
    assert after[f"{h.TOPIC}/availability"].payload == "offline"
    assert after[f"{h.TOPIC}/speech"].payload == "OFF"
    state = after[f"{h.TOPIC}/state"].json()
    assert state.keys() >= STATE_FIELDS, state
    assert state["listening"] is False, state


@pytest.mark.parametrize("backend", ["local", "ws", "wyoming"])
def test_real_time_run_with_partials_and_live_retained_state(
        broker: Mosquitto, server: tuple[Proc, int], wyoming_port: int, tmp_path: Path, backend: str) -> None:
    """AUDIO_REALTIME=1 (the default): the file plays in real time. While a sentence is spoken, partials
    flow (each naming the utterance and the backend) before its final, and a NEW subscriber is told
    (retained) availability=online, speech=ON and the state {backend, backend_connected: true,
    listening: true, model, version}. speech goes ON/OFF once per sentence. started_at..ended_at spans
    the sentence on the wall clock. After the file the worker exits 0 by itself, and a new subscriber
    then sees availability=offline and speech=OFF."""
    wav = h.speech_wav(tmp_path / "rt.wav", REALTIME_IDS, gap_s=1.5)
    col = h.Collector(broker.port)
    env = h.worker_env(broker.port, wav, AUDIO_REALTIME="1", **backend_env(backend, server, wyoming_port))
    t0 = time.time()
    w = h.start_worker(env)
    try:
        col.wait_for(lambda c: bool(c.on("/transcript/partial")), 60, "a partial", w)
        live = h.retained(broker.port, settle=0.5)
        rc = h.wait_exit(w, 60)
    finally:
        w.stop()
    took = time.time() - t0
    t1 = time.time()
    time.sleep(0.3)
    col.close()
    assert rc == 0, h.tail(w)
    audio_s = h.wav_seconds(wav)
    assert took >= audio_s * 0.95, f"{took:.1f} s for {audio_s:.1f} s of audio: not real time"

    assert live[f"{h.TOPIC}/availability"].payload == "online"
    assert live[f"{h.TOPIC}/speech"].payload == "ON"
    state = live[f"{h.TOPIC}/state"].json()
    assert state.keys() >= STATE_FIELDS, state
    assert state["backend"] == backend
    assert state["backend_connected"] is True
    assert state["listening"] is True
    assert state["model"] == "tiny.en (embedded)", state
    assert state["version"], state

    finals = col.finals()
    h.assert_transcribed(REALTIME_IDS, finals)
    for f in finals:
        check_final_fields(f, backend, t0, t1)
    for f, ref in zip(finals, REALTIME_IDS, strict=False):
        span = (parse_time(f["ended_at"]) - parse_time(f["started_at"])).total_seconds()
        assert speech.duration(ref) - 1.0 <= span <= speech.duration(ref) + 2.0, (span, f)

    partials = [m.json() for m in col.on("/transcript/partial")]
    assert all(p["backend"] == backend and p["text"] for p in partials), partials
    final_at = {m.json()["utterance_id"]: m.t for m in col.on("/transcript/final")}
    for m in col.on("/transcript/partial"):
        uid = m.json()["utterance_id"]
        assert uid in final_at, f"partial of an unknown or finished utterance: {m}"
        assert m.t < final_at[uid], f"partial of an unknown or finished utterance: {m}"
    # the 5 s sentence is long enough for partials with either backend
    assert finals[0]["utterance_id"] in {p["utterance_id"] for p in partials}, partials
    speech_flags = col.payloads("/speech")
    if speech_flags[:1] == ["OFF"]:  # the retained state announced at start: nobody speaking yet
        speech_flags = speech_flags[1:]
    assert speech_flags == ["ON", "OFF"] * len(finals), col.payloads("/speech")
    avail = col.payloads("/availability")
    assert avail[0] == "online", avail
    assert avail[-1] == "offline", avail

    after = h.retained(broker.port)
    assert after[f"{h.TOPIC}/availability"].payload == "offline"
    assert after[f"{h.TOPIC}/speech"].payload == "OFF"
    assert json.loads(after[f"{h.TOPIC}/state"].payload)["listening"] is False
