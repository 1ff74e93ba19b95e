"""Short-context partials must not loop: the decoder's own text repetition is cut, and real speech
running up to the end of the partial window decodes without repeating itself."""

from __future__ import annotations

import numpy as np
import pytest
from stt_core.build import build_engine
from stt_core.decoder import cut_loop
from stt_core.options import SpeechOptions

from harness.speech import clip


@pytest.mark.parametrize(("text", "expected"), [
    ("And so my fellow Americans ask not what your country can do for you ask what you ask not what your "
     "country can do for you ask what you ask not what your country can",
     "And so my fellow Americans ask not what your country can do for you ask what you"),
    ("produced, produced, produced, produced, produced, produced, produced, produced, produced", "produced"),
])
def test_a_decoding_loop_is_cut_at_its_first_repeat(text, expected):
    """A run of words said again at once, and continued the same way, is a loop: cut before it."""
    assert cut_loop(text) == expected


@pytest.mark.parametrize("text", [
    "And so my fellow Americans ask not what your country can do for you ask what you can do for your "
    "country.",
    "in being comparatively modern.",
    "",
    "yes yes yes",
])
def test_speech_that_merely_repeats_words_is_left_alone(text):
    """Repeated words that do not form a loop (JFK's chiasmus, a short 'yes yes yes') stay as said."""
    assert cut_loop(text) == text


@pytest.fixture(scope="module")
def decoder():
    engine, _ = build_engine(whisper_model=None, device="cpu", compute_type=None, cpu_threads=0,
                             partial_interval_ms=300)
    yield engine.decoder
    engine.close()


def test_partials_up_to_the_window_do_not_repeat_themselves(decoder):
    """Every 0.3 s of the 11 s JFK clip up to the 10 s partial window: no partial holds more words
    than were said (the clip has 22), which a loop would exceed."""
    audio = clip("jfk").astype(np.float32) / 32768
    lengths = []
    for secs in np.arange(3.0, 10.01, 0.3):
        words = decoder.partial(audio[: int(secs * 16000)], SpeechOptions()).text.split()
        lengths.append(len(words))
        assert len(words) <= 24, (round(float(secs), 1), " ".join(words))
    assert max(lengths) >= 15, "the partials should cover most of the sentence by 10 s"
