"""16 kHz mono S16LE, the one format every part of the pipeline passes on, and what needs no numpy to
handle it: the rates and widths peers may declare, and cutting a byte stream into frames.

Kept apart from ``audio.py`` (conversion, resampling: numpy and libsoxr) so that a worker whose audio
is already 16 kHz mono (a microphone opened at 16 kHz, stdin) never imports numpy: about 20 MB of an
idle ws worker's RSS (bench/RESULTS.md, section 4).
"""

from __future__ import annotations

TARGET_RATE = 16_000
MIN_RATE = 8_000
MAX_RATE = 48_000

# the sample widths (bytes) a peer may declare, and the scale of each as signed samples
WIDTH_SCALES = {1: 128.0, 2: 32768.0, 4: 2147483648.0}
WIDTHS = tuple(WIDTH_SCALES)


class Framer:
    """Cuts a byte stream into frames of a fixed size, keeping the remainder for the next chunk."""

    def __init__(self, frame_bytes: int) -> None:
        self.frame_bytes = frame_bytes
        self._buf = bytearray()

    def push(self, data: bytes) -> list[bytes]:
        self._buf += data
        n = len(self._buf) // self.frame_bytes
        frames = [bytes(self._buf[i * self.frame_bytes:(i + 1) * self.frame_bytes]) for i in range(n)]
        del self._buf[:n * self.frame_bytes]
        return frames

    def flush(self) -> list[bytes]:
        """The remainder padded with silence to a whole frame (the end of a file is not cut)."""
        if not self._buf:
            return []
        frame = bytes(self._buf) + b"\0" * (self.frame_bytes - len(self._buf))
        self._buf.clear()
        return [frame]
