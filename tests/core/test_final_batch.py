"""FINAL_BATCH: finals of several sessions share one encoder pass, and their text does not change.

It is meant for CUDA (``auto`` turns it on there only); here it is forced on the CPU with the real
embedded model, so the batching itself, not a stand-in, is what is checked. The batch window is
generous (1 s) so that finals submitted together meet at the encoder even on a loaded machine; a
batch closes as soon as it is full, so the tests do not wait for it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from stt_core.build import build_engine
from stt_core.decoder import WhisperDecoder
from stt_core.engine import Engine
from stt_core.final_batch import EncoderBatcher
from stt_core.options import SpeechOptions

from harness.speech import clip

EN = SpeechOptions(language="en")
# short clips (one 15 s encoder context each, so the same shape) and one of ~19 s (its own shape)
SHORT = ["LJ001-0002", "LJ001-0008", "LJ001-0011", "LJ001-0004"]
LONG = np.concatenate([clip("LJ001-0001"), clip("LJ001-0003")])
MAX = 4


def audio(name: str) -> np.ndarray:
    return clip(name).astype(np.float32) / 32768.0


def engines(final_context_s: float | None) -> tuple[Engine, Engine, list[int]]:
    batched, info = build_engine(whisper_model=None, device="cpu", compute_type=None, cpu_threads=0,
                                 partial_interval_ms=300, final_context_s=final_context_s,
                                 final_batch="on", final_batch_max=MAX, final_batch_window_ms=1000)
    assert info.final_batch
    plain, plain_info = build_engine(whisper_model=None, device="cpu", compute_type=None, cpu_threads=0,
                                     partial_interval_ms=300, final_context_s=final_context_s)
    assert not plain_info.final_batch
    sizes: list[int] = []
    decoder = batched.decoder
    assert isinstance(decoder, WhisperDecoder)
    assert decoder.batcher is not None
    decoder.batcher.on_batch = sizes.append
    return batched, plain, sizes


@pytest.fixture(scope="module", params=[None, 30.0], ids=["short-context", "offline"])
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[Engine, Engine, list[int]]]:
    """A batching engine and a plain one, on the default short-context finals (beam 5 on a 15 s
    encoder context) and on FINAL_CONTEXT_S=30 (faster-whisper's own offline transcribe, whose
    encoder calls are faster-whisper's: the batcher sits under them)."""
    batched, plain, sizes = engines(request.param)
    yield batched, plain, sizes
    batched.close()
    plain.close()


@pytest.fixture(scope="module")
def one_by_one(pair: tuple[Engine, Engine, list[int]]) -> dict[str, str]:
    """Each clip's final from the plain engine, one after the other."""
    _, plain, _ = pair

    async def run() -> dict[str, str]:
        out = {name: (await plain.transcribe(audio(name), EN)).text for name in SHORT}
        out["long"] = (await plain.transcribe(LONG.astype(np.float32) / 32768.0, EN)).text
        return out

    return asyncio.run(run())


@pytest.mark.parametrize("n", [1, 2, 3, 4])
async def test_a_batch_of_n_finals_gives_the_same_text_as_one_by_one(
        pair: tuple[Engine, Engine, list[int]], one_by_one: dict[str, str], n: int) -> None:
    """n finals ending together go through the encoder as one batch of n (the sizes the batcher
    reports), and each final's text is exactly the string the unbatched engine gives for its clip."""
    batched, _, sizes = pair
    sizes.clear()
    names = SHORT[:n]
    results = await asyncio.gather(*(batched.transcribe(audio(name), EN) for name in names))
    for name, result in zip(names, results, strict=True):
        assert result.text == one_by_one[name], name
    assert max(sizes) == n, sizes  # the first encoder pass of each served all n at once


async def test_finals_of_different_lengths_are_batched_only_with_their_own_shape(
        pair: tuple[Engine, Engine, list[int]], one_by_one: dict[str, str]) -> None:
    """Three short finals and a long one: on short contexts the long one has a longer encoder context
    and is not padded into the short ones' batch (that would change what the model hears); offline,
    every window is Whisper's 30 s anyway and all four share one pass. Every text is unchanged."""
    batched, _, sizes = pair
    sizes.clear()
    names = SHORT[:3]
    results = await asyncio.gather(batched.transcribe(LONG.astype(np.float32) / 32768.0, EN),
                                   *(batched.transcribe(audio(name), EN) for name in names))
    assert results[0].text == one_by_one["long"]
    for name, result in zip(names, results[1:], strict=True):
        assert result.text == one_by_one[name], name
    assert sum(sizes) >= 4, sizes  # every final's encoder call went through the batcher
    assert isinstance(batched.decoder, WhisperDecoder)
    assert (4 if batched.decoder.final_context_s == 30 else 3) in sizes, sizes


def test_the_batched_encoder_output_is_bit_identical_on_the_cpu() -> None:
    """Why the texts agree exactly: for windows of one shape, each slice of the batch's output is the
    same array, bit for bit, as that window's own encoder pass (CTranslate2, int8, CPU)."""
    from faster_whisper import WhisperModel
    from stt_core.model import embedded_model_dir

    model = WhisperModel(str(embedded_model_dir()), device="cpu", compute_type="int8", cpu_threads=1,
                         num_workers=MAX)
    feats = []
    for name in SHORT:
        a = audio(name)
        a = np.concatenate([a, np.zeros(16000 * 15 - a.size, np.float32)])
        f = model.feature_extractor(a, padding=0)
        feats.append(f[:, : f.shape[1] // 2 * 2])
    alone = [np.array(model.encode(f)) for f in feats]
    batcher = EncoderBatcher(window_s=1.0, max_batch=len(feats))
    batcher.install(model)
    sizes: list[int] = []
    batcher.on_batch = sizes.append
    together: list[np.ndarray | None] = [None] * len(feats)

    def one(i: int) -> None:
        with batcher.joining():
            together[i] = np.array(model.encode(feats[i]))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(feats))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sizes == [len(feats)]
    for a, b in zip(alone, together, strict=True):
        assert b is not None
        assert np.array_equal(a, b)
    assert np.array(model.encode(feats[0])).shape == alone[0].shape  # not joined: a plain pass
    assert sizes == [len(feats)]


def test_partials_never_join_a_batch(pair: tuple[Engine, Engine, list[int]]) -> None:
    """A partial on the batching model encodes at once, outside any batch (only finals join)."""
    batched, _, sizes = pair
    sizes.clear()
    result = batched.decoder.partial(audio("LJ001-0002"), EN)
    assert "modern" in result.text.lower()
    assert sizes == []


def test_auto_batches_on_cuda_only() -> None:
    """FINAL_BATCH=auto on the CPU keeps one final at a time (batching buys nothing there), and the
    final pool keeps its size; ``on`` makes room in the pool for a whole batch."""
    auto, info = build_engine(whisper_model=None, device="cpu", compute_type=None, cpu_threads=0,
                              partial_interval_ms=300, final_workers=1, final_batch="auto")
    try:
        assert not info.final_batch
        assert isinstance(auto.decoder, WhisperDecoder)
        assert auto.decoder.batcher is None
        assert auto.config.final_workers == 1
    finally:
        auto.close()
    on, info = build_engine(whisper_model=None, device="cpu", compute_type=None, cpu_threads=0,
                            partial_interval_ms=300, final_workers=1, final_batch="on", final_batch_max=3)
    try:
        assert info.final_batch
        assert on.config.final_workers == 3
    finally:
        on.close()
