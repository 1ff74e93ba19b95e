"""The faster-whisper adapter: float32 16 kHz audio in, a ``Transcript`` out. Blocking; the engine
runs it in its decode pools, never on an event loop."""

from __future__ import annotations

import math
import threading
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .audio import TARGET_RATE, Float32Array
from .final_batch import EncoderBatcher
from .options import SpeechOptions, model_languages


@dataclass(frozen=True)
class Piece:
    """One Whisper segment, times in seconds from the start of the decoded audio."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    text: str
    confidence: float
    language: str | None
    pieces: tuple[Piece, ...] = ()


EMPTY = Transcript(text="", confidence=0.0, language=None)

# a partial segment the model itself rates as more likely silence than speech is not shown
NO_SPEECH_PARTIAL = 0.6
# encoder context of a short-context partial: below ~8 s tiny.en starts to repeat itself, and so it
# does when the speech runs to the end of the context: at least MIN_SILENCE_S of silence follows it
SHORT_CONTEXT_S = 10.0
MIN_SILENCE_S = 3.0
# a run of this many words said again at once is a decoding loop, not speech
LOOP_WORDS = 6
# Whisper's own window, and the shorter encoder context a final may use instead (FINAL_CONTEXT_S)
FULL_CONTEXT_S = 30.0
SHORT_FINAL_CONTEXT_S = 15.0
# faster-whisper's thresholds for a decode that went wrong (its temperature fallback's triggers)
COMPRESSION_RATIO_MAX = 2.4
LOGPROB_MIN = -1.0


def cut_loop(text: str) -> str:
    """Cut a greedy decode where it starts repeating itself ("ask what you ask not what your country
    ... ask what you ask not what ..."): at the first run of LOOP_WORDS words that occurred earlier in
    the text and is followed by more of the same. Speech rarely repeats a dozen words verbatim; a
    decoder that lost its place does. For a short-context final, a loop sends it to the full decode."""
    words = text.split()
    norm = [w.lower().strip(",.?!;:") for w in words]
    n = LOOP_WORDS
    seen: dict[tuple[str, ...], int] = {}
    for i in range(len(norm) - n + 1):
        gram = tuple(norm[i:i + n])
        j = seen.get(gram)
        after = norm[i + n:i + n + 3]
        if j is not None and norm[j + n:j + n + len(after)] == after:
            return " ".join(words[:i]).rstrip(",;:")
        seen.setdefault(gram, i)
    return text


class Decoder(Protocol):
    model_name: str

    @property
    def languages(self) -> tuple[str, ...]: ...

    def final(self, audio: Float32Array, options: SpeechOptions) -> Transcript: ...

    def partial(self, audio: Float32Array, options: SpeechOptions) -> Transcript: ...


def confidence(mean_logprob: float, speech_prob: float) -> float:
    """How sure the model was of a transcript, in [0, 1]: the geometric-mean token probability (the mean
    log-probability per token, exponentiated: 1.0 is certain, 0.5 a coin toss per token), scaled by the
    model's belief that it heard speech (1 - its ``no_speech_prob``), so a faint guess does not look as
    sure as clear speech."""
    return round(max(0.0, min(1.0, math.exp(mean_logprob) * speech_prob)), 4)


def confidence_of(segments: list[Any]) -> float:
    """``confidence`` of a timestamped decode: each faster-whisper segment carries ``avg_logprob`` (the
    mean log-probability of its tokens) and ``no_speech_prob``; both are averaged over the tokens."""
    tokens = sum(max(len(s.tokens), 1) for s in segments)
    if not tokens:
        return 0.0
    mean_logprob: float = sum(s.avg_logprob * max(len(s.tokens), 1) for s in segments) / tokens
    speech: float = sum((1.0 - s.no_speech_prob) * max(len(s.tokens), 1) for s in segments) / tokens
    return confidence(mean_logprob, speech)


class WhisperDecoder:
    """faster-whisper for finals and partials.

    At ``final_context_s`` 30 (this class's default) finals use faster-whisper's own defaults (beam 5,
    temperature fallback, conditioning on previous text), exactly what ``WhisperModel.transcribe`` does
    offline. Under 30 s (``build_engine`` gives the embedded model 15), a final that fits is first tried
    with beam 5 on that shorter encoder context, and kept only when it passes faster-whisper's own
    quality checks (``_short_context_final``); otherwise it is that offline decode.
    Partials are greedy and single-temperature: they are replaced within ``PARTIAL_INTERVAL_MS`` anyway.
    Whisper invents text ("you", "Thank you.") on silence and noise, so audio in which Silero VAD (shipped
    inside faster-whisper, no download) finds no speech is answered with an empty transcript, undecoded.
    With a ``batcher`` (``FINAL_BATCH``), the encoder calls of finals go through it: finals of several
    sessions that reach the encoder together share one pass (``final_batch``); partials never do.
    """

    def __init__(self, model: Any, model_name: str, *, beam_size: int = 5,
                 fast_partial_max_s: float = 10.0, final_context_s: float = FULL_CONTEXT_S,
                 batcher: EncoderBatcher | None = None, greedy_final_logprob: float | None = None) -> None:
        self.model = model
        self.batcher = batcher
        if batcher is not None:
            batcher.install(model)
        self.model_name = model_name
        self.beam_size = beam_size
        # below FULL_CONTEXT_S, finals that fit are decoded on a shorter encoder context (see final())
        self.final_context_s = final_context_s
        # a short-context final tried greedy first, kept when its mean log-probability is at least this
        # and it passes the beam's checks; beam 5 otherwise. None: beam 5 only (bench/RESULTS.md,
        # section 3's levers, measures it)
        self.greedy_final_logprob = greedy_final_logprob
        # audio up to this long gets a short-context partial; longer tails the full, timestamped decode
        self.fast_partial_max_s = fast_partial_max_s
        self.multilingual = bool(model.model.is_multilingual)
        self._tokenizers: dict[tuple[str, str], Any] = {}
        self._suppress_tokens: list[int] | None = None
        # Silero's ONNX session is created lazily by faster-whisper; make that happen once, safely.
        self._vad_lock = threading.Lock()
        self._vad_ready = False

    def has_speech(self, audio: Float32Array) -> bool:
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        if audio.size < TARGET_RATE // 10 or float(np.max(np.abs(audio))) < 1e-3:
            return False
        if not self._vad_ready:
            with self._vad_lock:
                get_speech_timestamps(np.zeros(TARGET_RATE // 2, dtype=np.float32), VadOptions())
                self._vad_ready = True
        # min_speech 150 ms: a click is not speech; the gate upstream already cut the long silences
        spans = get_speech_timestamps(audio, VadOptions(min_speech_duration_ms=150, threshold=0.5))
        return bool(spans)

    @property
    def languages(self) -> tuple[str, ...]:
        """What this model can transcribe (``en`` alone for the ``.en`` models)."""
        return model_languages(self.multilingual)

    def final(self, audio: Float32Array, options: SpeechOptions) -> Transcript:
        if not self.has_speech(audio):
            return EMPTY
        with self.batcher.joining() if self.batcher is not None else nullcontext():
            return self._final(audio, options)

    def _final(self, audio: Float32Array, options: SpeechOptions) -> Transcript:
        duration = audio.size / TARGET_RATE
        if (self.final_context_s < FULL_CONTEXT_S and duration + MIN_SILENCE_S <= FULL_CONTEXT_S
                and (options.language or not self.multilingual)):
            short = self._short_context_final(audio, options)
            if short is not None:
                return short
        segments, info = self.model.transcribe(audio, language=options.language, beam_size=self.beam_size,
                                               **self._bias(options))
        return self._transcript(list(segments), info.language)

    @staticmethod
    def _bias(options: SpeechOptions) -> dict[str, Any]:
        """The task, prompt and hotwords as faster-whisper's keywords, only where they differ from its
        defaults: a session that asks for nothing gets exactly the offline decode."""
        out: dict[str, Any] = {}
        if options.task != "transcribe":
            out["task"] = options.task
        if options.prompt:
            out["initial_prompt"] = options.prompt
        if options.hotwords:
            out["hotwords"] = options.hotwords
        return out

    def _short_context_final(self, audio: Float32Array, options: SpeechOptions) -> Transcript | None:
        """Beam search over an encoder context of ``final_context_s`` (at least the audio plus
        ``MIN_SILENCE_S`` of silence) instead of Whisper's 30 s window; None when the result shows any
        sign of a decode gone wrong, and the caller then decodes exactly as offline faster-whisper.

        On a CPU the encoder's pass over the padded 30 s is over half of a final's cost, and batching
        finals does not shrink it (bench/RESULTS.md, section 6). Whisper was trained on 30 s windows;
        with too short a context tiny.en can loop (on one machine, "... should be fine and form. It is
        of the first importance that ..." at 10 s; whether it does depends on the CPU's floating
        point), which is why the context is 15 s by default and why every result is checked as
        faster-whisper checks its own before falling back to a higher temperature: a compression ratio
        over 2.4 (repetition), a mean log-probability under -1, a loop of words, or a decode that ran
        to its length limit. Any of those, and the full decode runs instead.
        """
        duration = audio.size / TARGET_RATE
        context_s = min(FULL_CONTEXT_S, max(self.final_context_s, duration + MIN_SILENCE_S))
        if self.greedy_final_logprob is not None:
            greedy = self._checked_final(audio, options, context_s, 1, self.greedy_final_logprob)
            if greedy is not None:
                return greedy
        return self._checked_final(audio, options, context_s, self.beam_size, LOGPROB_MIN)

    def _checked_final(self, audio: Float32Array, options: SpeechOptions, context_s: float, beam_size: int,
                       min_logprob: float) -> Transcript | None:
        """One short-context decode, or None when it fails a check (see ``_short_context_final``) or
        its mean log-probability is under ``min_logprob``."""
        from faster_whisper.transcribe import get_compression_ratio

        tok, result, prompt_len, max_length = self._decode_on_context(audio, options, context_s,
                                                                      beam_size=beam_size)
        tokens = result.sequences_ids[0]
        text = tok.decode(tokens).strip()
        logprob = float(result.scores[0])  # length-normalised: the mean log-probability per token
        if (not text or cut_loop(text) != text or get_compression_ratio(text) > COMPRESSION_RATIO_MAX
                or logprob < min_logprob or len(tokens) + prompt_len >= max_length):
            return None
        return self._untimed(text, result, tok.language_code, audio.size / TARGET_RATE)

    def partial(self, audio: Float32Array, options: SpeechOptions) -> Transcript:
        # No Silero pass here: at the very start of an utterance it has too little context to say
        # "speech", and the first partial is the one a person waits for. Whisper's own no-speech
        # probability drops the "you" it would print on silence instead.
        if audio.size < TARGET_RATE // 10 or float(np.max(np.abs(audio))) < 1e-3:
            return EMPTY
        fits = audio.size <= self.fast_partial_max_s * TARGET_RATE
        if fits and (options.language or not self.multilingual):
            return self._short_context_partial(audio, options)
        # Long tails (past the engine's partial window) need segment timestamps to commit a prefix.
        segments, info = self.model.transcribe(
            audio, language=options.language, beam_size=1, temperature=0.0, condition_on_previous_text=False,
            **self._bias(options),
        )
        kept = [s for s in segments if s.no_speech_prob < NO_SPEECH_PARTIAL]
        return self._transcript(kept, info.language)

    def _short_context_partial(self, audio: Float32Array, options: SpeechOptions) -> Transcript:
        """A greedy decode whose encoder sees only the audio plus some silence, not 30 s.

        Whisper pads every input to 30 s, so a partial of one second of speech costs as much encoder
        work as thirty. CTranslate2's encoder accepts a shorter input; given too little of it, tiny.en
        loops ("produced, produced, produced"), but with at least ``SHORT_CONTEXT_S`` of context (the
        audio, then silence) it ends its text where the speech ends. That cuts a partial's cost 3-4x on
        a CPU. Finals have their own, checked, variant: ``_short_context_final``.
        """
        duration = audio.size / TARGET_RATE
        tok, result, _, _ = self._decode_on_context(
            audio, options, max(SHORT_CONTEXT_S, duration + MIN_SILENCE_S), beam_size=1)
        text = cut_loop(tok.decode(result.sequences_ids[0]).strip())
        if not text or result.no_speech_prob >= NO_SPEECH_PARTIAL:
            return EMPTY
        return self._untimed(text, result, tok.language_code, duration)

    @staticmethod
    def _untimed(text: str, result: Any, lang: str, duration: float) -> Transcript:
        """A decode without timestamps (``_decode_on_context``) as one piece covering the audio; its
        ``scores[0]`` is length-normalised, the mean log-probability per token."""
        sure = confidence(float(result.scores[0]), 1 - result.no_speech_prob)
        return Transcript(text=text, confidence=sure, language=lang, pieces=(Piece(0.0, duration, text),))

    def _decode_on_context(self, audio: Float32Array, options: SpeechOptions, context_s: float,
                           beam_size: int) -> tuple[Any, Any, int, int]:
        """One decode, without timestamps, whose encoder sees the audio then silence up to ``context_s``
        (not Whisper's 30 s). The prompt is faster-whisper's own (``get_prompt``: the hotwords and the
        initial prompt after ``sot_prev``), as its offline decode builds it. Returns the tokenizer,
        CTranslate2's result, the prompt's length and the length limit (prompt included) used."""
        duration = audio.size / TARGET_RATE
        silence = np.zeros(int((context_s - duration) * TARGET_RATE), dtype=np.float32)
        features = self.model.feature_extractor(np.concatenate([audio, silence]), padding=0)
        features = features[:, : features.shape[1] // 2 * 2]  # the encoder's first conv has stride 2
        tok = self._tokenizer(options.language or "en", options.task)
        previous = tok.encode(" " + options.prompt) if options.prompt else []
        prompt = self.model.get_prompt(tok, previous, without_timestamps=True, hotwords=options.hotwords)
        # speech runs at 2-5 tokens a second; 8 a second plus a margin is room for any real sentence
        max_length = min(self.model.max_length, len(prompt) + int(duration * 8) + 22)
        result = self.model.model.generate(
            self.model.encode(features), [prompt], beam_size=beam_size,
            max_length=max_length, return_scores=True, return_no_speech_prob=True, suppress_blank=True,
            suppress_tokens=self._suppress(tok),
        )[0]
        return tok, result, len(prompt), max_length

    def _tokenizer(self, lang: str, task: str) -> Any:
        from faster_whisper.tokenizer import Tokenizer

        tok = self._tokenizers.get((lang, task))
        if tok is None:  # read-only once built, so sharing it between decode threads is safe
            tok = self._tokenizers[(lang, task)] = Tokenizer(self.model.hf_tokenizer, self.multilingual,
                                                             task=task, language=lang)
        return tok

    def _suppress(self, tok: Any) -> list[int]:
        if self._suppress_tokens is None:
            from faster_whisper.transcribe import get_suppressed_tokens

            self._suppress_tokens = list(get_suppressed_tokens(tok, [-1]))
        return self._suppress_tokens

    @staticmethod
    def _transcript(segments: list[Any], language: str | None) -> Transcript:
        pieces = tuple(Piece(float(s.start), float(s.end), s.text.strip())
                       for s in segments if s.text.strip())
        text = " ".join(p.text for p in pieces)
        return Transcript(text=text, confidence=confidence_of(segments) if pieces else 0.0,
                          language=language, pieces=pieces)
