"""Audio sources: a WAV file, raw PCM on stdin (the microphone lives in mic.py). Each is an async
iterator of 16 kHz mono S16LE frames of exactly ``frame_ms``, whatever the input's rate and channels."""

from __future__ import annotations

import asyncio
import sys
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from stt_core.errors import ConfigError
from stt_core.pcm import TARGET_RATE, Framer

if TYPE_CHECKING:
    from stt_core.audio import PcmConverter


class Converter:
    """Any S16LE rate and channel count to 16 kHz mono frames of the gate's size. Audio that is 16 kHz
    mono already is only framed: numpy and the resampler (stt_core.audio) are imported for the rest."""

    def __init__(self, rate: int, channels: int, frame_ms: int) -> None:
        self.pcm: PcmConverter | None = None
        if (rate, channels) != (TARGET_RATE, 1):
            from stt_core.audio import PcmConverter

            self.pcm = PcmConverter(rate, channels)
        self.framer = Framer(TARGET_RATE * frame_ms // 1000 * 2)

    def push(self, pcm: bytes) -> list[bytes]:
        return self.framer.push(pcm if self.pcm is None else self.pcm.push(pcm))

    def flush(self) -> list[bytes]:
        return (self.framer.push(self.pcm.flush()) if self.pcm is not None else []) + self.framer.flush()


class WavSource:
    """A WAV file (any rate, any channels, 16-bit), played in real time unless ``realtime`` is off."""

    def __init__(self, path: Path, frame_ms: int, *, realtime: bool = True) -> None:
        self.path = path
        self.frame_ms = frame_ms
        self.realtime = realtime
        try:
            with wave.open(str(path)) as w:
                if w.getsampwidth() != 2:
                    raise ConfigError("AUDIO_SOURCE",
                                      f"{path} is {8 * w.getsampwidth()}-bit; 16-bit PCM WAV needed")
                self.rate, self.channels = w.getframerate(), w.getnchannels()
        except (wave.Error, EOFError) as exc:
            raise ConfigError("AUDIO_SOURCE", f"{path} is not a PCM WAV file: {exc}") from None
        self.describe = f"wav:{path.name} ({self.rate} Hz, {self.channels} ch)"

    async def frames(self) -> AsyncIterator[bytes]:
        conv = Converter(self.rate, self.channels, self.frame_ms)
        t0 = time.monotonic()
        sent = 0
        with wave.open(str(self.path)) as w:
            chunk = max(1, self.rate * self.frame_ms // 1000)
            while True:
                data = w.readframes(chunk)
                out = conv.push(data) if data else conv.flush()
                for frame in out:
                    yield frame
                    sent += 1
                    if self.realtime:
                        # pace by the clock, not by sleeping a fixed step: no drift over a long file
                        ahead = t0 + sent * self.frame_ms / 1000 - time.monotonic()
                        if ahead > 0:
                            await asyncio.sleep(ahead)
                if not out and not self.realtime:
                    await asyncio.sleep(0)  # let the rest of the worker run between frames
                if not data:
                    return


class StdinSource:
    """Raw S16LE 16 kHz mono on stdin (``arecord -f S16_LE -r 16000 -c 1 -t raw | stt-worker``)."""

    describe = "stdin (S16LE 16 kHz mono)"

    def __init__(self, frame_ms: int) -> None:
        self.frame_ms = frame_ms

    async def frames(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
        framer = Framer(TARGET_RATE * self.frame_ms // 1000 * 2)
        while True:
            data = await reader.read(4096)
            if not data:
                for frame in framer.flush():
                    yield frame
                return
            for frame in framer.push(data):
                yield frame
