"""Every dialect of stt-server in one run, against one server: ``/stt`` (ours), seed 002's NeMo stream
(``/api/v1/audio/stream/transcribe``), Wyoming (``WYOMING_PORT``), seed 001's Handy ``/ws``, seed 003's
hybrid gateway ``/ws/transcribe`` and seed 004's Socket.IO server (``SOCKETIO_PORT``).

One server is started the way the rig starts one (``harness.procs.start_server``), with ``STT_TOKEN``,
``WYOMING_PORT``, ``SOCKETIO_PORT`` and ``VAD_HANGOVER_MS`` set by the bench. Each of the plan's latency
clips is streamed into each dialect in real time, 20 ms frames, one stream at a time: clip by clip, every
dialect in turn (so a slow spell of the shared machine falls on all dialects alike, not on one).

How an utterance ends differs by dialect, and the figures say which:

* client-ended (``/stt`` ``end``, NeMo ``commit``, Wyoming ``audio-stop``): sent right after the clip's
  last frame (the file's own trailing silence included);
* server-endpointed (Handy, hybrid, Socket.IO): the client keeps streaming silence, as an open
  microphone does, and the server's voice gate ends the utterance after ``VAD_HANGOVER_MS`` of it.

Per clip: end of speech (``clips.speech_bounds``; clip second ``t`` is due at ``t0 + t``, ``t0`` the
moment the first frame went out) -> arrival of the clip's last final; for the endpointed dialects also
that minus the hangover, for the client-ended ones the time from ``end``/``commit``/``audio-stop`` to
the final; speech onset -> first partial (Wyoming: ``transcript-chunk``); the text of the finals, for
WER against refs.tsv. Medians are given as ratios to ``/stt``'s median in the same run and to the
median offline decode of the baseline (bench/baseline.py), because the machine is shared and noisy.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import os
import secrets
import shutil
import socket
import statistics
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from stt_server.http import HANDY_PATH, HYBRID_PATH, NEMO_PATH, WS_PATH
from stt_server.settings import ServerSettings

from harness.procs import Proc, free_port, start_server, wait_port
from harness.speech import wer
from harness.stt_client import Received, SttSession, pcm_frames, ws_url

from .baseline import Baseline
from .clips import RATE, Clip, load_all, spread
from .plan import Plan
from .wyoming_client import AUDIO, read_event, write_event

FRAME_MS = 20
FRAME_S = FRAME_MS / 1000
SILENCE = bytes(RATE * FRAME_MS // 1000 * 2)
# after the clip's final has come, this much more silence: a second final (a sentence the gate split
# at a pause just before its end) is still counted
GRACE_S = 0.3
PAUSE_S = 0.3  # between two streams
SOCKETIO_WAIT_S = 5.0  # the Socket.IO listener is up by the time /stt's is, or it is not there

DIALECTS = ("stt", "nemo", "wyoming", "handy", "hybrid", "socketio")
ENDPOINTED = frozenset({"handy", "hybrid", "socketio"})
LABELS = {
    "stt": f"/stt (ours, `{WS_PATH}`)",
    "nemo": f"NeMo, seed 002 (`{NEMO_PATH}`)",
    "wyoming": "Wyoming (WYOMING_PORT)",
    "handy": f"Handy, seed 001 (`{HANDY_PATH}`)",
    "hybrid": f"hybrid gateway, seed 003 (`{HYBRID_PATH}`)",
    "socketio": "Socket.IO, seed 004 (SOCKETIO_PORT)",
}
ENDS = {
    "stt": '`{"type":"end"}`',
    "nemo": '`{"type":"commit"}`',
    "wyoming": "`audio-stop`",
    "handy": "server's gate",
    "hybrid": "server's gate",
    "socketio": "server's gate",
}


def hangover_ms() -> int:
    """VAD_HANGOVER_MS as the bench's server will run it: the environment's, else the default."""
    default = ServerSettings.model_fields["vad_hangover_ms"].default
    return int(os.environ.get("VAD_HANGOVER_MS") or default)


# ---- what a client saw ----------------------------------------------------------------------------


@dataclass
class Heard:
    """One stream's events, time.monotonic()."""

    t0: float = 0.0  # the first frame went out: clip second t was due at t0 + t
    ended: float | None = None  # end / commit / audio-stop sent (client-ended dialects)
    partials: list[float] = field(default_factory=list)
    finals: list[tuple[float, str]] = field(default_factory=list)


@dataclass
class Take:
    """One clip through one dialect."""

    dialect: str
    clip: str
    finals: int = 0
    text: str = ""
    end_to_final_s: float | None = None  # end of speech -> the clip's last final
    minus_hangover_s: float | None = None  # endpointed dialects: the same minus VAD_HANGOVER_MS
    after_end_s: float | None = None  # client-ended dialects: end/commit/audio-stop -> last final
    first_partial_s: float | None = None  # speech onset -> first partial
    partials: int = 0
    error: str | None = None


def settled(heard: Heard, c: Clip) -> bool:
    """An endpointed stream is done: a final came after the clip's speech ended, GRACE_S ago."""
    after = [t for t, _ in heard.finals if t >= heard.t0 + c.end_s]
    return bool(after) and time.monotonic() >= after[-1] + GRACE_S


def schedule(c: Clip, heard: Heard, endpointed: bool, timeout: float) -> Iterator[tuple[float, bytes]]:
    """(due time, frame): the clip's frames, then for an endpointed dialect silence until the server has
    ended the utterance (or ``timeout`` after the clip). Sets ``heard.t0`` when first asked."""
    frames = pcm_frames(c.pcm, RATE, FRAME_MS)
    heard.t0 = time.monotonic()
    for i, frame in enumerate(frames):
        yield heard.t0 + i * FRAME_S, frame
    if not endpointed:
        return
    i, stop = len(frames), heard.t0 + c.duration_s + timeout
    while not settled(heard, c) and time.monotonic() < stop:
        yield heard.t0 + i * FRAME_S, SILENCE
        i += 1


def play(c: Clip, heard: Heard, send: Callable[[bytes], None], endpointed: bool, timeout: float) -> None:
    for due, frame in schedule(c, heard, endpointed, timeout):
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        send(frame)


def received(sess: SttSession) -> list[Received]:
    with sess._cond:
        return list(sess.received)


def watch(sess: SttSession, heard: Heard, partial: str, final: str) -> Callable[[], None]:
    """Copy a session's partials and finals into ``heard`` as they come (for ``settled``), on a
    thread; the returned function stops it and copies what is left."""
    done = threading.Event()

    def sync() -> None:
        got = received(sess)
        heard.partials[:] = [r.t for r in got if r.type == partial and r.msg.get("text")]
        heard.finals[:] = [(r.t, str(r.msg.get("text", ""))) for r in got if r.type == final]

    def run() -> None:
        while not done.wait(0.02):
            sync()

    thread = threading.Thread(target=run, daemon=True, name="bench-dialect-watch")
    thread.start()

    def stop() -> None:
        done.set()
        thread.join(2)
        sync()

    return stop


# ---- one client per dialect, each written from its seed ------------------------------------------


@dataclass(frozen=True)
class Server:
    port: int
    wyoming_port: int
    socketio_port: int
    token: str


def stt(srv: Server, c: Clip, timeout: float) -> Heard:
    heard = Heard()
    with SttSession(ws_url(srv.port, WS_PATH), bearer=srv.token) as sess:
        sess.init(RATE)
        sess.wait_for("ready", 10)
        mark = sess.mark()
        play(c, heard, sess.send_bytes, False, timeout)
        heard.ended = sess.end()
        sess.wait_for("final", timeout, after=mark)
        got = received(sess)[mark:]
    heard.partials = [r.t for r in got if r.type == "partial" and r.msg.get("text")]
    heard.finals = [(r.t, str(r.msg.get("text", ""))) for r in got if r.type == "final"]
    return heard


def float_audio(frame: bytes) -> str:
    """An int16 frame as seed 002's audio message carries it: base64 of float32 samples."""
    x = np.frombuffer(frame, dtype="<i2").astype("<f4") / np.float32(32768.0)
    return base64.b64encode(x.astype("<f4").tobytes()).decode()


def nemo(srv: Server, c: Clip, timeout: float) -> Heard:
    heard = Heard()
    with SttSession(ws_url(srv.port, NEMO_PATH, token=srv.token)) as sess:
        sess.send_json({"type": "config", "sample_rate": RATE, "language": "en", "enable_partial": True})
        sess.wait_for("status", 10)
        mark = sess.mark()
        play(c, heard, lambda fr: sess.send_json({"type": "audio", "data": float_audio(fr)}), False, timeout)
        sess.send_json({"type": "commit"})
        heard.ended = time.monotonic()
        full = sess.wait_for("full_transcript", timeout, after=mark)
        got = received(sess)[mark:]
    heard.partials = [r.t for r in got if r.type == "partial" and r.msg.get("text")]
    heard.finals = [(r.t, str(r.msg.get("text", ""))) for r in got if r.type == "final"]
    if not heard.finals and full.msg.get("text"):
        heard.finals = [(full.t, str(full.msg["text"]))]
    return heard


def handy(srv: Server, c: Clip, timeout: float) -> Heard:
    heard = Heard()
    with SttSession(ws_url(srv.port, HANDY_PATH, token=srv.token)) as sess:
        sess.send_json({"language": "en"})
        stop = watch(sess, heard, "partial", "final")
        try:
            play(c, heard, sess.send_bytes, True, timeout)
        finally:
            stop()
    return heard


HYBRID_META = json.dumps({"sampleRate": RATE}).encode()


def hybrid(srv: Server, c: Clip, timeout: float) -> Heard:
    heard = Heard()
    header = struct.pack("<i", len(HYBRID_META)) + HYBRID_META
    with SttSession(ws_url(srv.port, HYBRID_PATH, token=srv.token)) as sess:
        stop = watch(sess, heard, "realtime", "fullSentence")
        try:
            play(c, heard, lambda fr: sess.send_bytes(header + fr), True, timeout)
        finally:
            stop()
    return heard


def wyoming(srv: Server, c: Clip, timeout: float) -> Heard:
    """Home Assistant's way (bench/wyoming_client.py's events), with this module's clock."""
    heard = Heard()
    with socket.create_connection(("127.0.0.1", srv.wyoming_port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(timeout + c.duration_s + 10)
        reader = sock.makefile("rb")

        def read() -> None:
            while (event := read_event(reader)) is not None:
                kind, data = event
                if kind == "transcript-chunk":
                    heard.partials.append(time.monotonic())
                elif kind == "transcript":
                    heard.finals.append((time.monotonic(), str(data.get("text", "")).strip()))
                    return

        listener = threading.Thread(target=read, daemon=True, name="bench-wyoming-read")
        listener.start()
        write_event(sock, "transcribe", {"language": "en"})
        write_event(sock, "audio-start", AUDIO)
        play(c, heard, lambda fr: write_event(sock, "audio-chunk", AUDIO, fr), False, timeout)
        write_event(sock, "audio-stop", {})
        heard.ended = time.monotonic()
        listener.join(timeout)
    if not heard.finals:
        raise TimeoutError(f"no transcript within {timeout} s of audio-stop")
    return heard


def socketio_client(srv: Server, c: Clip, timeout: float) -> Heard:
    """Seed 004's audio client: ``audio_data`` {clientId, audio: PCM16 bytes}; ``transcription``
    {text, duration, client_id, ts} back (to the clientId's room and to the sender: one copy counted),
    and our extension ``partial_transcription``."""
    return asyncio.run(_socketio(srv, c, final_wait_s=timeout))


async def _socketio(srv: Server, c: Clip, final_wait_s: float) -> Heard:
    import socketio  # the bench extra: python-socketio[asyncio_client]

    heard = Heard()
    seen: set[str] = set()
    sio = socketio.AsyncClient(reconnection=False)

    def once(data: Any) -> bool:
        key = json.dumps(data, sort_keys=True, default=str)
        if key in seen:
            return False
        seen.add(key)
        return True

    async def on_transcription(data: Any) -> None:
        if isinstance(data, dict) and once(data):
            heard.finals.append((time.monotonic(), str(data.get("text", "")).strip()))

    async def on_partial(data: Any) -> None:
        if isinstance(data, dict) and data.get("text"):
            heard.partials.append(time.monotonic())

    sio.on("transcription", on_transcription)
    sio.on("partial_transcription", on_partial)
    await sio.connect(f"http://127.0.0.1:{srv.socketio_port}?token={srv.token}",
                      transports=["websocket"], auth={"token": srv.token}, wait_timeout=10)
    client_id = f"bench-{c.id}-{time.time_ns()}"
    try:
        for due, frame in schedule(c, heard, True, final_wait_s):
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await sio.emit("audio_data", {"clientId": client_id, "audio": frame})
    finally:
        await sio.disconnect()
    return heard


CLIENTS: dict[str, Callable[[Server, Clip, float], Heard]] = {
    "stt": stt,
    "nemo": nemo,
    "wyoming": wyoming,
    "handy": handy,
    "hybrid": hybrid,
    "socketio": socketio_client,
}


# ---- figures --------------------------------------------------------------------------------------


def take(dialect: str, c: Clip, heard: Heard, hang_s: float) -> Take:
    t = Take(dialect, c.id, finals=len(heard.finals), partials=len(heard.partials))
    t.text = " ".join(text for _, text in heard.finals if text).strip()
    if heard.finals:
        last = heard.finals[-1][0]
        t.end_to_final_s = last - (heard.t0 + c.end_s)
        if dialect in ENDPOINTED:
            t.minus_hangover_s = t.end_to_final_s - hang_s
        elif heard.ended is not None:
            t.after_end_s = last - heard.ended
    if heard.partials:
        t.first_partial_s = min(heard.partials) - (heard.t0 + c.onset_s)
    return t


def comparable(d: str, s: dict[str, Any]) -> float | None:
    """The median that compares across dialects: the hangover taken off for the endpointed ones (it is
    silence the server waits through by design, a setting, not a cost)."""
    p50: float | None = (s["minus_hangover_s"] if d in ENDPOINTED else s["end_to_final_s"])["p50"]
    return p50


def summarize(takes: list[Take], clips: list[Clip], hang_ms: int, base: Baseline | None) -> dict[str, Any]:
    refs = {c.id: c.ref for c in clips}
    decode = [base.decode_s[c.id] for c in clips if base and c.id in base.decode_s]
    base_p50 = statistics.median(decode) if decode else None
    out: dict[str, Any] = {}
    for d in DIALECTS:
        mine = [t for t in takes if t.dialect == d]
        if not mine:
            continue
        ok = [t for t in mine if t.error is None]
        out[d] = {
            "label": LABELS[d],
            "ends": ENDS[d],
            "endpointed": d in ENDPOINTED,
            "clips": len(mine),
            "with_final": sum(1 for t in ok if t.finals),
            "finals": sum(t.finals for t in ok),
            "errors": len(mine) - len(ok),
            "error_samples": sorted({t.error for t in mine if t.error})[:3],
            "end_to_final_s": spread(t.end_to_final_s for t in ok),
            "minus_hangover_s": spread(t.minus_hangover_s for t in ok),
            "after_end_s": spread(t.after_end_s for t in ok),
            "first_partial_s": spread(t.first_partial_s for t in ok),
            # a clip that failed counts with no words: a dialect cannot look better by losing clips
            "wer": wer([(refs[t.clip], t.text) for t in mine]),
            "takes": [asdict(t) for t in mine],
        }
    stt_p50 = out.get("stt", {}).get("end_to_final_s", {}).get("p50")
    def ratio(x: float | None, to: float | None) -> float | None:
        return x / to if x is not None and to else None

    for d, s in out.items():
        # the comparable figure (minus the hangover where the server ends utterances), and the raw one
        s["ratio_to_stt"] = ratio(comparable(d, s), stt_p50)
        s["ratio_to_baseline"] = ratio(comparable(d, s), base_p50)
        s["raw_ratio_to_stt"] = ratio(s["end_to_final_s"]["p50"], stt_p50)
        s["raw_ratio_to_baseline"] = ratio(s["end_to_final_s"]["p50"], base_p50)
    return {"dialects": out, "stt_p50_s": stt_p50, "baseline_decode_p50_s": base_p50}


# ---- the run --------------------------------------------------------------------------------------


def start(hang_ms: int) -> tuple[Proc, Server]:
    srv = Server(free_port(), free_port(), free_port(), secrets.token_urlsafe(18))
    env = {
        "STT_TOKEN": srv.token,
        "WYOMING_PORT": str(srv.wyoming_port),
        "SOCKETIO_PORT": str(srv.socketio_port),
        "VAD_HANGOVER_MS": str(hang_ms),
        "LOG_LEVEL": "info",
    }
    proc, _ = start_server(env, port=srv.port)
    wait_port(srv.wyoming_port, 30, proc)
    return proc, srv


def socketio_up(proc: Proc, srv: Server) -> str | None:
    """None when the Socket.IO listener answers, else why it is left out of the run."""
    try:
        wait_port(srv.socketio_port, SOCKETIO_WAIT_S, proc)
    except TimeoutError:
        return (f"nothing listened on SOCKETIO_PORT ({srv.socketio_port}) within {SOCKETIO_WAIT_S:g} s "
                "of the server's start: this server build has no Socket.IO listener")
    if importlib.util.find_spec("socketio") is None or importlib.util.find_spec("aiohttp") is None:
        return "python-socketio's asyncio client is not installed; make setup installs the bench extra"
    return None


def run(
    plan: Plan, base: Baseline | None, out_dir: Path, log: Callable[[str], None] = print
) -> dict[str, Any]:
    clips = load_all(plan.latency_clips)
    hang_ms = hangover_ms()
    hang_s = hang_ms / 1000
    timeout = plan.final_timeout_s
    try:
        proc, srv = start(hang_ms)
    except (RuntimeError, TimeoutError) as exc:  # the other measurements of the run are kept
        log(f"dialects: the server did not start: {exc}")
        return {"error": f"the server did not start: {exc}"[:500], "hangover_ms": hang_ms}
    skipped: dict[str, str] = {}
    takes: list[Take] = []
    t_start = time.monotonic()
    try:
        if (why := socketio_up(proc, srv)) is not None:
            skipped["socketio"] = why
        dialects = [d for d in DIALECTS if d not in skipped]
        stt(srv, clips[0], timeout)  # warm-up: the engine's first decodes are no dialect's latency
        for c in clips:
            for d in dialects:
                try:
                    heard = CLIENTS[d](srv, c, timeout)
                    takes.append(take(d, c, heard, hang_s))
                except Exception as exc:  # a failed stream is a figure of the dialect, not the run's end
                    takes.append(Take(d, c.id, error=f"{type(exc).__name__}: {exc}"[:300]))
                    log(f"dialects: {d} on {c.id} failed: {takes[-1].error}")
                time.sleep(PAUSE_S)
    finally:
        proc.stop()
        shutil.copy(proc.log, out_dir / "dialects-server.log")
    return {
        "hangover_ms": hang_ms,
        "vad_engine": os.environ.get("VAD_ENGINE") or ServerSettings.model_fields["vad_engine"].default,
        "partial_interval_ms": int(os.environ.get("PARTIAL_INTERVAL_MS")
                                   or ServerSettings.model_fields["partial_interval_ms"].default),
        "clips": [c.id for c in clips],
        "labels": LABELS,
        "skipped": skipped,
        "wall_s": time.monotonic() - t_start,
        **summarize(takes, clips, hang_ms, base),
    }
