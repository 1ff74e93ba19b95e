"""Loaded into the stt-worker process by tests/worker/test_mic.py only (through PYTHONPATH).

The test's microphones are real ALSA PCMs (the ``file`` plugin over ``null``, reading a raw speech
file) opened through the real PortAudio and ``sounddevice``. Two things such a PCM does not do like a
USB microphone, and which this file supplies at the ``sounddevice`` boundary, nothing else:

* it has no clock: ``null`` completes every read at once, so PortAudio calls back as fast as it can
  spin (measured: about 86,000 callbacks a second), and the whole clip would arrive in a millisecond.
  The callback is paced here to the stream's sample rate, in PortAudio's own callback thread; the
  audio is the device's, byte for byte.
* it accepts any sample rate (nothing under it constrains the rate, and the ``share`` plugin that
  could pin one asserts over ``null``), where the microphone it stands for takes one rate only. So
  the rates named in ``STT_TEST_VIRTUAL_MICS`` (``{"device name": rate}``) are reported as the
  device's default, and ``check_input_settings`` refuses any other, as PortAudio does for such
  hardware ("Invalid sample rate").

A third thing stands in for what only hardware does: a USB microphone pulled out. ALSA then fails the
open stream's reads and PortAudio stops it. While the file named by ``STT_TEST_UNPLUGGED`` exists, the
paced callback raises ``CallbackAbort``, so PortAudio stops the stream as it would. The test also takes
the PCM out of ALSA's configuration, so the device really disappears from PortAudio's enumeration until
it is put back.

Device enumeration, lookup by name, opening, the callback thread and the data path stay PortAudio's.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

VIRTUAL: dict[str, int] = json.loads(os.environ.get("STT_TEST_VIRTUAL_MICS", "{}"))
UNPLUGGED = os.environ.get("STT_TEST_UNPLUGGED", "")

if VIRTUAL:
    import sounddevice as sd

    _query_devices = sd.query_devices
    _check_input_settings = sd.check_input_settings
    _RawInputStream = sd.RawInputStream

    def _fix(info: Any) -> Any:
        if isinstance(info, dict) and info.get("name") in VIRTUAL:
            info = dict(info, default_samplerate=float(VIRTUAL[info["name"]]))
        return info

    def query_devices(device: Any = None, kind: Any = None) -> Any:
        out = _query_devices(device, kind)
        if isinstance(out, dict):
            return _fix(out)
        return type(out)(_fix(d) for d in out)

    def _rate_of(device: Any) -> int | None:
        try:
            name = _query_devices(device, "input")["name"]
        except Exception:
            return None
        return VIRTUAL.get(name)

    def check_input_settings(device: Any = None, channels: Any = None, dtype: Any = None,
                             extra_settings: Any = None, samplerate: Any = None) -> None:
        rate = _rate_of(device)
        if rate is not None and samplerate is not None and int(samplerate) != rate:
            raise sd.PortAudioError("Error opening InputStream: Invalid sample rate [PaErrorCode -9997]")
        _check_input_settings(device=device, channels=channels, dtype=dtype, extra_settings=extra_settings,
                              samplerate=samplerate)

    class RawInputStream(_RawInputStream):  # type: ignore[misc]
        def __init__(self, *args: Any, callback: Any = None, **kwargs: Any) -> None:
            rate = kwargs.get("samplerate")
            if callback is not None and rate and _rate_of(kwargs.get("device")) is not None:
                callback = _paced(callback, float(rate))
            super().__init__(*args, callback=callback, **kwargs)

    def _paced(callback: Any, rate: float) -> Any:
        state = {"start": 0.0, "frames": 0}

        def paced(indata: Any, frames: int, time_info: Any, status: Any) -> None:
            if UNPLUGGED and os.path.exists(UNPLUGGED):
                raise sd.CallbackAbort
            if not state["start"]:
                state["start"] = time.monotonic()
            state["frames"] += frames
            ahead = state["start"] + state["frames"] / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            callback(indata, frames, time_info, status)

        return paced

    sd.query_devices = query_devices
    sd.check_input_settings = check_input_settings
    sd.RawInputStream = RawInputStream
