"""JSON from a peer is bounded before it is parsed: nesting, number size and NaN are answered with
``not_json`` by every dialect's decoder, never a RecursionError or ValueError past it; and no error
message echoes more than a short prefix of what the peer sent."""

from __future__ import annotations

import json

import pytest
from stt_core import jsonwire
from stt_core import protocol as p
from stt_core import session as s
from stt_core.errors import PeerError
from stt_server.handy_session import HandySession
from stt_server.hybrid_session import unpack
from stt_server.nemo_session import NemoSession

HOSTILE = [
    "[" * 3000,
    '{"type": "init", "x": ' + "[" * 5000 + "]" * 5000 + "}",
    '{"type": "init", "sample_rate": ' + "9" * 5000 + "}",
    '{"type": "init", "sample_rate": 1.' + "5" * 5000 + "}",
    '{"type": "init", "sample_rate": NaN}',
    '{"type": "init", "sample_rate": -Infinity}',
]


@pytest.mark.parametrize("text", HOSTILE, ids=["deep", "deep-inside", "big-int", "long-float", "nan", "inf"])
def test_every_decoder_answers_hostile_json_with_not_json(text: str):
    with pytest.raises(PeerError) as err:
        p.decode_client_message(text)
    assert err.value.code == "not_json"
    for machine in (HandySession(languages=("en",)), NemoSession(languages=("en",), model="m")):
        sent = [a.message for a in machine.receive_text(text, 0.0) if isinstance(a, s.Send)]
        # an error reply either way: Handy's 4 KiB bound on text catches the longest ones first
        assert [m.type for m in sent] == ["error"]
        assert getattr(sent[0], "code", None) in ("not_json", "message_too_large")
    meta = text.encode()[:1000]
    with pytest.raises(PeerError) as err:
        unpack(len(meta).to_bytes(4, "little") + meta)
    assert err.value.code == "bad_metadata"


def test_a_long_type_is_not_echoed_back():
    with pytest.raises(PeerError) as err:
        p.decode_client_message(json.dumps({"type": "x" * 60_000}))
    assert err.value.code == "unknown_type"
    assert len(err.value.message) < 120


def test_ordinary_messages_pass_untouched():
    assert jsonwire.loads('{"type": "init", "sample_rate": 16000, "x": [[1.5e3, null]]}') == {
        "type": "init", "sample_rate": 16000, "x": [[1500.0, None]]}


def test_text_frames_count_against_the_frame_rate():
    m = s.SessionMachine(limits=s.Limits(max_frames_per_s=20))
    out = [a for _ in range(25) for a in m.receive_text('{"type": "health"}', 0.5)]
    assert isinstance(out[-1], s.Close)
    assert out[-1].code is s.CloseCode.POLICY


def test_a_session_that_sends_no_audio_is_closed_by_the_idle_timer_whatever_else_it_sends():
    """Health requests every half second do not keep a session: only audio does (32 such sessions
    would otherwise hold every MAX_SESSIONS slot forever)."""
    import time

    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from harness.procs import start_server

    proc, port = start_server({"IDLE_TIMEOUT_S": "2"})
    try:
        with connect(f"ws://127.0.0.1:{port}/stt") as ws:
            ws.send(json.dumps({"type": "init", "sample_rate": 16000}))
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
            closed_with = None
            for _ in range(60):
                try:
                    ws.send('{"type": "health"}')
                    while True:
                        m = json.loads(ws.recv(timeout=0.5))
                        if m["type"] == "error":
                            assert m["code"] == "idle_timeout"
                except TimeoutError:
                    continue
                except ConnectionClosed:  # the close we wait for
                    closed_with = ws.close_code
                    break
                time.sleep(0.5)
            assert closed_with == 4408
    finally:
        proc.stop()
