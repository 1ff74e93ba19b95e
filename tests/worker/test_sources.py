"""Audio sources: whatever comes in (WAV at any rate and channel count, raw PCM on stdin) leaves as exact
16 kHz mono S16LE frames of VAD_FRAME_MS, with the right duration and the right sound."""

from __future__ import annotations

import asyncio
import subprocess
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from stt_core.audio import Framer
from stt_core.errors import ConfigError
from stt_worker.sources import WavSource

from harness import speech
from harness.procs import Mosquitto
from harness.stt_client import to_rate
from tests.worker import helpers as h


def collect(src: WavSource) -> list[bytes]:
    async def run() -> list[bytes]:
        return [f async for f in src.frames()]

    return asyncio.run(run())


def as_int16(frames: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(frames), dtype="<i2")


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised correlation of two signals at their best alignment within +-20 ms."""
    n = min(len(a), len(b)) - 640
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    best = 0.0
    for lag in range(-320, 321, 1):
        x = a64[320 + lag:320 + lag + n]
        y = b64[320:320 + n]
        best = max(best, float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-9)))
    return best


@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_wav_at_44k1_stereo_becomes_16k_mono_frames_of_the_same_sound(tmp_path: Path, frame_ms: int):
    """A 44.1 kHz stereo WAV (left: a sentence, right: the same at half level) comes out as frames of
    exactly frame_ms at 16 kHz, as long as the file to within one frame, and is the same sound: the
    channels averaged (0.75 of the original level) and resampled, sample for sample close to the original."""
    orig = speech.clip("LJ001-0002")
    up = to_rate(orig, 44_100)
    stereo = np.stack([up, (up // 2).astype(np.int16)], axis=1).reshape(-1)
    path = speech.write_wav(tmp_path / "stereo.wav", stereo, rate=44_100, channels=2)
    frames = collect(WavSource(path, frame_ms, realtime=False))
    assert {len(f) for f in frames} == {16 * frame_ms * 2}
    got = as_int16(frames)
    seconds = len(up) / 44_100
    assert abs(len(got) / 16_000 - seconds) <= frame_ms / 1000, (len(got) / 16_000, seconds)
    assert similarity(got, orig) > 0.98
    level = np.sqrt(np.mean(got.astype(np.float64) ** 2) / np.mean(orig.astype(np.float64) ** 2))
    assert 0.7 < level < 0.8, level


def test_wav_at_8k_mono_is_upsampled_to_16k_with_its_pitch_and_length(tmp_path: Path):
    """An 8 kHz mono WAV of a 1 kHz tone (2.5 s): 16 kHz frames totalling 2.5 s (to within a frame),
    the tone still at 1 kHz and at its level: resampled, not just re-labelled or sample-doubled."""
    t = np.arange(int(2.5 * 8000)) / 8000
    tone = (0.5 * 32767 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    path = speech.write_wav(tmp_path / "tone8k.wav", tone, rate=8000)
    frames = collect(WavSource(path, 30, realtime=False))
    assert {len(f) for f in frames} == {960}
    got = as_int16(frames).astype(np.float64)
    assert abs(len(got) / 16_000 - 2.5) <= 0.03
    mid = got[8000:-8000]
    spectrum = np.abs(np.fft.rfft(mid * np.hanning(len(mid))))
    peak_hz = np.argmax(spectrum) * 16_000 / len(mid)
    assert abs(peak_hz - 1000) < 5, peak_hz
    assert abs(np.sqrt(np.mean(mid ** 2)) / (0.5 * 32767 / np.sqrt(2)) - 1) < 0.05
    # nothing above the 4 kHz the file could hold: no imaging from naive upsampling
    top = spectrum[int(len(mid) * 4500 / 16_000):].max()
    assert top < spectrum.max() * 1e-3


def test_wav_source_plays_in_real_time_unless_told_otherwise(tmp_path: Path):
    """realtime=True paces frames by the clock (1.5 s of audio takes about 1.5 s); realtime=False does
    not wait at all."""
    path = speech.write_wav(tmp_path / "quiet.wav", np.zeros(int(1.5 * 16000), np.int16))
    t0 = time.monotonic()
    collect(WavSource(path, 30, realtime=True))
    paced = time.monotonic() - t0
    t0 = time.monotonic()
    collect(WavSource(path, 30, realtime=False))
    fast = time.monotonic() - t0
    assert 1.35 <= paced <= 2.5, paced
    assert fast < 0.5, fast


def test_wav_that_is_not_16_bit_is_a_configuration_error(tmp_path: Path):
    """An 8-bit WAV is refused at start with a ConfigError naming AUDIO_SOURCE, not misread as noise."""
    path = tmp_path / "u8.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(16000)
        w.writeframes(b"\x80" * 1600)
    with pytest.raises(ConfigError) as err:
        WavSource(path, 30)
    assert err.value.variable == "AUDIO_SOURCE"


def test_framer_cuts_any_chunking_into_whole_frames_and_pads_only_the_last():
    """Chunks of any size give the same frames, in order, as the stream cut at once; the remainder
    waits for the next chunk; flush pads it with silence to one whole frame, and then has nothing."""
    data = bytes(range(256)) * 40  # 10240 bytes: 10 frames of 960 and 640 over
    framer = Framer(960)
    out: list[bytes] = []
    rng = np.random.default_rng(3)
    pos = 0
    while pos < len(data):
        step = int(rng.integers(1, 2000))
        out += framer.push(data[pos:pos + step])
        pos += step
    assert [len(f) for f in out] == [960] * 10
    assert b"".join(out) == data[:9600]
    (last,) = framer.flush()
    assert last == data[9600:] + b"\0" * 320
    assert framer.flush() == []
    assert framer.push(b"") == []


def test_stdin_source_through_the_console_script(broker: Mosquitto):
    """AUDIO_SOURCE=- : raw S16LE 16 kHz mono piped into the real stt-worker (written at once, as
    `sox file.wav -t raw - | stt-worker` would) is gated and transcribed by the local backend; the end
    of the pipe ends the worker (status 0) only once every sentence's final is out, however far the
    decoder was behind the pipe (not cut short by SHUTDOWN_TIMEOUT_S, which is for signals)."""
    ids = [*h.MEDIUM, *h.SHORT]
    col = h.Collector(broker.port)
    w = h.start_worker(h.worker_env(broker.port, "-"), stdin=subprocess.PIPE)
    try:
        h.wait_log(w, "worker_started", 60)
        h.feed_stdin(w, h.speech_pcm(ids, gap_s=1.2), speed=None)
        assert h.wait_exit(w, 90) == 0, h.tail(w)
    finally:
        w.stop()
        col.close()
    finals = col.finals()
    h.assert_transcribed(ids, finals)
    assert all(f["backend"] == "local" for f in finals)
    assert [e["source"] for e in h.events(w, "worker_started")] == ["stdin (S16LE 16 kHz mono)"]
