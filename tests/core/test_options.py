"""Per-session speech options: checked once against the model where they come in, the same for
/stt's init, Wyoming's transcribe and the worker; and a real decode shows that the bias works."""

from __future__ import annotations

import json

import pytest
from stt_core import session as s
from stt_core.errors import PeerError
from stt_core.options import (
    MAX_HOTWORDS_CHARS,
    MAX_PROMPT_CHARS,
    SpeechOptions,
    check_options,
    hotwords_of,
    model_languages,
)

EN = ("en",)
MULTI = model_languages(True)


@pytest.mark.parametrize(("kwargs", "languages", "expected"), [
    ({}, EN, SpeechOptions(language="en")),
    ({"language": None}, EN, SpeechOptions(language="en")),  # English-only: nothing to detect
    ({"language": "auto"}, MULTI, SpeechOptions(language=None)),
    ({"language": ""}, MULTI, SpeechOptions(language=None)),
    ({"language": "DE"}, MULTI, SpeechOptions(language="de")),
    ({"language": "fr", "task": "translate"}, MULTI, SpeechOptions(language="fr", task="translate")),
    ({"prompt": "  Kwesi  and\tSiobhan "}, EN, SpeechOptions(prompt="Kwesi and Siobhan")),
    ({"hotwords": ""}, EN, SpeechOptions()),
])
def test_good_options_are_normalised(kwargs, languages, expected):
    assert check_options(languages=languages, **kwargs) == expected


@pytest.mark.parametrize(("kwargs", "languages", "said"), [
    ({"language": "de"}, EN, "it does: en"),
    ({"language": "xx"}, MULTI, "or null / auto to detect it"),
    ({"language": 5}, EN, "language must be a language code"),
    ({"task": "summarise"}, EN, "task must be one of transcribe, translate"),
    ({"task": "translate"}, EN, "needs a multilingual model"),
    ({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, EN, f"at most {MAX_PROMPT_CHARS}"),
    ({"hotwords": "a\u0000b"}, EN, "plain text"),
    ({"hotwords": ["a"]}, EN, "must be a string"),
])
def test_bad_options_are_refused_saying_what_is_allowed(kwargs, languages, said):
    with pytest.raises(PeerError) as err:
        check_options(languages=languages, **kwargs)
    assert err.value.code == "bad_option"
    assert said in err.value.message


def test_wyoming_names_come_before_terms_and_survive_the_cut():
    assert hotwords_of(["Kwesi", "Siobhan"], ["lamp", "Kwesi"]) == "Kwesi, Siobhan, lamp"
    assert hotwords_of(None, None) is None
    many = hotwords_of(["Name"], [f"term{i}" for i in range(500)])
    assert many is not None
    assert many.startswith("Name, term0")
    assert len(many) <= MAX_HOTWORDS_CHARS


def init(m: s.SessionMachine, **fields: object) -> list[s.Action]:
    return m.receive_text(json.dumps({"type": "init", **fields}))


def test_stt_init_carries_the_options_into_every_segment():
    m = s.SessionMachine(languages=MULTI)
    init(m, lang="auto", task="translate", prompt="Kwesi", hotwords="lamp, sofa")
    opened = m.receive_bytes(b"\0\0" * 320, 0.0)[0]
    assert isinstance(opened, s.OpenSegment)
    assert opened.options == SpeechOptions(language=None, task="translate", prompt="Kwesi",
                                           hotwords="lamp, sofa")


def test_stt_init_with_a_language_the_model_lacks_is_an_error_and_a_close():
    acts = init(s.SessionMachine(languages=EN), lang="de")
    assert isinstance(acts[0], s.Send)
    assert acts[0].message.code == "bad_option"  # type: ignore[union-attr]
    assert "it does: en" in acts[0].message.message  # type: ignore[union-attr]
    assert isinstance(acts[-1], s.Close)
