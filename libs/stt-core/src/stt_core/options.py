"""How one session wants its speech transcribed: language, task, and a vocabulary bias.

The same options reach the decoder from every entry point: ``/stt``'s ``init``, Wyoming's
``transcribe`` (its ``transcript_names`` and ``transcript_terms`` become hotwords, names first), the
worker's ``WHISPER_*`` variables. They are checked once, where they come in, against what the loaded
model can do: a language an English-only model cannot speak is an error naming the languages it can,
not a crash and not a silent English decode.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

from .errors import PeerError

Task = Literal["transcribe", "translate"]
TASKS: tuple[Task, ...] = get_args(Task)

# Whisper's prompt window is half its 448-token context; 600 characters is well inside it, and room
# for every room, device and person name a house has
MAX_PROMPT_CHARS = 600
MAX_HOTWORDS_CHARS = 600
MAX_LANGUAGE_CHARS = 16


@dataclass(frozen=True)
class SpeechOptions:
    language: str | None = "en"  # None: detected, on a multilingual model
    task: Task = "transcribe"  # translate: any language in, English text out (multilingual models)
    prompt: str | None = None  # text the speech is likely to follow or resemble (Whisper's initial prompt)
    hotwords: str | None = None  # words and names to bias the decoder towards


def model_languages(multilingual: bool) -> tuple[str, ...]:
    """The language codes a model can transcribe: ``en`` alone for the ``.en`` models, Whisper's
    whole list for a multilingual one (faster-whisper's own table, so it cannot drift from it)."""
    if not multilingual:
        return ("en",)
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return tuple(_LANGUAGE_CODES)


def _clean_text(name: str, value: object, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PeerError("bad_option", f"{name} must be a string, got {type(value).__name__}")
    text = " ".join(value.split())
    if not text:
        return None
    if len(text) > limit:
        raise PeerError("bad_option", f"{name} is {len(text)} characters; at most {limit}")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs") for ch in text):
        raise PeerError("bad_option", f"{name} must be plain text (no control or format characters)")
    return text


def check_options(*, languages: Iterable[str], language: object = "en", task: object = "transcribe",
                  prompt: object = None, hotwords: object = None) -> SpeechOptions:
    """Options from a peer, validated; ``PeerError("bad_option")`` says what is allowed."""
    known = tuple(languages)
    lang: str | None
    if language is None or language in ("", "auto"):
        lang = known[0] if len(known) == 1 else None  # an English-only model has nothing to detect
    elif not isinstance(language, str) or len(language) > MAX_LANGUAGE_CHARS:
        raise PeerError("bad_option", f"language must be a language code such as {known[0]!r}")
    else:
        lang = language.strip().lower()
        if lang not in known:
            shown = ", ".join(known[:12]) + (f", ... ({len(known)} in all)" if len(known) > 12 else "")
            detect = " (or null / auto to detect it)" if len(known) > 1 else ""
            raise PeerError("bad_option",
                            f"language {lang!r} is not one this model can do; it does: {shown}{detect}")
    if task not in TASKS:
        raise PeerError("bad_option", f"task must be one of {', '.join(TASKS)}; got {str(task)[:20]!r}")
    if task == "translate" and len(known) == 1:
        raise PeerError("bad_option", "task translate needs a multilingual model; this one is English-only")
    return SpeechOptions(language=lang, task=task,
                         prompt=_clean_text("prompt", prompt, MAX_PROMPT_CHARS),
                         hotwords=_clean_text("hotwords", hotwords, MAX_HOTWORDS_CHARS))


def hotwords_of(names: Iterable[str] | None, terms: Iterable[str] | None) -> str | None:
    """Wyoming's ``transcript_names`` then ``transcript_terms`` as one hotword list, names first so
    that they survive when the whole is cut to ``MAX_HOTWORDS_CHARS``."""
    words: list[str] = []
    for item in [*(names or ()), *(terms or ())]:
        if isinstance(item, str) and (w := " ".join(item.split())) and w not in words:
            words.append(w)
    out = ""
    for w in words:
        nxt = f"{out}, {w}" if out else w
        if len(nxt) > MAX_HOTWORDS_CHARS:
            break
        out = nxt
    return out or None
