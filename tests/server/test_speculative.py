"""The `pause` / `resume` extension (protocol 2) against the real server: the final's decode starts at
`pause`, so the final can follow `end` at once; `resume` drops it; a client that never pauses is
unaffected."""

from __future__ import annotations

import time

import numpy as np

from harness.speech import clip, refs, wer
from harness.stt_client import SttSession, ws_url


def _ready(sess: SttSession) -> dict:
    return sess.wait_for("ready", timeout=10).msg


def test_pause_then_end_gives_the_speculative_final(server):
    """A pause in the trailing silence starts the final; `end` after the hangover returns that final,
    marked speculative, with the clip's text."""
    _, port = server
    pcm = clip("LJ001-0004")
    tail = np.zeros(16000 * 6 // 10, dtype=np.int16)  # 600 ms of hangover silence
    with SttSession(ws_url(port)) as sess:
        sess.init(16000, session_id="spec")
        assert _ready(sess)["protocol"] >= 2
        sess.send_audio(pcm)
        sess.send_audio(tail[:2400])  # 150 ms of silence, then the gate would say pause
        sess.send_json({"type": "pause"})
        sess.send_audio(tail[2400:])
        sess.end()
        final = sess.wait_for("final", timeout=30).msg
    assert final["speculative"] is True
    assert wer([(refs()["LJ001-0004"], final["text"])]) <= 0.15


def test_resume_drops_the_speculation_and_the_final_covers_everything(server):
    """Speech after a pause (resume) makes the early decode stale: the final then covers both parts."""
    _, port = server
    first, second = clip("LJ001-0002"), clip("LJ001-0008")
    with SttSession(ws_url(port)) as sess:
        sess.init(16000)
        _ready(sess)
        sess.send_audio(first)
        sess.send_json({"type": "pause"})
        sess.send_audio(np.zeros(4800, dtype=np.int16))
        sess.send_json({"type": "resume"})
        sess.send_audio(second)
        t_end = sess.end()
        final = sess.wait_for("final", timeout=30)
    assert final.msg["speculative"] is False
    assert final.t > t_end
    ref = refs()["LJ001-0002"] + " " + refs()["LJ001-0008"]
    assert wer([(ref, final.msg["text"])]) <= 0.2, final.msg["text"]


def test_a_client_without_pause_is_unaffected(server):
    """A client written only from the original protocol never sends pause: finals are not speculative."""
    _, port = server
    with SttSession(ws_url(port)) as sess:
        sess.init(16000)
        sess.send_audio(clip("LJ001-0008"), speed=None)
        time.sleep(0.2)
        sess.end()
        final = sess.wait_for("final", timeout=30).msg
    assert final.get("speculative", False) is False
    assert wer([(refs()["LJ001-0008"], final["text"])]) <= 0.25, final["text"]
