"""DRAFT_MODEL in the engine: partials from the draft, every final from WHISPER_MODEL's model.

No larger CTranslate2 Whisper model can be fetched here at test time, so these tests use two
differently configured copies of the embedded tiny.en (tests/support/draft_model.py): the draft copy's
tokenizer decodes "e" as "ə", so text the draft made is visible wherever it lands. Both are real
models loaded by ``build_engine``, decoding real speech in the real ``Engine``; each decoder is wrapped
only to count what it was asked to do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stt_core import build
from stt_core.build import EngineInfo, build_engine
from stt_core.decoder import Decoder, Transcript, WhisperDecoder
from stt_core.engine import Engine, PartialResult
from stt_core.errors import ConfigError
from stt_core.model import EMBEDDED_NAME
from stt_core.options import SpeechOptions

from harness.speech import clip, refs, wer
from tests.core.test_engine import feed_paced
from tests.support.draft_model import MARK, marked_draft_copy

EN = SpeechOptions(language="en")


class Counting:
    """A real decoder, with every request it served recorded: (kind, text)."""

    def __init__(self, inner: Decoder) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.served: list[tuple[str, str]] = []

    @property
    def languages(self) -> tuple[str, ...]:
        return self.inner.languages

    def final(self, audio: np.ndarray, options: SpeechOptions) -> Transcript:
        out = self.inner.final(audio, options)
        self.served.append(("final", out.text))
        return out

    def partial(self, audio: np.ndarray, options: SpeechOptions) -> Transcript:
        out = self.inner.partial(audio, options)
        self.served.append(("partial", out.text))
        return out

    def kinds(self) -> set[str]:
        return {kind for kind, _ in self.served}


@pytest.fixture(scope="module")
def draft_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return marked_draft_copy(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def built(draft_dir: Path) -> Iterator[tuple[Engine, EngineInfo]]:
    engine, info = build_engine(whisper_model=None, draft_model=str(draft_dir), device="cpu",
                                compute_type=None, cpu_threads=0, partial_interval_ms=300)
    yield engine, info
    engine.close()


@pytest.fixture
def counted(built: tuple[Engine, EngineInfo]) -> Iterator[tuple[Engine, Counting, Counting]]:
    """A fresh engine on the two loaded decoders, each counted."""
    loaded = built[0]
    finals, drafts = Counting(loaded.decoder), Counting(loaded.draft)
    engine = Engine(finals, loaded.config, draft=drafts)
    yield engine, finals, drafts
    engine.close()


def test_both_models_are_loaded_and_named(built: tuple[Engine, EngineInfo], draft_dir: Path) -> None:
    """``model`` stays the finals' model (the embedded one); ``draft_model`` names the copy; the two
    decoders are distinct objects on distinct CTranslate2 models."""
    engine, info = built
    assert info.model == EMBEDDED_NAME
    assert info.draft_model == draft_dir.name
    assert engine.model_name == EMBEDDED_NAME
    assert engine.draft_model_name == draft_dir.name
    assert isinstance(engine.decoder, WhisperDecoder)
    assert isinstance(engine.draft, WhisperDecoder)
    assert engine.draft is not engine.decoder
    assert engine.draft.model is not engine.decoder.model


def test_the_two_copies_really_decode_differently(built: tuple[Engine, EngineInfo]) -> None:
    """The premise of the other tests: the same audio, partial-decoded by each model, gives marked text
    from the draft and unmarked text from the final model."""
    engine, _ = built
    audio = clip("LJ001-0008").astype(np.float32) / 32768.0
    by_draft = engine.draft.partial(audio, EN).text
    by_final = engine.decoder.partial(audio, EN).text
    assert MARK in by_draft, by_draft
    assert MARK not in by_final, by_final
    assert by_draft.replace(MARK, "e") == by_final


async def test_partials_come_from_the_draft_and_the_final_from_the_final_model(
        counted: tuple[Engine, Counting, Counting]) -> None:
    """A clip streamed in real time: every partial decode is the draft's (its text has no plain "e"),
    the final is the final model's only decode and carries no draft text; its text is the final
    model's decode of the whole utterance, and it is right."""
    engine, finals, drafts = counted
    partials: list[PartialResult] = []

    async def on_partial(p: PartialResult) -> None:
        partials.append(p)

    name = "LJ001-0011"
    seg = engine.open_segment(options=EN, on_partial=on_partial)
    await feed_paced(seg, clip(name), speed=1.5)
    final = await seg.finish()
    assert partials, "no partial while a 5 s sentence was fed"
    assert drafts.kinds() == {"partial"}, drafts.served
    assert finals.kinds() == {"final"}, finals.served
    assert len(finals.served) == 1
    # the draft cannot write a plain "e": partials have none, and some have its mark instead
    assert all("e" not in p.text for p in partials), [p.text for p in partials]
    assert any(MARK in p.text for p in partials), [p.text for p in partials]
    assert MARK not in final.text
    assert "e" in final.text
    assert final.text == finals.served[0][1]
    assert wer([(refs()[name], final.text)]) < 0.2, final.text


async def test_a_speculative_final_is_the_final_models(counted: tuple[Engine, Counting, Counting]) -> None:
    """The final begun at a pause (``Segment.pause``) is decoded by the final model, never the draft,
    and is what ``finish`` returns."""
    engine, finals, drafts = counted
    seg = engine.open_segment(options=EN, on_partial=lambda p: asyncio.sleep(0))
    await feed_paced(seg, clip("LJ001-0002"), speed=3.0)
    assert seg.pause()
    async with asyncio.timeout(60):
        while not finals.served:  # noqa: ASYNC110 (the decode thread appends; nothing to await)
            await asyncio.sleep(0.02)
    final = await seg.finish()
    assert final.speculative
    assert "final" not in drafts.kinds()
    assert [k for k, _ in finals.served] == ["final"]
    assert MARK not in final.text
    assert final.text == finals.served[0][1]


async def test_transcribe_uses_only_the_final_model(counted: tuple[Engine, Counting, Counting]) -> None:
    """``Engine.transcribe`` (a whole utterance at once, as Wyoming's non-streaming path and the
    seed dialects' finals are) is the final model's."""
    engine, finals, drafts = counted
    result = await engine.transcribe(clip("LJ001-0002").astype(np.float32) / 32768.0, EN)
    assert drafts.served == []
    assert finals.kinds() == {"final"}
    assert MARK not in result.text
    assert "modern" in result.text.lower()


async def test_a_committed_partial_prefix_never_reaches_the_final(
        counted: tuple[Engine, Counting, Counting]) -> None:
    """A long utterance (past the 10 s partial window) makes the engine commit a prefix of the
    draft's partials; the final still decodes the whole audio with the final model alone."""
    engine, finals, drafts = counted
    pcm = np.concatenate([clip("LJ001-0001"), clip("LJ001-0003")])  # ~19 s
    partials: list[str] = []

    async def on_partial(p: PartialResult) -> None:
        partials.append(p.text)

    seg = engine.open_segment(options=EN, on_partial=on_partial)
    await feed_paced(seg, pcm, speed=1.0)  # as a microphone: the tail outgrows the window
    final = await seg.finish()
    assert MARK in seg._committed_text, f"no prefix committed from the draft: {seg._committed_text!r}"
    assert all("e" not in p for p in partials), partials
    assert MARK not in final.text
    assert finals.kinds() == {"final"}
    assert drafts.kinds() == {"partial"}


class Langs:
    """A stand-in with only what ``partial_decoder`` looks at."""

    def __init__(self, name: str, languages: tuple[str, ...]) -> None:
        self.model_name = name
        self.languages = languages

    def final(self, audio: Any, options: SpeechOptions) -> Transcript:
        raise AssertionError("not decoded")

    def partial(self, audio: Any, options: SpeechOptions) -> Transcript:
        raise AssertionError("not decoded")


@pytest.mark.parametrize(("options", "by"), [
    (SpeechOptions(language="en"), "draft"),
    (SpeechOptions(language="de"), "final"),
    (SpeechOptions(language=None), "final"),
    (SpeechOptions(language="de", task="translate"), "final"),
])
def test_an_english_only_draft_leaves_other_languages_to_the_final_model(options: SpeechOptions,
                                                                          by: str) -> None:
    """Beside a multilingual final model an English-only draft serves English partials only: other
    languages, detection and translation get partials from the final model, never English guesses."""
    final, draft = Langs("final", ("en", "de", "fr")), Langs("draft", ("en",))
    engine = Engine(final, draft=draft)
    try:
        assert engine.partial_decoder(options).model_name == by
    finally:
        engine.close()


def count_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    loads: list[str] = []
    real = build.load_whisper

    def counting(spec: Any, **kw: Any) -> Any:
        loads.append(spec.source)
        return real(spec, **kw)

    monkeypatch.setattr(build, "load_whisper", counting)
    return loads


@pytest.mark.parametrize("draft", [None, "", "embedded"])
def test_no_draft_or_the_same_model_loads_one_model(monkeypatch: pytest.MonkeyPatch,
                                                    draft: str | None) -> None:
    """DRAFT_MODEL unset (or naming the finals' own model) is one model as before: loaded once, one
    decoder for both kinds, no ``draft_model`` reported."""
    loads = count_loads(monkeypatch)
    engine, info = build_engine(whisper_model=None, draft_model=draft, device="cpu", compute_type=None,
                                cpu_threads=0, partial_interval_ms=300)
    try:
        assert len(loads) == 1
        assert engine.draft is engine.decoder
        assert engine.draft_model_name is None
        assert info.draft_model is None
    finally:
        engine.close()


def test_a_missing_draft_directory_is_a_config_error_naming_draft_model(tmp_path: Path) -> None:
    """DRAFT_MODEL pointing nowhere is the operator's error, named as such (the apps exit 78)."""
    with pytest.raises(ConfigError) as err:
        build_engine(whisper_model=None, draft_model=str(tmp_path / "no" / "such"), device="cpu",
                     compute_type=None, cpu_threads=0, partial_interval_ms=300)
    assert err.value.variable == "DRAFT_MODEL"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError) as err:
        build_engine(whisper_model=None, draft_model=str(empty), device="cpu", compute_type=None,
                     cpu_threads=0, partial_interval_ms=300)
    assert err.value.variable == "DRAFT_MODEL"
    assert "model.bin" in err.value.message
