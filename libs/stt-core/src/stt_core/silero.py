"""Silero VAD as the voice gate's classifier (``VAD_ENGINE=silero``), for parity with seed 004's
server. The model is the one faster-whisper ships for its own ``vad_filter`` (no download, no torch):
run here as a stream, one 512-sample window (32 ms) at a time with its 64 samples of context and its
recurrent state carried from window to window, as Silero is meant to be run live.

The gate feeds 10-30 ms frames; a frame is called speech when the latest window's probability is at
least the threshold, so the answer trails the audio by at most one window. One classifier per
stream (the state is the stream's); the ONNX session is shared, and costs ~0.1 ms a window."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

WINDOW = 512  # samples at 16 kHz: what the model takes
CONTEXT = 64  # samples of the previous window it sees before each one


def silero_classifier(threshold: float = 0.5) -> Callable[[bytes], bool]:
    from faster_whisper.vad import get_vad_model  # cached by faster-whisper: one session per process

    session = get_vad_model().session
    h = np.zeros((1, 1, 128), dtype=np.float32)
    c = np.zeros((1, 1, 128), dtype=np.float32)
    context = np.zeros(CONTEXT, dtype=np.float32)
    pending = np.zeros(0, dtype=np.float32)
    prob = 0.0

    def is_speech(frame: bytes) -> bool:
        nonlocal h, c, context, pending, prob
        pending = np.concatenate([pending, np.frombuffer(frame, dtype="<i2").astype(np.float32) / 32768.0])
        while len(pending) >= WINDOW:
            window, pending = pending[:WINDOW], pending[WINDOW:]
            x = np.concatenate([context, window])[None, :]
            out, h, c = session.run(None, {"input": x, "h": h, "c": c})
            context = window[-CONTEXT:]
            prob = float(np.asarray(out).reshape(-1)[0])
        return prob >= threshold

    return is_speech
