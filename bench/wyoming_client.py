"""A Wyoming client, as much of the protocol as speech-to-text needs: ``transcribe``, ``audio-start``, one
``audio-chunk`` per 20 ms frame paced in real time, ``audio-stop``, then read until ``transcript``.

An event is one JSON line (``type``, ``data``, ``payload_length``) followed by the payload bytes; a reader
also accepts ``data_length`` (data sent after the line). Written from the protocol's documentation and the
``wyoming`` package's ``event.py`` so the project needs no extra dependency to talk to a Wyoming server.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import IO, Any

from harness.stt_client import pcm_frames

from .capacity import Outcome, StreamFn
from .clips import Clip

AUDIO = {"rate": 16000, "width": 2, "channels": 1}


def write_event(
    sock: socket.socket, kind: str, data: dict[str, Any] | None = None, payload: bytes = b""
) -> None:
    header: dict[str, Any] = {"type": kind, "data": data or {}}
    if payload:
        header["payload_length"] = len(payload)
    sock.sendall(json.dumps(header).encode() + b"\n" + payload)


def read_event(reader: IO[bytes]) -> tuple[str, dict[str, Any]] | None:
    line = reader.readline()
    if not line:
        return None
    header = json.loads(line)
    data: dict[str, Any] = header.get("data") or {}
    if header.get("data_length"):
        data.update(json.loads(reader.read(header["data_length"])))
    if header.get("payload_length"):
        reader.read(header["payload_length"])
    return str(header["type"]), data


def stream_fn(port: int, language: str = "en") -> StreamFn:
    """Home Assistant's way: real-time 20 ms chunks, ``audio-stop``, wait for ``transcript``. Events are
    read while the audio goes out, so a server that streams ``transcript-chunk`` events (ours) is timed
    from speech onset to its first chunk; one that does not (wyoming-faster-whisper) to its transcript."""

    def one(c: Clip, timeout: float) -> Outcome:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(timeout + c.duration_s + 10)
            chunks: list[float] = []
            final: dict[str, Any] = {}
            reader = sock.makefile("rb")

            def read() -> None:
                while (event := read_event(reader)) is not None:
                    kind, data = event
                    if kind == "transcript-chunk":
                        chunks.append(time.monotonic())
                    elif kind == "transcript":
                        final.update(text=str(data.get("text", "")).strip(), at=time.monotonic())
                        return

            listener = threading.Thread(target=read, daemon=True)
            listener.start()
            write_event(sock, "transcribe", {"language": language})
            write_event(sock, "audio-start", AUDIO)
            t0 = time.monotonic()
            for i, frame in enumerate(pcm_frames(c.pcm, 16000, 20)):
                delay = t0 + i * 0.02 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                write_event(sock, "audio-chunk", AUDIO, frame)
            write_event(sock, "audio-stop", {})
            t_end = time.monotonic()
            listener.join(timeout)
        if "at" not in final:
            raise ConnectionError("the server closed the connection without a transcript")
        first = chunks[0] if chunks else final["at"]
        return Outcome(c.id, final["text"], final["at"] - t_end, first - t0 - c.onset_s,
                       partials=len(chunks))

    return one
