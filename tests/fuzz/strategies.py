"""Strategies shared by the fuzz tests: well-formed messages built from the real message shapes (so
the fuzzer gets past the decoders into the machines), mixed with garbage of every kind a hostile
peer can send (random text, random JSON, deep nesting, huge numbers, random bytes, odd lengths)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from hypothesis import strategies as st
from stt_core.engine import FinalResult, PartialResult
from stt_core.errors import PeerError
from stt_core.session import Limits
from stt_core.vad import VadConfig

# ---- garbage ---------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.sampled_from(["", "en", "auto", "type", "init", "\x00", "\u202e", "🙂"]))

json_values: st.SearchStrategy[Any] = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                     st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12)


@st.composite
def deep_nesting(draw: st.DrawFn) -> str:
    """``[[[[...`` or ``{"a":{"a":...`` deep enough to reach the parser's recursion limit."""
    depth = draw(st.sampled_from([65, 200, 1100, 5000]))
    if draw(st.booleans()):
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


@st.composite
def huge_number(draw: st.DrawFn) -> str:
    digits = draw(st.sampled_from([41, 400, 4301, 10_000]))
    kind = draw(st.sampled_from(["int", "neg", "float", "exp"]))
    body = "9" * digits
    return {"int": body, "neg": "-" + body, "float": body + ".5", "exp": "1e" + body}[kind]


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


def garbage_text(*messages: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[str]:
    """Text frames that are anything but what a peer should send; ``messages`` (dicts of the real
    shapes) are mutated: a field replaced or added with random JSON, a huge number, a deep structure."""
    mutated = [_mutated(m) for m in messages]
    big = [st.builds(lambda m, n: _dumps(m)[:-1] + f', "x": {n}}}', m, huge_number()) for m in messages]
    deep = [st.builds(lambda m, d: _dumps(m)[:-1] + f', "x": {d}}}', m, deep_nesting()) for m in messages]
    return st.one_of(
        st.text(max_size=200), st.builds(_dumps, json_values), deep_nesting(), huge_number(),
        st.sampled_from(["", " ", "null", "[]", "{}", "NaN", "Infinity", '{"type": null}', '{"type": 1}',
                         '{"type": {}}', '{"type": []}', '"{}"', "{", "}", '{"type":"init"', "\ud800"]),
        *mutated, *big, *deep)


@st.composite
def _mutated(draw: st.DrawFn, messages: st.SearchStrategy[dict[str, Any]]) -> str:
    out = dict(draw(messages))
    keys = sorted(out)
    key = draw(st.sampled_from(keys) if keys and draw(st.booleans()) else st.text(max_size=12))
    out[key] = draw(json_values)
    return _dumps(out)


random_bytes = st.one_of(st.binary(max_size=64), st.binary(min_size=1, max_size=4096),
                         st.integers(0, 70_000).map(lambda n: b"\x01" * n))

# ---- audio ------------------------------------------------------------------------------------

LOUD = 8000  # the fuzz classifier's speech: any frame this loud (see ``loud_classifier``)
# a loud square wave of 2 kHz at 16 kHz (8 samples a period): low enough to survive resampling from
# any rate the dialects take, so it is speech after their conversion too
TONE = np.array([LOUD] * 4 + [-LOUD] * 4, dtype="<i2")


def loud_classifier(_config: object) -> Any:
    """Stands in for webrtcvad in the dialect machines: a frame is speech when it is loud. Cheap and
    predictable, so the fuzzer can open and close segments when it wants to."""

    def is_speech(frame: bytes) -> bool:
        samples = np.frombuffer(frame, dtype="<i2")
        return bool(samples.size) and float(np.abs(samples.astype(np.int32)).mean()) > LOUD / 2

    return is_speech


@st.composite
def pcm16(draw: st.DrawFn, max_ms: int = 400) -> bytes:
    """16 kHz S16LE mono: loud (speech to the fuzz classifier) or silent, or random samples; whole
    samples, any length up to ``max_ms``."""
    ms = draw(st.integers(0, max_ms))
    n = ms * 16
    kind = draw(st.sampled_from(["loud", "loud", "silent", "random"]))
    if kind == "loud":
        return np.tile(TONE, n // TONE.size + 1)[:n].tobytes()
    if kind == "silent":
        return bytes(2 * n)
    return even(draw(st.binary(max_size=min(2 * n, 4096))))


def even(data: bytes) -> bytes:
    return data[: len(data) // 2 * 2]


# seconds between two inputs: mostly a frame's worth, sometimes a burst, sometimes a long gap
gaps = st.one_of(st.just(0.02), st.floats(0.0, 0.05), st.just(0.0), st.floats(0.5, 3.0))


def outcome(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """What ``fn`` returns, or the ``PeerError`` it raised (any other exception propagates: the bug the
    fuzzer is looking for)."""
    try:
        return fn(*args, **kwargs)
    except PeerError as exc:
        return exc


# ---- the real messages ---------------------------------------------------------------------------

rates = st.one_of(st.sampled_from([8000, 16000, 44100, 48000]), st.integers(8000 - 10, 48000 + 10))
client_messages: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.fixed_dictionaries({"type": st.just("init")}, optional={
        "session_id": st.one_of(st.none(), st.text(max_size=140)), "sample_rate": rates,
        "lang": st.sampled_from([None, "", "auto", "en", "de", "EN ", "xx", "a" * 17]),
        "enable_partials": st.booleans(), "task": st.sampled_from(["transcribe", "translate", "x"]),
        "prompt": st.one_of(st.none(), st.text(max_size=40)),
        "hotwords": st.one_of(st.none(), st.text(max_size=40))}),
    st.sampled_from([{"type": t} for t in ("end", "health", "pause", "resume")]))

final_reasons = st.sampled_from(["end", "max_segment", "shutdown", "error"])

# what the engine hands the machines back (the adapter calls ``partial`` and ``final`` with them)
partial_results = st.builds(PartialResult, text=st.text(max_size=30), confidence=st.floats(0, 1),
                            t_ms=st.integers(0, 60_000))
final_results = st.builds(FinalResult, text=st.text(max_size=30), confidence=st.floats(0, 1),
                          t_ms=st.integers(0, 60_000), language=st.sampled_from([None, "en"]),
                          decode_ms=st.integers(0, 5000), speculative=st.booleans())

# the gate with short times, so a few hundred ms of audio open, pause, resume and end segments; and
# the default one now and then
vad_configs = st.one_of(
    st.builds(VadConfig, frame_ms=st.sampled_from([10, 20, 30]), preroll_ms=st.sampled_from([0, 30, 300]),
              start_ms=st.sampled_from([10, 30, 90]), start_window_ms=st.sampled_from([30, 150]),
              hangover_ms=st.sampled_from([30, 90, 600]), min_speech_ms=st.sampled_from([0, 40, 250]),
              pause_ms=st.sampled_from([20, 150]), max_utterance_s=st.sampled_from([0.3, 30.0])),
    st.just(VadConfig()))

limits = st.builds(Limits, max_frame_bytes=st.sampled_from([4096, *[64 * 1024] * 3]),
                   max_segment_s=st.sampled_from([0.2, 1.0, 60.0]),
                   max_frames_per_s=st.sampled_from([20, 400, 400, 400]))


def weighted(*pairs: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each drawn about ``weight`` times as often as a weight of 1 (well-formed
    input mostly, so that sequences get deep into a machine before garbage closes it)."""
    # (``one_of`` would not do: it draws each distinct strategy alike, however often it is named)
    choices = [strategy for weight, strategy in pairs for _ in range(weight)]
    return st.sampled_from(choices).flatmap(lambda x: x)


loud_pcm = st.integers(1, 120).map(lambda ms: np.tile(TONE, ms * 2).tobytes())


def sequences(step: st.SearchStrategy[Any], burst: st.SearchStrategy[Any], max_size: int = 30) \
        -> st.SearchStrategy[list[Any]]:
    """Lists of steps, with runs of ``burst`` steps (speech: a gate opens only on several loud frames in
    a row) among the single ones."""
    runs = weighted((3, step.map(lambda x: [x])), (1, st.lists(burst, min_size=3, max_size=12)))
    return st.lists(runs, min_size=1, max_size=max_size // 3).map(lambda xs: [s for run in xs for s in run])
