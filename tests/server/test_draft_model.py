"""DRAFT_MODEL on a real stt-server and a real stt-worker: partials from the draft, finals from
WHISPER_MODEL's model, both named where clients and operators look.

No larger CTranslate2 Whisper model can be fetched here at test time, so the two models are two
differently configured copies of the embedded tiny.en (tests/support/draft_model.py): the draft
copy's tokenizer decodes "e" as "ə". Its text cannot hold a plain "e", so text from the draft is
visible wherever it lands, and a final holding "ə" would be draft text leaked into a final.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.procs import VENV_BIN, Mosquitto, Proc, free_port, start_server
from harness.speech import clip, refs, wer
from harness.stt_client import SttSession, health, segment, ws_url
from tests.server.test_wyoming import describe, transcribe
from tests.support.draft_model import MARK, marked_draft_copy
from tests.support.server_http import metrics
from tests.worker import helpers as h

CLIP = "LJ001-0011"  # 5 s: several partials at real time


@pytest.fixture(scope="module")
def draft_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return marked_draft_copy(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def hybrid(draft_dir: Path) -> Iterator[tuple[Proc, int, int]]:
    """A server with the draft model beside the embedded one, its Wyoming listener on a free port."""
    wyoming = free_port()
    proc, port = start_server({"DRAFT_MODEL": str(draft_dir), "WYOMING_PORT": str(wyoming)})
    yield proc, port, wyoming
    proc.stop()


def test_health_ready_and_info_name_both_models(hybrid: tuple[Proc, int, int], draft_dir: Path) -> None:
    """/health and the `/stt` health reply and `ready` keep ``model`` for the finals' model and add
    ``draft_model``; Wyoming's ``info`` describes the model with its draft. The start-up log names
    both."""
    proc, port, wyoming = hybrid
    got = health(port)
    assert got["model"] == "tiny.en (embedded)"
    assert got["draft_model"] == draft_dir.name
    with SttSession(ws_url(port)) as sess:
        sess.init(16000)
        ready = sess.wait_for("ready", 10).msg
        assert ready["model"] == "tiny.en (embedded)"
        assert ready["draft_model"] == draft_dir.name
        sess.send_json({"type": "health"})
        reply = sess.wait_for("health", 10).msg
        assert reply["draft_model"] == draft_dir.name
    info = asyncio.run(describe(wyoming))
    (model,) = info.asr[0].models
    assert model.name == "tiny.en (embedded)"
    assert model.description is not None
    assert draft_dir.name in model.description
    (loaded,) = [e for e in proc.json_events() if e.get("event") == "model_loaded"]
    assert loaded["model"] == "tiny.en (embedded)"
    assert loaded["draft_model"] == draft_dir.name


def test_stt_partials_are_the_drafts_and_the_final_is_not(hybrid: tuple[Proc, int, int],
                                                          draft_dir: Path) -> None:
    """A sentence streamed in real time on `/stt`: every partial is the draft's text (no plain "e",
    some "ə"), the final has none of the draft's and is right; /metrics counts the partial decodes
    under the draft model and the final under the embedded one."""
    _, port, _ = hybrid
    before = metrics(port)
    with SttSession(ws_url(port)) as sess:
        sess.init(16000)
        sess.wait_for("ready", 10)
        result = segment(sess, clip(CLIP), timeout=60)
    texts = [p["text"] for p in result.partials]
    assert texts, "no partial while a 5 s sentence was streamed"
    assert all("e" not in t for t in texts), texts
    assert any(MARK in t for t in texts), texts
    final = result.final["text"]
    assert MARK not in final
    assert wer([(refs()[CLIP], final)]) < 0.2, final
    assert result.final["model"] == "tiny.en (embedded)"
    after = metrics(port)

    def grew(kind: str, model: str) -> float:
        key = f'stt_decodes_total{{kind="{kind}",model="{model}"}}'
        return after.get(key, 0) - before.get(key, 0)

    assert grew("partial", draft_dir.name) >= len(texts)
    assert grew("partial", "tiny.en (embedded)") == 0
    assert grew("final", "tiny.en (embedded)") + grew("speculative", "tiny.en (embedded)") >= 1
    assert grew("final", draft_dir.name) == 0


def test_wyoming_chunks_are_the_drafts_and_the_transcript_is_not(hybrid: tuple[Proc, int, int]) -> None:
    """Wyoming's streamed transcript chunks are partials (the draft's); its transcript is a final."""
    _, _, wyoming = hybrid
    heard = asyncio.run(transcribe(wyoming, clip(CLIP)))
    assert heard.chunks, heard.types
    assert all("e" not in c for c in heard.chunks), heard.chunks
    assert MARK not in heard.text
    assert wer([(refs()[CLIP], heard.text)]) < 0.2, heard.text


def test_a_missing_draft_model_exits_78_naming_the_variable(tmp_path: Path) -> None:
    """DRAFT_MODEL naming a directory that is not there: exit 78, one line, DRAFT_MODEL first."""
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(free_port()), "DEVICE": "cpu", "WHISPER_MODEL": "",
           "STT_TOKEN": "", "LOG_FORMAT": "json", "DRAFT_MODEL": str(tmp_path / "no" / "such-model")}
    done = subprocess.run([str(VENV_BIN / "stt-server")], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert done.returncode == 78, done.stdout + done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("stt-server: configuration error: DRAFT_MODEL"), lines[0]


def test_worker_local_backend_with_a_draft(broker: Mosquitto, tmp_path: Path, draft_dir: Path) -> None:
    """STT_BACKEND=local with DRAFT_MODEL: the worker transcribes a recording played in real time;
    its partials on MQTT are the draft's, its finals are the embedded model's (and name it), and its
    log names both models."""
    wav = h.speech_wav(tmp_path / "draft.wav", [CLIP], gap_s=1.0)
    col = h.Collector(broker.port)
    w = h.start_worker(h.worker_env(broker.port, wav, AUDIO_REALTIME="1", DRAFT_MODEL=str(draft_dir)))
    try:
        finals = col.wait_finals(1, 90, w)
        rc = h.wait_exit(w, 60)
    finally:
        w.stop()
        col.close()
    assert rc == 0, h.tail(w)
    (final,) = finals
    assert MARK not in final["text"]
    assert wer([(refs()[CLIP], final["text"])]) < 0.2, final
    assert final["model"] == "tiny.en (embedded)"
    partials = [m.json()["text"] for m in col.on("/transcript/partial")]
    assert partials, "no partial from the local backend"
    assert all("e" not in t for t in partials), partials
    assert any(MARK in t for t in partials), partials
    (models,) = h.events(w, "local_models")
    assert models["model"] == "tiny.en (embedded)"
    assert models["draft_model"] == draft_dir.name
    assert models["partials_by"] == draft_dir.name
    states = [m.json() for m in col.on("/state")]
    assert states[-1]["model"] == "tiny.en (embedded)", states[-1]
    assert states[-1]["draft_model"] == draft_dir.name, states[-1]


def test_worker_state_names_the_servers_two_models(hybrid: tuple[Proc, int, int], broker: Mosquitto,
                                                    tmp_path: Path, draft_dir: Path) -> None:
    """STT_BACKEND=ws on a server with DRAFT_MODEL: the worker's retained state names the finals' model
    and the draft (from the server's ``ready``), and the final names the finals' model."""
    _, port, _ = hybrid
    wav = h.speech_wav(tmp_path / "ws.wav", [CLIP], gap_s=1.0)
    col = h.Collector(broker.port)
    w = h.start_worker(h.worker_env(broker.port, wav, AUDIO_REALTIME="1", STT_BACKEND="ws",
                                    WS_URL=ws_url(port)))
    try:
        (final,) = col.wait_finals(1, 90, w)
        rc = h.wait_exit(w, 60)
    finally:
        w.stop()
        col.close()
    assert rc == 0, h.tail(w)
    assert final["model"] == "tiny.en (embedded)", final
    assert MARK not in final["text"], final
    named = [m.json() for m in col.on("/state") if m.json().get("draft_model")]
    assert named, [m.json() for m in col.on("/state")]
    assert named[-1]["model"] == "tiny.en (embedded)", named[-1]
    assert named[-1]["draft_model"] == draft_dir.name, named[-1]


def test_worker_missing_draft_model_exits_78(broker: Mosquitto, tmp_path: Path) -> None:
    """A worker whose DRAFT_MODEL is not there stops with 78, the error naming DRAFT_MODEL."""
    wav = h.speech_wav(tmp_path / "x.wav", [CLIP], gap_s=0.5)
    w = h.start_worker(h.worker_env(broker.port, wav, DRAFT_MODEL=str(tmp_path / "no" / "such-model")))
    rc = h.wait_exit(w, 60)
    assert rc == 78, h.tail(w)
    assert "DRAFT_MODEL" in h.tail(w)
