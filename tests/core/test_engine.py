"""The streaming engine with the real embedded model (tiny.en, CPU) built the way the apps build it."""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from faster_whisper.transcribe import get_compression_ratio
from stt_core import decoder as d
from stt_core.audio import Float32Array
from stt_core.build import EngineInfo, build_engine
from stt_core.decoder import Transcript, WhisperDecoder, cut_loop
from stt_core.engine import Engine, EngineConfig, PartialResult, Segment
from stt_core.options import SpeechOptions

from harness.speech import clip, normalise, refs, wer
from harness.stt_client import to_rate

NON_SPEECH_WORDS = ("you", "thank", "bye", "music", "applause")

EN = SpeechOptions(language="en")


@pytest.fixture(scope="module")
def built() -> Iterator[tuple[Engine, EngineInfo]]:
    engine, info = build_engine(whisper_model=None, device="cpu", compute_type=None, cpu_threads=0,
                                partial_interval_ms=300)
    yield engine, info
    engine.close()


@pytest.fixture(scope="module")
def engine(built: tuple[Engine, EngineInfo]) -> Engine:
    return built[0]


@pytest.fixture(scope="module")
def whisper(engine: Engine) -> WhisperDecoder:
    assert isinstance(engine.decoder, WhisperDecoder)
    return engine.decoder


def as_float(pcm: np.ndarray) -> Float32Array:
    return pcm.astype(np.float32) / 32768.0


def offline_text(decoder: WhisperDecoder, audio: Float32Array) -> str:
    """What plain faster-whisper gives for the same audio with its defaults."""
    segments, _ = decoder.model.transcribe(audio, language="en", beam_size=5)
    return " ".join(s.text.strip() for s in segments if s.text.strip())


class RecordingModel:
    """faster-whisper's WhisperModel as the decoder sees it, with every ``transcribe`` (the offline
    decode) recorded: its options and the text it gave. Everything else is the real model."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.transcribed: list[tuple[dict[str, Any], str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def transcribe(self, audio: Float32Array, **options: Any) -> tuple[Any, Any]:
        segments, info = self.inner.transcribe(audio, **options)
        segments = list(segments)
        self.transcribed.append((options, " ".join(s.text.strip() for s in segments if s.text.strip())))
        return iter(segments), info


class RecordingDecoder:
    """A decoder that keeps every final it was asked for: the audio handed over and the text it gave."""

    def __init__(self, inner: WhisperDecoder) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.finals: list[tuple[Float32Array, str]] = []

    @property
    def languages(self) -> tuple[str, ...]:
        return self.inner.languages

    def final(self, audio: Float32Array, options: SpeechOptions) -> Transcript:
        out = self.inner.final(audio, options)
        self.finals.append((audio.copy(), out.text))
        return out

    def partial(self, audio: Float32Array, options: SpeechOptions) -> Transcript:
        return self.inner.partial(audio, options)


def assert_final_of_the_whole(final_text: str, recorder: RecordingDecoder, pcm: np.ndarray) -> None:
    """The final is the decoder's final of exactly the utterance's samples, decoded once: streaming
    adds nothing and loses nothing, whatever the model makes of those samples on this machine."""
    (audio, text), = recorder.finals
    assert np.array_equal(audio, as_float(pcm)), "the final did not decode the whole utterance as sent"
    assert final_text == text


@dataclass
class Heard:
    at_s: float  # wall seconds after the first chunk
    fed_ms: int  # audio fed by then
    partial: PartialResult


async def feed_paced(seg: Segment, pcm: np.ndarray, rate: int = 16000, *, speed: float = 1.0,
                     chunk_ms: int = 20) -> float:
    """Feed S16LE in chunk_ms chunks at speed x real time; returns the start time (perf_counter)."""
    n = rate * chunk_ms // 1000
    data = pcm.astype("<i2")
    t0 = time.perf_counter()
    for k, i in enumerate(range(0, len(data), n)):
        seg.feed_pcm16(data[i:i + n].tobytes())
        await asyncio.sleep(max(0.0, t0 + (k + 1) * chunk_ms / 1000 / speed - time.perf_counter()))
    return t0


def collector(seg_holder: dict[str, Segment], heard: list[Heard], t0: list[float]):
    async def on_partial(p: PartialResult) -> None:
        seg = seg_holder["seg"]
        heard.append(Heard(time.perf_counter() - t0[0], int(seg.samples * 1000 / 16000), p))
    return on_partial


def test_build_engine_loads_the_embedded_model_on_cpu(built):
    """With no WHISPER_MODEL the engine runs the embedded tiny.en, int8 on the CPU."""
    engine, info = built
    assert info == EngineInfo("tiny.en (embedded)", "cpu", "int8")
    assert engine.model_name == info.model


# ---- non-speech -------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [0.5, 3.0, 8.0])
async def test_silence_gives_an_empty_final(engine, seconds):
    """Digital silence of any length is answered with an empty final, never "you" or "Thank you."."""
    result = await engine.transcribe(np.zeros(int(16000 * seconds), dtype=np.float32))
    assert result.text == ""
    assert result.confidence == 0.0
    assert result.t_ms == int(seconds * 1000)


def white_noise(level: float, seconds: float, seed: int = 0) -> Float32Array:
    noise = np.random.default_rng(seed).standard_normal(int(16000 * seconds)) * level
    return np.clip(noise, -1, 1).astype(np.float32)


# seeds picked so that plain tiny.en (no VAD gate) answers "You" or a row of dots on these very signals
@pytest.mark.parametrize(("level", "seconds", "seed"), [(0.1, 1.0, 0), (0.1, 2.0, 1), (0.1, 5.0, 1),
                                                        (0.002, 5.0, 1), (0.02, 3.0, 0), (0.5, 5.0, 0)])
async def test_white_noise_gives_an_empty_final(engine, level, seconds, seed):
    """White noise from faint hiss to loud static gives an empty final: no invented words or dots."""
    result = await engine.transcribe(white_noise(level, seconds, seed))
    assert result.text == "", f"hallucinated {result.text!r} on noise"
    assert result.confidence == 0.0


@pytest.mark.parametrize("kind", ["tone", "clicks"])
async def test_other_non_speech_gives_an_empty_final(engine, kind):
    """A steady beep and sparse clicks (on which plain Whisper writes "Beep beep ..." or whole
    invented sentences) give an empty final too."""
    t = np.arange(16000 * 5) / 16000
    rng = np.random.default_rng(0)
    clicks = np.where(rng.random(t.size) < 0.001, 0.8, 0.0)
    audio = 0.3 * np.sin(2 * np.pi * 440 * t) if kind == "tone" else clicks
    result = await engine.transcribe(audio.astype(np.float32))
    assert result.text == "", f"hallucinated {result.text!r} on a {kind}"


async def test_streamed_noise_gives_no_partial_text_and_an_empty_final(engine):
    """Noise streamed with partials on yields no partial with words and an empty final."""
    heard: list[PartialResult] = []

    async def on_partial(p: PartialResult) -> None:
        heard.append(p)

    seg = engine.open_segment(on_partial=on_partial)
    await feed_paced(seg, (white_noise(0.1, 3.0) * 32767).astype(np.int16), speed=3.0)
    final = await seg.finish()
    assert [p.text for p in heard if p.text] == []
    assert final.text == ""
    assert not any(w in normalise(final.text).split() for w in NON_SPEECH_WORDS)


# ---- speech -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["jfk", "LJ001-0004", "LJ001-0002"])
async def test_real_clip_gives_the_reference_text(engine, name):
    """A recorded sentence is transcribed to its reference (WER <= 15%), with t_ms its duration and a
    confidence in (0, 1] that is high for clear speech."""
    pcm = clip(name)
    result = await engine.transcribe(as_float(pcm))
    assert wer([(refs()[name], result.text)]) <= 0.15, result.text
    assert abs(result.t_ms - len(pcm) * 1000 / 16000) <= 1
    assert 0.3 < result.confidence <= 1.0
    assert result.language == "en"


async def test_streamed_final_is_the_whole_utterance_decoded_at_once(whisper):
    """The streamed final (20 ms chunks) is the decoder's final of exactly the samples the whole
    utterance has when handed over at once (compared sample for sample, not by the model's text):
    streaming costs no accuracy."""
    pcm = clip("LJ001-0001")
    recorder = RecordingDecoder(whisper)
    engine = Engine(recorder)
    try:
        seg = engine.open_segment()
        for i in range(0, len(pcm), 320):
            seg.feed_pcm16(pcm[i:i + 320].tobytes())
        final = await seg.finish()
    finally:
        engine.close()
    assert_final_of_the_whole(final.text, recorder, pcm)
    assert wer([(refs()["LJ001-0001"], final.text)]) <= 0.15, final.text


def test_final_at_full_context_is_exactly_offline_faster_whisper(whisper):
    """FINAL_CONTEXT_S=30: every final is faster-whisper's offline transcribe with its defaults (beam
    5), run once, and its text is the final's; no short-context decode is tried."""
    model = RecordingModel(whisper.model)
    exact = WhisperDecoder(model, whisper.model_name, final_context_s=30.0)
    for name in ("LJ001-0001", "LJ001-0006", "jfk"):
        model.transcribed.clear()
        text = exact.final(as_float(clip(name)), EN).text
        assert model.transcribed == [({"language": "en", "beam_size": 5}, text)], name
        assert wer([(refs()[name], text)]) <= 0.15, (name, text)


def test_short_context_finals_are_as_accurate_as_offline_on_real_speech(whisper):
    """The default for the embedded model (a 15 s encoder context for finals that fit): over every
    recording in ../shared/speech (about 220 words), its WER is at most 2 points above offline
    faster-whisper's and under 5%, and it really is the short-context result that is measured: at
    least 3 in 4 finals keep it (each one that fails a check is decoded offline instead).

    Measured on x86_64: 1.4% against 3.2%, 13 of 13 kept. The margins absorb a few words decoded
    differently on another CPU; a context too short for the model (loops, invented text) costs tens of
    words and fails either bound."""
    assert whisper.final_context_s == 15.0
    model = RecordingModel(whisper.model)
    default = WhisperDecoder(model, whisper.model_name, final_context_s=whisper.final_context_s)
    names = sorted(refs())
    ours = [(refs()[n], default.final(as_float(clip(n)), EN).text) for n in names]
    fell_back = len(model.transcribed)
    offline = [(refs()[n], offline_text(whisper, as_float(clip(n)))) for n in names]
    assert len(names) >= 10
    assert fell_back <= len(names) // 4, f"{fell_back} of {len(names)} finals fell back to offline"
    assert wer(ours) <= min(wer(offline) + 0.02, 0.05), (wer(ours), wer(offline))


# ---- a short-context final that fails a check ----------------------------------------------------
# Whether tiny.en loops on a given clip at a given context is a matter of the CPU's floating point (it
# looped on LJ001-0011 at 10 s on one x86_64 machine and not on another), so these tests make the
# failure happen instead of hoping for it.

GOOD = "It is of the first importance that the letter used should be fine in form."
OFFLINE = "the offline decode"  # a text no short-context decode in these tests gives


class OfflineStub:
    """faster-whisper's WhisperModel where the decoder reads it: the real model's tokenizer and flags,
    and a ``transcribe`` (the offline decode) that records its options and answers ``OFFLINE``."""

    def __init__(self, real: Any) -> None:
        self.model = real.model
        self.hf_tokenizer = real.hf_tokenizer
        self.max_length = real.max_length
        self.calls: list[dict[str, Any]] = []

    def transcribe(self, audio: Float32Array, **options: Any) -> tuple[Any, Any]:
        self.calls.append(options)
        seg = SimpleNamespace(start=0.0, end=1.0, text=f" {OFFLINE}", tokens=[1, 2, 3], avg_logprob=-0.1,
                              no_speech_prob=0.1)
        return iter([seg]), SimpleNamespace(language="en")


class ScriptedShortContext(WhisperDecoder):
    """The real ``final()`` and its checks, with the short-context decode's result scripted: ``text``
    (tokenised by the real tokenizer), its mean log-probability, and ``room`` tokens left before the
    length limit (0: the decode ran to it). Every clip counts as speech."""

    def __init__(self, real: WhisperDecoder, text: str, logprob: float = -0.2, room: int = 40) -> None:
        super().__init__(OfflineStub(real.model), real.model_name, final_context_s=15.0)
        self.text, self.logprob, self.room = text, logprob, room
        self.contexts: list[float] = []

    def has_speech(self, audio: Float32Array) -> bool:
        return True

    def _decode_on_context(self, audio: Float32Array, options: SpeechOptions, context_s: float,
                           beam_size: int) -> tuple[Any, Any, int, int]:
        self.contexts.append(context_s)
        tok = self._tokenizer(options.language or "en", options.task)
        ids = tok.encode(f" {self.text}") if self.text else []
        result = SimpleNamespace(sequences_ids=[ids], scores=[self.logprob], no_speech_prob=0.05)
        prompt = len(tok.sot_sequence) + 1
        return tok, result, prompt, prompt + len(ids) + self.room


def checks_failed(text: str, logprob: float, room: int) -> set[str]:
    """Which of faster-whisper's checks a short-context result fails, so each case below is known to
    fail exactly the check it is about."""
    return {name for name, bad in [
        ("empty", not text), ("loop", cut_loop(text) != text), ("logprob", logprob < d.LOGPROB_MIN),
        ("compression", get_compression_ratio(text) > d.COMPRESSION_RATIO_MAX), ("length", room <= 0),
    ] if bad}


LOOPING = GOOD + " It is of the first importance that the letter used should be"


@pytest.mark.parametrize(("check", "text", "logprob", "room"), [
    pytest.param(*case, id=case[0]) for case in [
        ("loop", LOOPING, -0.2, 40),
        ("compression", "a" * 60, -0.2, 40),
        ("logprob", GOOD, -1.5, 40),
        ("length", GOOD, -0.2, 0),
        ("empty", "", -0.2, 40),
    ]
])
def test_a_short_context_final_that_fails_a_check_is_decoded_again_offline(whisper, check, text, logprob,
                                                                            room):
    """A short-context result that loops, compresses like repetition, has a mean log-probability under
    -1, ran to its length limit or is empty is dropped: the final is the offline decode (faster-whisper's
    transcribe with beam 5), run once, and its text is what is returned."""
    assert checks_failed(text, logprob, room) == {check}
    dec = ScriptedShortContext(whisper, text, logprob, room)
    result = dec.final(as_float(clip("LJ001-0011")), EN)
    assert dec.contexts == [15.0], "the short-context decode was not tried first"
    assert dec.model.calls == [{"language": "en", "beam_size": 5}]
    assert result.text == OFFLINE


def test_a_short_context_final_that_passes_every_check_is_kept(whisper):
    """The control for the cases above: a result that fails no check is the final, with the mean token
    probability scaled by the belief that it is speech as its confidence; nothing is decoded offline."""
    assert checks_failed(GOOD, -0.2, 40) == set()
    dec = ScriptedShortContext(whisper, GOOD, -0.2, 40)
    result = dec.final(as_float(clip("LJ001-0011")), EN)
    assert dec.model.calls == []
    assert result.text == GOOD
    assert result.confidence == round(math.exp(-0.2) * (1 - 0.05), 4)
    assert result.language == "en"


def test_a_real_short_context_final_that_fails_a_check_is_the_offline_decode(whisper, monkeypatch):
    """The same path with the real model throughout: the log-probability floor raised above what any
    decode can score (a mean log-probability is never above 0) makes the real short-context result fail
    that check on every machine; the final is then faster-whisper's offline decode of the same audio,
    and its text is the final's."""
    monkeypatch.setattr(d, "LOGPROB_MIN", math.inf)
    model = RecordingModel(whisper.model)
    dec = WhisperDecoder(model, whisper.model_name, final_context_s=15.0)
    tried: list[str] = []
    real_short = dec._short_context_final

    def short(audio: Float32Array, options: SpeechOptions) -> Transcript | None:
        tried.append(options.language or "")
        return real_short(audio, options)

    monkeypatch.setattr(dec, "_short_context_final", short)
    result = dec.final(as_float(clip("LJ001-0011")), EN)
    assert tried == ["en"]
    assert model.transcribed == [({"language": "en", "beam_size": 5}, result.text)]
    assert wer([(refs()["LJ001-0011"], result.text)]) <= 0.25, result.text


async def test_client_at_48k_is_resampled_once_to_the_same_text(engine):
    """A segment opened at 48 kHz and fed 48 kHz PCM gives the reference text and the right t_ms."""
    pcm = clip("LJ001-0004")
    seg = engine.open_segment(sample_rate=48000)
    hi = to_rate(pcm, 48000)
    for i in range(0, len(hi), 960):
        seg.feed_pcm16(hi[i:i + 960].tobytes())
    final = await seg.finish()
    assert wer([(refs()["LJ001-0004"], final.text)]) <= 0.15, final.text
    assert abs(final.t_ms - len(pcm) * 1000 / 16000) <= 25


# ---- partials ---------------------------------------------------------------------------------


async def test_partials_arrive_while_audio_is_fed_in_real_time(engine):
    """Fed at real time, partials start within ~1 s, keep coming while audio arrives, cover nearly all
    the audio fed so far, change text each time (no repeats), and grow towards the reference."""
    name = "LJ001-0004"
    pcm = clip(name)
    heard: list[Heard] = []
    t0 = [time.perf_counter()]
    holder: dict[str, Segment] = {}
    seg = holder["seg"] = engine.open_segment(on_partial=collector(holder, heard, t0))
    t0[0] = time.perf_counter()
    await feed_paced(seg, pcm)
    fed_s = time.perf_counter() - t0[0]
    final = await seg.finish()
    during = [h for h in heard if h.at_s <= fed_s]
    assert len(during) >= 3, [(h.at_s, h.partial.text) for h in heard]
    assert heard[0].at_s < 3.0
    gaps = np.diff([0.0] + [h.at_s for h in during] + [fed_s])
    assert float(gaps.max()) < 3.0, gaps
    texts = [h.partial.text for h in heard]
    assert all(a != b for a, b in itertools.pairwise(texts))
    t_ms = [h.partial.t_ms for h in heard]
    assert t_ms == sorted(t_ms)
    for h in heard:
        assert h.partial.t_ms <= h.fed_ms
        assert h.fed_ms - h.partial.t_ms < 3000, "a stale partial"
        assert 0.0 <= h.partial.confidence <= 1.0
    assert wer([(refs()[name], texts[-1])]) <= 0.35
    assert wer([(refs()[name], final.text)]) <= 0.15
    assert 0.0 <= final.confidence <= 1.0


class SlowPartials(RecordingDecoder):
    """The real decoder, with partials made slow (or held until released) to test the scheduling, and
    the finals recorded."""

    def __init__(self, inner: WhisperDecoder, delay_s: float = 0.0) -> None:
        super().__init__(inner)
        self.delay_s = delay_s
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls: list[tuple[int, int]] = []  # (samples decoded, samples fed when the decode began)
        self.segment: Segment | None = None

    def partial(self, audio: Float32Array, options: SpeechOptions) -> Transcript:
        self.calls.append((audio.size, self.segment.samples if self.segment is not None else -1))
        self.entered.set()
        if self.delay_s:
            time.sleep(self.delay_s)
        else:
            self.gate.wait(30)
        return self.inner.partial(audio, options)


async def test_final_is_not_delayed_by_pending_partials_of_its_own_or_another_session(whisper):
    """With the partial pool stuck on one segment's partial and another segment's partial queued
    behind it, both segments' finals still come back at once, each the decode of its whole clip."""
    slow = SlowPartials(whisper)
    engine = Engine(slow, EngineConfig(partial_interval_ms=100, final_workers=1, partial_workers=1))
    try:
        async def nothing(p: PartialResult) -> None:
            pass

        a_pcm, b_pcm = clip("LJ001-0002"), clip("LJ001-0008")
        a = engine.open_segment(on_partial=nothing)
        a.feed_pcm16(a_pcm.tobytes())
        await asyncio.sleep(0)
        assert await asyncio.to_thread(slow.entered.wait, 10), "the partial never started"
        b = engine.open_segment(on_partial=nothing)
        b.feed_pcm16(b_pcm.tobytes())
        await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        final_b = await asyncio.wait_for(b.finish(), 10)
        final_a = await asyncio.wait_for(a.finish(), 10)
        took = time.perf_counter() - t0
        assert not slow.gate.is_set()  # the partials were still stuck the whole time
        assert took < 5.0
        decoded = {audio.size: (audio, text) for audio, text in slow.finals}  # the clips differ in length
        assert len(decoded) == len(slow.finals) == 2
        for pcm, final in ((a_pcm, final_a), (b_pcm, final_b)):
            audio, text = decoded[pcm.size]
            assert np.array_equal(audio, as_float(pcm))
            assert final.text == text
        assert wer([(refs()["LJ001-0002"], final_a.text), (refs()["LJ001-0008"], final_b.text)]) <= 0.15
        assert engine.active_segments == 0
    finally:
        slow.gate.set()
        engine.close()


async def test_partials_never_queue_up_behind_a_slow_decoder(whisper):
    """When a partial takes longer than PARTIAL_INTERVAL_MS, partials do not pile up: at most one per
    segment is in flight, there are about as many as the decoder can do, and each decodes all the
    audio fed when it starts (fresh, not the audio of when it was due: that would be 0.8 s or more
    behind; the 0.25 s allowed is a loaded machine's thread switch between taking the audio and
    calling the decoder)."""
    slow = SlowPartials(whisper, delay_s=0.8)
    engine = Engine(slow, EngineConfig(partial_interval_ms=100))
    try:
        heard: list[PartialResult] = []

        async def on_partial(p: PartialResult) -> None:
            heard.append(p)

        seg = slow.segment = engine.open_segment(on_partial=on_partial)
        await feed_paced(seg, clip("LJ001-0011")[: 16000 * 4])
        await seg.finish()
        # 4 s of audio, >= 0.8 s per partial: no more than ~6 decodes, not 40 queued ones
        assert 2 <= len(slow.calls) <= 7, slow.calls
        for decoded, fed in slow.calls:
            assert fed - decoded <= 16000 // 4, "a partial decoded stale audio"
        assert [p.t_ms for p in heard] == sorted(p.t_ms for p in heard)
    finally:
        engine.close()


async def test_long_utterance_partials_stay_bounded_and_keep_the_start(engine, whisper):
    """Past partial_window_s (two clips, ~19 s) partials decode only a bounded tail, yet their text
    still begins with the utterance's first words (at most 2 of the first 6 heard differently; had the
    start been dropped they would begin with the second clip's words); the final decodes the whole of
    it."""
    first, second = clip("LJ001-0001"), clip("LJ001-0003")
    pcm = np.concatenate([first, second])
    rec = SlowPartials(whisper, delay_s=0.0)
    rec.gate.set()
    long = Engine(rec, EngineConfig(partial_interval_ms=300))
    try:
        heard: list[PartialResult] = []
        arrived = asyncio.Event()

        async def on_partial(p: PartialResult) -> None:
            heard.append(p)
            arrived.set()

        seg = rec.segment = long.open_segment(on_partial=on_partial)
        # Paced by the decoder, not by the clock: each second of audio waits for a partial that heard
        # up to it, so that between two decodes the tail grows by the same second on any machine (fed
        # in real time, a loaded machine's slower decodes let it grow past the bound checked below,
        # and the bound would measure the machine, not the engine).
        step = 16000
        for i in range(0, len(pcm), step):
            seg.feed_pcm16(pcm[i:i + step].astype("<i2").tobytes())
            fed_ms = min(len(pcm), i + step) * 1000 // 16000
            async with asyncio.timeout(60):
                while not heard or heard[-1].t_ms < fed_ms - 1000:
                    arrived.clear()
                    await arrived.wait()
        final = await seg.finish()
    finally:
        long.close()
    window = long.config.partial_window_s
    late = [p for p in heard if p.t_ms > (window + 2) * 1000]
    assert late, [p.t_ms for p in heard]
    opening = " ".join(normalise(refs()["LJ001-0001"]).split()[:6])
    for p in late:
        assert wer([(opening, " ".join(normalise(p.text).split()[:6]))]) <= 2 / 6, p.text
    assert max(p.t_ms for p in heard) > 15_000
    longest = max(decoded for decoded, _ in rec.calls) / 16000
    assert longest <= window + 4.0, f"a partial decoded {longest:.1f} s: cost not bounded"
    assert_final_of_the_whole(final.text, rec, pcm)
    assert wer([(refs()["LJ001-0001"] + " " + refs()["LJ001-0003"], final.text)]) <= 0.15
    assert abs(final.t_ms - len(pcm) * 1000 / 16000) <= 1


async def test_confidence_is_a_probability(engine):
    """Finals and partials report confidence in [0, 1]; speech scores above non-speech."""
    seen: list[float] = []

    async def on_partial(p: PartialResult) -> None:
        seen.append(p.confidence)

    seg = engine.open_segment(on_partial=on_partial)
    await feed_paced(seg, clip("LJ001-0011"), speed=3.0)
    speech = await seg.finish()
    silence = await engine.transcribe(np.zeros(16000, dtype=np.float32))
    assert seen
    assert all(0.0 <= c <= 1.0 for c in seen)
    assert 0.0 <= silence.confidence < speech.confidence <= 1.0
