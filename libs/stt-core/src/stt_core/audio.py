"""PCM conversion and resampling: bytes in, float32 at 16 kHz out.

Whisper wants 16 kHz mono float32. Clients and microphones send S16LE at whatever rate the device
does (8-48 kHz). Resampling uses libsoxr through ``soxr`` (a real band-limited resampler, not sample
dropping) with per-stream state, so chunk boundaries leave no clicks.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr

TARGET_RATE = 16_000
MIN_RATE = 8_000
MAX_RATE = 48_000

Float32Array = npt.NDArray[np.float32]
Int16Array = npt.NDArray[np.int16]


def pcm16_to_float(pcm: bytes | Int16Array) -> Float32Array:
    """S16LE bytes (or int16 samples) to float32 in [-1, 1)."""
    samples = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, bytes | bytearray | memoryview) else pcm
    return samples.astype(np.float32) / 32768.0


def float_to_pcm16(audio: Float32Array) -> bytes:
    """float32 in [-1, 1] to S16LE bytes, clipped rather than wrapped."""
    return bytes((np.clip(audio, -1.0, 32767 / 32768) * 32768.0).astype("<i2").tobytes())


def downmix(samples: npt.NDArray[np.float32], channels: int) -> Float32Array:
    """Interleaved multi-channel frames to mono by averaging the channels."""
    if channels == 1:
        return samples
    return np.asarray(samples.reshape(-1, channels).mean(axis=1, dtype=np.float32), dtype=np.float32)


class StreamResampler:
    """Resamples a stream of float32 chunks from ``rate`` to 16 kHz, keeping filter state across chunks.

    At 16 kHz it is a no-op copy, so callers need no special case.
    """

    def __init__(self, rate: int, target: int = TARGET_RATE) -> None:
        self.rate = rate
        self.target = target
        self._stream = None if rate == target else soxr.ResampleStream(rate, target, 1, dtype="float32")

    def process(self, chunk: Float32Array, *, last: bool = False) -> Float32Array:
        if self._stream is None:
            return chunk
        out: Float32Array = self._stream.resample_chunk(chunk, last=last)
        return out

    def flush(self) -> Float32Array:
        """The samples still inside the filter at the end of the stream."""
        return self.process(np.zeros(0, dtype=np.float32), last=True)


def resample(audio: Float32Array, rate: int, target: int = TARGET_RATE) -> Float32Array:
    """One-shot resampling of a whole signal."""
    if rate == target:
        return audio
    out: Float32Array = soxr.resample(audio, rate, target).astype(np.float32, copy=False)
    return out
