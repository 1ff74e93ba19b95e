"""The vocabulary bias on the real model: made-up names spoken by espeak-ng that the bare model
misspells come out right with a prompt or hotwords naming them. Counted over four names, with a
margin either way (the bias must win at least 3 of 4; the bare model at most 1), so one name decoded
differently on another CPU cannot flip the result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from stt_core.build import build_engine
from stt_core.decoder import WhisperDecoder
from stt_core.options import SpeechOptions

from tests.support.espeak import say

NAMES = ["Zorvathy", "Kwesi", "Siobhan", "Saoirse"]


@pytest.fixture(scope="module")
def decoder() -> WhisperDecoder:
    engine, _ = build_engine(whisper_model=None, device="cpu", compute_type=None, cpu_threads=0,
                             partial_interval_ms=300)
    dec = engine.decoder
    assert isinstance(dec, WhisperDecoder)
    return dec


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    tmp: Path = tmp_path_factory.mktemp("bias")
    return {n: say(f"Turn on the lights in {n}'s room.", tmp).astype(np.float32) / 32768 for n in NAMES}


def right(decoder: WhisperDecoder, spoken: dict[str, np.ndarray], bias: dict[str, str]) -> int:
    """How many of the names the decoder spells right, each decoded with ``bias`` naming it."""
    count = 0
    for name, audio in spoken.items():
        options = SpeechOptions(**{k: v.format(name=name) for k, v in bias.items()})  # type: ignore[arg-type]
        count += name.lower() in decoder.final(audio, options).text.lower()
    return count


@pytest.mark.parametrize("bias", [{"hotwords": "{name}"}, {"prompt": "A message about {name}."}])
def test_a_prompt_or_hotwords_get_names_right_that_the_bare_model_misspells(decoder, spoken, bias):
    bare = right(decoder, spoken, {})
    biased = right(decoder, spoken, bias)
    assert bare <= 1, bare
    assert biased >= 3, biased
