"""The microphone, through PortAudio (sounddevice). Opened at a rate the device supports and
resampled to 16 kHz, so a USB microphone that only does 44.1 or 48 kHz works. A device that goes away
(USB unplugged) is reopened, with backoff, when it comes back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog
from stt_core.daemon.backoff import Backoff
from stt_core.errors import ConfigError
from stt_core.pcm import TARGET_RATE

from .sources import Converter

log = structlog.get_logger(__name__)

# no callback for this long means the device is gone even if PortAudio did not say so
STALL_S = 2.0


def _sd() -> Any:
    import sounddevice

    return sounddevice


def input_devices() -> list[dict[str, Any]]:
    sd = _sd()
    return [dict(d, index=i) for i, d in enumerate(sd.query_devices()) if d["max_input_channels"] > 0]


def describe_devices() -> str:
    sd = _sd()
    try:
        default_in = sd.default.device[0]
    except Exception:  # no default device at all
        default_in = -1
    lines = []
    for d in input_devices():
        mark = "*" if d["index"] == default_in else " "
        lines.append(f"{mark} {d['index']:>2}  {d['name']}  ({d['max_input_channels']} ch, "
                     f"{int(d['default_samplerate'])} Hz)")
    return "\n".join(lines) if lines else "(no input devices)"


def find_device(spec: str | None) -> int | None:
    """AUDIO_DEVICE as an index, an exact name or a unique part of a name; None: the default device."""
    if spec is None or spec.strip() in ("", "default"):
        return None
    devices = input_devices()
    if spec.strip().isdigit():
        index = int(spec)
        if any(d["index"] == index for d in devices):
            return index
    else:
        exact = [d for d in devices if d["name"] == spec]
        part = exact or [d for d in devices if spec.lower() in d["name"].lower()]
        if len(part) == 1:
            return int(part[0]["index"])
        if len(part) > 1:
            names = "; ".join(f"{d['index']}: {d['name']}" for d in part)
            raise ConfigError("AUDIO_DEVICE",
                              f"{spec!r} matches several input devices ({names}); give the index")
    names = "; ".join(f"{d['index']}: {d['name']}" for d in devices) or "none"
    raise ConfigError("AUDIO_DEVICE", f"no input device {spec!r}; input devices: {names}")


def pick_rate(device: int | None) -> int:
    """16 kHz when the device takes it; otherwise its own default rate (we resample)."""
    sd = _sd()
    try:
        sd.check_input_settings(device=device, channels=1, samplerate=TARGET_RATE, dtype="int16")
        return TARGET_RATE
    except Exception:  # PortAudio says "Invalid sample rate" in several ways
        info = sd.query_devices(device, "input")
        return int(info["default_samplerate"])


# Yielded by MicSource while the device is away: "no audio, and that is known". The worker ends the
# utterance that was being spoken (it will not continue after the gap) and keeps its watchdog pinging:
# a microphone that is unplugged is not a wedged process, and a restart could not bring it back sooner.
GAP = b""


class MicSource:
    def __init__(self, device: str | None, frame_ms: int, *, block_ms: int | None = None) -> None:
        self.spec = device
        self.frame_ms = frame_ms
        # what PortAudio hands over per callback (AUDIO_BLOCK_MS): the idle worker's cost is per block (two
        # thread wake-ups, a callback into Python, the loop's turn), so a longer block costs less, at up
        # to one block's delay on an onset; unset here: one gate frame per block
        self.block_ms = block_ms or frame_ms
        self.device = find_device(device)  # a missing device is a configuration error at start
        self.describe = f"mic:{device or 'default'}"
        # capped low: a re-plugged microphone should be heard again within seconds
        self.backoff = Backoff(initial=0.5, cap=5.0)

    async def frames(self) -> AsyncIterator[bytes]:
        present = True
        while True:
            if present:
                try:
                    async for frame in self._open_and_read():
                        yield frame
                except ConfigError:
                    raise
                except Exception as exc:  # any PortAudio failure: reopen later
                    log.warning("mic_lost", device=self.spec or "default", error=str(exc))
            yield GAP
            await asyncio.sleep(self.backoff.next_delay())
            present = self._rescan()

    def _rescan(self) -> bool:
        """Whether the device is there again. PortAudio enumerates devices once per initialisation,
        so it is re-initialised to see a re-plugged one; indexes may have moved, so the device is looked
        up again by AUDIO_DEVICE, never reopened by a stale index (which may now be another device)."""
        sd = _sd()
        with contextlib.suppress(Exception):
            sd._terminate()
            sd._initialize()
        try:
            self.device = find_device(self.spec)
        except ConfigError as exc:
            log.debug("mic_absent", device=self.spec, error=exc.message)
            return False
        return True

    async def _open_and_read(self) -> AsyncIterator[bytes]:
        sd = _sd()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | Exception] = asyncio.Queue(maxsize=500)
        rate = pick_rate(self.device)
        conv = Converter(rate, 1, self.frame_ms)

        heard = [loop.time()]  # when the last block arrived

        def put(item: bytes | Exception) -> None:
            heard[0] = loop.time()
            if queue.full():  # the loop fell behind: drop the oldest rather than block PortAudio's thread
                queue.get_nowait()
            queue.put_nowait(item)

        def callback(indata: Any, frames: int, time_info: Any, status: Any) -> None:
            if status and status.input_overflow:
                log.debug("mic_overflow")
            loop.call_soon_threadsafe(put, bytes(indata))

        def finished() -> None:
            loop.call_soon_threadsafe(put, RuntimeError("stream stopped"))

        # the stall is checked by one timer a few times per STALL_S, not by a timeout around every block's
        # wait: the idle worker's cost is per block, and this is one timer less per block
        stall: asyncio.TimerHandle | None = None

        def check_stall() -> None:
            nonlocal stall
            if loop.time() - heard[0] > STALL_S:
                put(RuntimeError(f"no audio from the device for {STALL_S} s"))
            else:
                stall = loop.call_later(STALL_S / 4, check_stall)

        stream = sd.RawInputStream(device=self.device, channels=1, samplerate=rate, dtype="int16",
                                   blocksize=rate * self.block_ms // 1000, callback=callback,
                                   finished_callback=finished)
        stall = loop.call_later(STALL_S / 4, check_stall)
        try:
            with stream:
                log.info("mic_open", device=self.spec or "default", index=self.device, rate=rate,
                         resampled=rate != TARGET_RATE, block_ms=self.block_ms)
                self.backoff.reset()
                heard[0] = loop.time()
                while True:
                    item = await queue.get()
                    if isinstance(item, Exception):
                        raise item
                    for frame in conv.push(item):
                        yield frame
        finally:
            if stall is not None:
                stall.cancel()
