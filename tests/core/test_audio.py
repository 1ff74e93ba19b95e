"""PCM conversion and resampling to 16 kHz: a real band-limited resampler, stateful across chunks."""

from __future__ import annotations

import numpy as np
import pytest
from stt_core.audio import (
    TARGET_RATE,
    StreamResampler,
    downmix,
    float_to_pcm16,
    pcm16_to_float,
    resample,
)

RATES = [8000, 11025, 22050, 44100, 48000]


def sine(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def test_pcm16_bytes_become_floats_in_range():
    """S16LE bytes map to float32 with -32768 -> -1.0, 0 -> 0, 32767 -> just under 1, little-endian."""
    pcm = np.array([-32768, -16384, 0, 1, 16384, 32767], dtype="<i2").tobytes()
    out = pcm16_to_float(pcm)
    assert out.dtype == np.float32
    assert out.tolist() == [-1.0, -0.5, 0.0, 1 / 32768, 0.5, 32767 / 32768]
    assert pcm16_to_float(b"\x00\x01").tolist() == [256 / 32768]  # little-endian: 0x0100


def test_pcm16_from_int16_array_and_memoryview_match_bytes():
    """int16 arrays and memoryviews convert the same as the equivalent bytes."""
    samples = np.array([5, -7, 1234], dtype=np.int16)
    expected = pcm16_to_float(samples.tobytes())
    assert np.array_equal(pcm16_to_float(samples), expected)
    assert np.array_equal(pcm16_to_float(memoryview(samples.tobytes())), expected)


def test_float_to_pcm16_round_trips_and_clips_instead_of_wrapping():
    """float -> S16LE -> float is exact on the int16 grid; values past full scale clip, never wrap."""
    rng = np.random.default_rng(1)
    pcm = rng.integers(-32768, 32768, 1000).astype("<i2").tobytes()
    assert float_to_pcm16(pcm16_to_float(pcm)) == pcm
    over = np.frombuffer(float_to_pcm16(np.array([1.5, -1.5, 1.0, -1.0], dtype=np.float32)), "<i2")
    assert over.tolist() == [32767, -32768, 32767, -32768]


def test_downmix_averages_interleaved_channels():
    """Stereo frames L,R,L,R become their mean; mono passes through."""
    stereo = np.array([0.2, 0.4, -1.0, 1.0, 0.5, 0.5], dtype=np.float32)
    assert np.allclose(downmix(stereo, 2), [0.3, 0.0, 0.5])
    mono = np.array([0.1, 0.2], dtype=np.float32)
    assert downmix(mono, 1) is mono


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
@pytest.mark.parametrize("freq", [440.0, 1000.0, 3000.0])
def test_resample_keeps_frequency_length_and_level(rate, freq):
    """A sine at 8k/44.1k/48k comes out at 16 kHz with the same frequency, duration and loudness."""
    x = sine(freq, rate, 2.0)
    y = resample(x, rate)
    assert y.dtype == np.float32
    assert abs(len(y) - 2.0 * TARGET_RATE) <= 2
    assert abs(peak_hz(y, TARGET_RATE) - freq) <= 2.0
    assert rms(y[1000:-1000]) == pytest.approx(rms(x), rel=0.02)


def test_resample_at_16k_is_identity():
    """16 kHz input is returned unchanged."""
    x = sine(440, TARGET_RATE, 0.5)
    assert np.array_equal(resample(x, TARGET_RATE), x)


@pytest.mark.parametrize("rate", [44100, 48000])
def test_resampling_is_band_limited_not_sample_dropping(rate):
    """A 12 kHz tone is above the 8 kHz Nyquist limit of 16 kHz audio: a real resampler removes it,
    whereas dropping samples would fold it down to an audible 4 kHz tone."""
    x = sine(12_000, rate, 1.0)
    y = resample(x, rate)
    assert rms(y) < 0.01 * rms(x)
    dropped = x[np.arange(0, len(x), rate / TARGET_RATE).astype(int)]
    assert rms(dropped) > 0.5 * rms(x)  # the naive way really does alias: the check above can fail


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
@pytest.mark.parametrize("chunk_ms", [20, 37])
def test_streaming_in_chunks_equals_one_shot(rate, chunk_ms):
    """Chunk by chunk (20 ms and odd 37 ms chunks) plus flush gives the same samples as resampling the
    whole signal at once, within a small tolerance, with no clicks at chunk boundaries."""
    x = sine(440, rate, 1.5) + sine(2500, rate, 1.5, amp=0.2)
    n = rate * chunk_ms // 1000
    rs = StreamResampler(rate)
    parts = [rs.process(x[i:i + n]) for i in range(0, len(x), n)]
    parts.append(rs.flush())
    streamed = np.concatenate(parts)
    whole = resample(x, rate)
    assert abs(len(streamed) - len(whole)) <= 2
    m = min(len(streamed), len(whole))
    diff = np.abs(streamed[:m] - whole[:m])
    assert float(np.max(diff[200:-200])) < 1e-3
    assert abs(peak_hz(streamed, TARGET_RATE) - 440) <= 2
    # no clicks: sample-to-sample steps stay within what a 2.5 kHz tone at this level can do
    assert float(np.max(np.abs(np.diff(streamed)))) < 0.5


def test_stream_resampler_at_16k_passes_chunks_through():
    """At 16 kHz the stream resampler is a no-op and flush returns nothing."""
    rs = StreamResampler(TARGET_RATE)
    chunk = sine(440, TARGET_RATE, 0.02)
    assert np.array_equal(rs.process(chunk), chunk)
    assert rs.flush().size == 0


@pytest.mark.parametrize("rate", RATES)
def test_stream_resampler_total_length_matches_duration(rate):
    """However the chunks fall, the samples out add up to the input's duration at 16 kHz."""
    x = sine(300, rate, 3.0)
    rs = StreamResampler(rate)
    rng = np.random.default_rng(rate)
    out, i = 0, 0
    while i < len(x):
        n = int(rng.integers(1, rate // 20))
        out += rs.process(x[i:i + n]).size
        i += n
    out += rs.flush().size
    assert abs(out - 3.0 * TARGET_RATE) <= 2
