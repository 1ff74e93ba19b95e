"""A WhisperLive client, written from its server's source (whisper_live/server.py, backend/base.py):
JSON options first, ``SERVER_READY``, float32 frames (20 ms, paced in real time), ``END_OF_AUDIO``.

WhisperLive has no final message: its server re-decodes the uncommitted audio in a loop and sends the last
``send_last_n_segments`` segments each time; a segment becomes ``completed`` when the same text came back
``same_output_threshold`` times in a row, and ``END_OF_AUDIO`` ends the session without another decode.
So after the last frame this client waits until the text is committed (every segment completed) or
came back the same from ``AGREEING`` decodes in a row (see ``settled``), then sends ``END_OF_AUDIO``.
It reports two latencies from the last frame:

* ``latency_s``: to the message that first carried the final text (generous: a client cannot know at that
  moment that the text will not change again);
* ``committed_s``: to the message in which all of it was marked completed, when that came in time.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from .capacity import Outcome, StreamFn
from .clips import Clip

AGREEING = 3
QUIET_S = 10.0


@dataclass(frozen=True)
class Seen:
    t: float  # time.monotonic()
    text: str
    committed: bool  # no segment left uncompleted


class Transcript:
    """WhisperLive's segments folded the way its own client does: completed ones kept by start time, plus
    the last uncompleted one."""

    def __init__(self) -> None:
        self.done: dict[float, str] = {}
        self.seen: list[Seen] = []

    def add(self, t: float, segments: list[dict[str, Any]]) -> None:
        pending = ""
        for seg in segments:
            if seg.get("completed"):
                self.done[float(seg["start"])] = str(seg["text"]).strip()
            else:
                pending = str(seg["text"]).strip()
        text = " ".join([*(self.done[k] for k in sorted(self.done)), pending]).strip()
        self.seen.append(Seen(t, text, not pending and bool(self.done)))

    def changes(self) -> list[Seen]:
        """The messages whose text differed from the one before (what a user sees change)."""
        out: list[Seen] = []
        for s in self.seen:
            if s.text and (not out or s.text != out[-1].text):
                out.append(s)
        return out


def options(uid: str, language: str) -> dict[str, Any]:
    # the fields and defaults of whisper_live.client.Client.on_open
    return {
        "uid": uid,
        "language": language,
        "task": "transcribe",
        "model": "tiny.en",
        "use_vad": True,
        "send_last_n_segments": 10,
        "no_speech_thresh": 0.45,
        "clip_audio": False,
        "same_output_threshold": 10,
        "enable_translation": False,
        "word_timestamps": False,
    }


def _read(ws: ClientConnection, out: Transcript, lock: threading.Lock) -> None:
    try:
        for raw in ws:
            msg = json.loads(raw)
            if "segments" in msg:
                with lock:
                    out.add(time.monotonic(), msg["segments"])
    except (ConnectionClosed, OSError):
        pass


def settled(got: Transcript, lock: threading.Lock, t_end: float, quiet_s: float) -> bool:
    """Done waiting: the text is committed, or came back unchanged in AGREEING messages after the end of
    audio (WhisperLive decodes one after another per client, so all but the first of them decoded the whole
    clip), or nothing came for ``quiet_s`` (a decode that found no speech sends nothing)."""
    with lock:
        after = [s for s in got.seen if s.t > t_end]
        last_t = got.seen[-1].t if got.seen else t_end
    if after and after[-1].committed:
        return True
    if len(after) >= AGREEING and len({s.text for s in after[-AGREEING:]}) == 1:
        return True
    return time.monotonic() - max(last_t, t_end) >= quiet_s


def stream_fn(port: int, language: str = "en", quiet_s: float = QUIET_S) -> StreamFn:
    def one(c: Clip, timeout: float) -> Outcome:
        with connect(f"ws://127.0.0.1:{port}", max_size=None, proxy=None, open_timeout=10) as ws:
            ws.send(json.dumps(options(str(uuid.uuid4()), language)))
            ready = json.loads(ws.recv(timeout))
            if ready.get("message") != "SERVER_READY":
                raise RuntimeError(f"not ready: {ready}")
            got, lock = Transcript(), threading.Lock()
            reader = threading.Thread(target=_read, args=(ws, got, lock), daemon=True)
            reader.start()
            audio = (c.pcm.astype(np.float32) / 32768.0).astype("<f4")
            t0 = time.monotonic()
            for i in range(0, len(audio), 320):
                delay = t0 + i / 16000 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                ws.send(audio[i : i + 320].tobytes())
            t_end = time.monotonic()
            while time.monotonic() - t_end < timeout and not settled(got, lock, t_end, quiet_s):
                time.sleep(0.05)
            ws.send(b"END_OF_AUDIO")
        reader.join(5)
        changes = got.changes()
        if not changes:
            raise TimeoutError(f"no text within {timeout} s of the end of audio")
        final = changes[-1]
        committed = next((s for s in got.seen if s.t > t_end and s.committed and s.text == final.text), None)
        return Outcome(
            c.id,
            final.text,
            final.t - t_end,
            changes[0].t - t0 - c.onset_s,
            [b.t - a.t for a, b in itertools.pairwise(changes)],
            len(changes),
            committed_s=committed.t - t_end if committed else None,
        )

    return one
