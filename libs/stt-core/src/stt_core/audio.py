"""PCM conversion and resampling: bytes in, float32 at 16 kHz out.

Whisper wants 16 kHz mono float32. Clients and microphones send S16LE at whatever rate the device
does (8-48 kHz). Resampling uses libsoxr through ``soxr`` (a real band-limited resampler, not sample
dropping) with per-stream state, so chunk boundaries leave no clicks.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr

# the numpy-free part (pcm.py), here too for the modules that convert
from .pcm import MAX_RATE, MIN_RATE, TARGET_RATE, WIDTHS, Framer
from .pcm import WIDTH_SCALES as _WIDTHS

__all__ = ["MAX_RATE", "MIN_RATE", "TARGET_RATE", "WIDTHS", "Float32Array", "Framer", "Int16Array",
           "PcmConverter", "StreamResampler", "downmix", "float_to_pcm16", "pcm16_to_float", "resample"]

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




class PcmConverter:
    """Interleaved PCM of any rate (8-48 kHz), channel count and width (8-bit unsigned, 16- or 32-bit
    signed, little-endian) to 16 kHz mono S16LE, as a stream: one converter per stream, so the
    resampler's state carries across chunk boundaries. Input that is 16 kHz mono S16 already passes
    through untouched (converting every frame to float and back was most of an idle worker's CPU)."""

    def __init__(self, rate: int, channels: int = 1, width: int = 2) -> None:
        if width not in _WIDTHS:
            raise ValueError(f"sample width must be one of {WIDTHS} bytes, got {width}")
        self.rate, self.channels, self.width = rate, channels, width
        self.frame_bytes = channels * width  # one sample of every channel
        self.passthrough = rate == TARGET_RATE and channels == 1 and width == 2
        self._resampler = StreamResampler(rate)

    def push(self, pcm: bytes) -> bytes:
        """The converted audio of ``pcm``, which must hold whole frames (``frame_bytes``)."""
        if len(pcm) % self.frame_bytes:
            raise ValueError(f"{len(pcm)} bytes is not a whole number of {self.frame_bytes}-byte frames")
        if self.passthrough:
            return pcm
        if self.width == 1:
            samples = (np.frombuffer(pcm, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
        else:
            ints = np.frombuffer(pcm, dtype="<i2" if self.width == 2 else "<i4")
            samples = (ints.astype(np.float32) / _WIDTHS[self.width]).astype(np.float32)
        return float_to_pcm16(self._resampler.process(downmix(samples, self.channels)))

    def flush(self) -> bytes:
        """What the resampler still holds at the end of the stream."""
        return b"" if self.passthrough else float_to_pcm16(self._resampler.flush())
