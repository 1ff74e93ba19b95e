"""The streaming engine: audio chunks in, partials while they arrive, one final at the end.

One ``Engine`` per process holds the decoder (one model, shared by every session) and two bounded
decode pools. Finals have a pool of their own, so a final never waits behind partials, of its own
session or anyone else's; partials take what capacity is left, and when the decoder is slower than
``PARTIAL_INTERVAL_MS`` their cadence degrades, never their freshness: each partial decodes the
latest audio at the moment it starts, and a segment has at most one partial in flight. Under load the
engine, not the pool's FIFO queue, chooses the next partial: the segment whose last partial began
longest ago (``partial_order="fair"``; at 8 streams on 2 cores it cut the partial gap to 0.41x of the
first-come order's, bench/RESULTS.md section 3.1).

Partials on long utterances stay bounded in cost with a committed prefix (the idea of
whisper_streaming's local agreement, simplified): once the undecided tail is longer than
``partial_window_s``, the Whisper segments that end well before the tail's end are committed, and
later partials decode only the audio after them. The final always decodes the whole utterance at once,
as a file would be: streaming itself costs it nothing. How it is decoded is the decoder's choice
(``FINAL_CONTEXT_S``): exactly faster-whisper's offline transcribe at 30 s; by default for the embedded
model a 15 s encoder context, checked as faster-whisper checks its own and decoded offline when a check
fails (``decoder.WhisperDecoder``).

With a draft model (``DRAFT_MODEL``, seed 003's hybrid) the engine holds two decoders: ``draft``
decodes partials, ``decoder`` everything that becomes a final (the final at ``finish()``, the
speculative final begun at ``pause()``, ``transcribe``). A partial's text, committed prefix included,
only ever reaches ``on_partial``: no final is made from it. A session whose options the draft cannot
serve (a language or task an English-only draft lacks) gets its partials from the final model.

The final need not wait for the end of the segment either. A caller that knows trailing silence has
begun (the worker's voice gate, ``pause()``) lets the engine start the final's decode then, while the
hangover runs; ``resume()`` (speech came back) drops it. At ``finish()`` a speculative decode whose
audio ends where speech ended is the final: only silence came after it.

A pause comes from the peer, so what it may cost is bounded per segment: one speculative decode in
flight at a time (a pause while a stale one still decodes waits for it to end), and a budget of
``speculative_burst`` starts refilled one per ``speculative_every_s``; a pause beyond it is ignored
(``Segment.pause`` says so, the server counts it) and that final is decoded at ``finish()`` as any
other. A speculative decode is a guess, so it has no priority over anyone: it does not hold back other
sessions' partials as a real final does, and it does not start while a real final is pending. Measured
with a client sending pause/resume as fast as the frame limit allows beside one streaming normally
(tests/server/test_fairness.py, 2 cores, tiny.en): before these bounds the normal client's median
end -> final went from 0.87 s alone to 2.5 s beside it and its partials per utterance from 10 to 5
(to 1 when the hostile client also asked for partials); with them, 1.13 s -> 1.07 s and 10 -> 9.
"""

from __future__ import annotations

import asyncio
import heapq
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
import structlog

from .audio import TARGET_RATE, Float32Array, StreamResampler, pcm16_to_float
from .decoder import Decoder, Transcript
from .options import SpeechOptions

DEFAULT_OPTIONS = SpeechOptions()

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class EngineConfig:
    partial_interval_ms: int = 300
    # the first partial is decoded as soon as this much audio has arrived, not one interval later
    first_partial_ms: int = 300
    partial_window_s: float = 10.0
    final_workers: int = 1
    partial_workers: int = 1
    # who decodes the next partial when more segments want one than there are partial workers:
    # "fair", the segment whose last partial began longest ago (a new segment counts from its opening);
    # "fifo", the one that asked first (bench/RESULTS.md, section 3, measures the two)
    partial_order: Literal["fair", "fifo"] = "fair"
    # speculative finals per segment: this many at once, then one more per speculative_every_s; the
    # worker's gate pauses once per stretch of trailing silence, a few times in a long utterance
    speculative_burst: int = 3
    speculative_every_s: float = 10.0


@dataclass(frozen=True)
class PartialResult:
    text: str
    confidence: float
    t_ms: int  # audio time covered, from the start of the segment


@dataclass(frozen=True)
class FinalResult:
    text: str
    confidence: float
    t_ms: int
    language: str | None
    decode_ms: int  # wall time from finish() to the result
    speculative: bool = False  # the decode began at pause(), before finish()


PartialCallback = Callable[[PartialResult], Awaitable[None]]


@dataclass
class _Speculation:
    """One speculative final: from ``pause()`` until its decode is over (or skipped, once stale)."""

    task: asyncio.Task[Transcript | None] | None = None
    stale: bool = False  # speech came back (resume): its result is no longer the final
    started: bool = False  # a decode thread has begun on it (set in that thread)


class Engine:
    def __init__(self, decoder: Decoder, config: EngineConfig | None = None, *,
                 draft: Decoder | None = None) -> None:
        self.decoder = decoder  # finals
        self.draft = draft or decoder  # partials
        self.config = config or EngineConfig()
        self._finals = ThreadPoolExecutor(self.config.final_workers, thread_name_prefix="final")
        self._partials = ThreadPoolExecutor(self.config.partial_workers, thread_name_prefix="partial")
        self.active_segments = 0
        # told the kind, wall time and model of every decode (the server's /metrics)
        self.on_decode: Callable[[str, float, str], None] | None = None
        self._finals_pending = 0
        # the partials' scheduler (_partial_turn): free partial workers, and the segments waiting for
        # one, as (key, arrival, future); a cancelled waiter stays in the heap until it is popped
        self._partial_slots = self.config.partial_workers
        self._partial_queue: list[tuple[float, int, asyncio.Future[None]]] = []
        self._partial_arrivals = 0
        self._no_finals_event: asyncio.Event | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None

    @property
    def model_name(self) -> str:
        return self.decoder.model_name

    @property
    def draft_model_name(self) -> str | None:
        """The partials' own model, or None when the final model decodes them too."""
        return self.draft.model_name if self.draft is not self.decoder else None

    def partial_decoder(self, options: SpeechOptions) -> Decoder:
        """The draft, when it can do what the session asked (its language, or detection, and its
        task); otherwise the final model, so that a partial is never in a language nobody asked for."""
        draft = self.draft
        if draft is self.decoder:
            return draft
        multilingual = len(draft.languages) > 1
        if options.language is None or options.task != "transcribe":
            return draft if multilingual else self.decoder
        return draft if options.language in draft.languages else self.decoder

    def open_segment(self, *, sample_rate: int = TARGET_RATE, options: SpeechOptions = DEFAULT_OPTIONS,
                     on_partial: PartialCallback | None = None) -> Segment:
        return Segment(self, sample_rate=sample_rate, options=options, on_partial=on_partial)

    async def transcribe(self, audio: Float32Array, options: SpeechOptions = DEFAULT_OPTIONS) -> FinalResult:
        """Decode a whole utterance at once (the final path, without streaming)."""
        seg = self.open_segment(options=options)
        seg.feed(audio)
        return await seg.finish()

    async def _run(self, kind: str, fn: Callable[[], Transcript], model: str | None = None,
                   since: float | None = None) -> Transcript:
        """``since`` (partials): when the asking segment's last partial began, its place in the queue
        under ``partial_order="fair"``."""
        loop = asyncio.get_running_loop()
        no_finals = self._no_finals(loop)
        if kind != "final":
            # Finals and partials share the CPU (or GPU) even in separate pools: a partial started
            # beside a final would slow it down. So no partial starts while a final is queued or
            # running; under load partial cadence degrades, final latency does not.
            await no_finals.wait()
            await self._partial_turn(loop, since)
            try:
                return await self._run_in(self._partials, kind, fn, loop, model or self.decoder.model_name)
            finally:
                self._partial_slots += 1
                self._grant_partials()
        self._finals_pending += 1
        no_finals.clear()
        try:
            return await self._run_in(self._finals, kind, fn, loop, model or self.decoder.model_name)
        finally:
            self._finals_pending -= 1
            if not self._finals_pending:
                no_finals.set()
                self._grant_partials()

    async def _partial_turn(self, loop: asyncio.AbstractEventLoop, since: float | None) -> None:
        """Wait for a free partial worker. The engine, not the pool's FIFO queue, picks who gets it, so
        that under load (more segments than workers can serve at PARTIAL_INTERVAL_MS) the wait is
        shared: with "fair" the segment whose last partial is oldest goes next. Nobody starves: a
        waiter's key stays put while every segment served after it gets a newer one."""
        now = time.monotonic()
        key = now if self.config.partial_order == "fifo" or since is None else since
        self._partial_arrivals += 1
        turn: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._partial_queue, (key, self._partial_arrivals, turn))
        self._grant_partials()
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                # granted just as the segment ended: hand the worker on
                self._partial_slots += 1
                self._grant_partials()
            else:
                turn.cancel()
            raise

    def _grant_partials(self) -> None:
        # a partial is not started while a final is pending (see _run); the final's end grants again
        while self._partial_slots > 0 and self._partial_queue and not self._finals_pending:
            _, _, turn = heapq.heappop(self._partial_queue)
            if turn.done():
                continue  # its segment stopped waiting
            if turn.get_loop().is_closed():
                continue  # a waiter of an event loop gone (tests run one engine under several)
            self._partial_slots -= 1
            turn.set_result(None)

    async def _speculate(self, spec: _Speculation, fn: Callable[[], Transcript]) -> Transcript | None:
        """A speculative final's decode, in the finals pool but with no priority (see the module doc):
        it waits for pending real finals as partials do, and does not hold partials back itself, since
        the pause that started it may be followed by a resume at once. A stale one still waiting, or
        reached by a thread only once stale, is skipped: it costs no decode."""
        loop = asyncio.get_running_loop()
        await self._no_finals(loop).wait()
        if spec.stale:
            return None

        def work() -> Transcript | None:
            if spec.stale:
                return None
            spec.started = True
            t0 = time.perf_counter()
            try:
                return fn()
            finally:
                if self.on_decode is not None:
                    self.on_decode("speculative", time.perf_counter() - t0, self.decoder.model_name)

        return await loop.run_in_executor(self._finals, work)

    def _no_finals(self, loop: asyncio.AbstractEventLoop) -> asyncio.Event:
        # an asyncio.Event belongs to one loop; tests run one engine under several
        if self._no_finals_event is None or self._event_loop is not loop:
            self._event_loop = loop
            self._no_finals_event = asyncio.Event()
            if self._finals_pending:
                self._no_finals_event.clear()
            else:
                self._no_finals_event.set()
        return self._no_finals_event

    async def _run_in(self, pool: ThreadPoolExecutor, kind: str, fn: Callable[[], Transcript],
                      loop: asyncio.AbstractEventLoop, model: str) -> Transcript:

        def timed() -> Transcript:
            t0 = time.perf_counter()
            try:
                return fn()
            finally:
                if self.on_decode is not None:
                    self.on_decode(kind, time.perf_counter() - t0, model)

        return await loop.run_in_executor(pool, timed)

    def close(self) -> None:
        self._partials.shutdown(wait=False, cancel_futures=True)
        self._finals.shutdown(wait=True)


class Segment:
    """One utterance. ``feed`` is cheap and synchronous; decoding happens in the engine's pools."""

    def __init__(self, engine: Engine, *, sample_rate: int, options: SpeechOptions,
                 on_partial: PartialCallback | None) -> None:
        self.engine = engine
        self.options = options
        self._resampler = StreamResampler(sample_rate)
        # feed() runs on the event loop, audio() also in a decode thread (a partial reads the latest
        # audio when its decode starts), so the chunk list is guarded
        self._lock = threading.Lock()
        self._chunks: list[Float32Array] = []
        self._samples = 0
        self._audio_cache: Float32Array | None = None
        self._on_partial = on_partial
        # the draft model, where there is one that can do this session's options
        self._partial_decoder = engine.partial_decoder(options)
        self._partial_task: asyncio.Task[None] | None = None
        # when this segment's last partial began (its opening, before the first): its turn (_run)
        self._partial_since = time.monotonic()
        self._new_audio = asyncio.Event()
        self._finished = False
        self._last_partial_text = ""
        self._committed_text = ""
        self._committed_samples = 0
        # the latest speculative final, fresh or stale, until its decode is over: one at a time
        self._speculation: _Speculation | None = None
        self._paused = False
        self._spec_tokens = float(engine.config.speculative_burst)
        self._spec_stamp = time.monotonic()
        engine.active_segments += 1

    # ---- input ------------------------------------------------------------------------------

    @property
    def samples(self) -> int:
        return self._samples

    def feed_pcm16(self, pcm: bytes) -> None:
        self.feed_native(pcm16_to_float(pcm))

    def feed_native(self, audio: Float32Array) -> None:
        """Audio at the segment's own sample rate."""
        self.feed(self._resampler.process(audio))

    def feed(self, audio16k: Float32Array) -> None:
        """Audio already at 16 kHz."""
        if self._finished or audio16k.size == 0:
            return
        with self._lock:
            self._chunks.append(audio16k)
            self._samples += audio16k.size
            self._audio_cache = None
        if self._on_partial is not None and self._partial_task is None:
            self._partial_task = asyncio.get_running_loop().create_task(self._partials_loop())
        self._new_audio.set()

    def audio(self) -> Float32Array:
        with self._lock:
            if self._audio_cache is None:
                self._audio_cache = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
                self._chunks = [self._audio_cache]
            return self._audio_cache

    # ---- output -----------------------------------------------------------------------------

    def pause(self) -> bool:
        """Trailing silence began: start decoding the final now, on the audio so far. False when the
        pause started nothing (a decode of this segment already runs, or its budget is spent)."""
        if self._finished:
            return True  # a hint racing the end: nothing to bound
        # silence adds nothing to a partial; leave the CPU to the final
        self._paused = True
        spec = self._speculation
        if spec is not None:
            # fresh: already speculating on this silence; stale: one decode at a time, and this pause
            # is taken up when that one is over (_speculation_over) if still paused then
            return not spec.stale
        return self._speculate()

    def _speculate(self) -> bool:
        cfg = self.engine.config
        now = time.monotonic()
        self._spec_tokens = min(float(cfg.speculative_burst),
                                self._spec_tokens + (now - self._spec_stamp) / cfg.speculative_every_s)
        self._spec_stamp = now
        if self._spec_tokens < 1:
            return False
        self._spec_tokens -= 1
        audio = self.audio()
        spec = _Speculation()
        spec.task = asyncio.get_running_loop().create_task(
            self.engine._speculate(spec, lambda: self.engine.decoder.final(audio, self.options)))
        spec.task.add_done_callback(lambda task: self._speculation_over(spec, task))
        self._speculation = spec
        return True

    def _speculation_over(self, spec: _Speculation, task: asyncio.Task[Transcript | None]) -> None:
        failed = None if task.cancelled() else task.exception()  # retrieved either way
        if failed is not None and spec.stale:
            log.warning("speculative_final_failed", error=str(failed))  # nobody awaits it now
        if self._speculation is not spec or not spec.stale:
            return  # a fresh result stays for finish()
        self._speculation = None
        if self._paused and not self._finished:
            self._speculate()  # the pause that came while the stale decode ran

    def resume(self) -> None:
        """Speech came back: the speculative final is stale (a decode already running finishes; its
        result is dropped)."""
        self._paused = False
        spec = self._speculation
        if spec is not None:
            spec.stale = True
            if spec.task is not None and spec.task.done():
                self._speculation = None
        self._new_audio.set()

    async def finish(self) -> FinalResult:
        """End of segment: decode the whole utterance. Never waits for a partial in flight."""
        t0 = time.perf_counter()
        self._stop_partials()
        self.feed(self._resampler.flush())
        self._finished = True
        audio = self.audio()
        spec, self._speculation = self._speculation, None
        # a fresh speculation not yet begun by a thread is no head start: it would wait behind real
        # finals, so it gives way to a real final of its own
        speculative = (spec.task if spec is not None and spec.task is not None and not spec.stale
                       and (spec.started or spec.task.done()) else None)
        if spec is not None and speculative is None:
            spec.stale = True
        try:
            if speculative is not None:
                result = await speculative
                assert result is not None  # only a stale speculation skips its decode
            else:
                decoder = self.engine.decoder
                result = await self.engine._run("final", lambda: decoder.final(audio, self.options))
        finally:
            self.engine.active_segments -= 1
        return FinalResult(text=result.text, confidence=result.confidence, t_ms=self._t_ms(audio.size),
                           language=result.language or self.options.language,
                           decode_ms=int((time.perf_counter() - t0) * 1000),
                           speculative=speculative is not None)

    def cancel(self) -> None:
        """Drop the segment without a final (the peer vanished and nobody is left to read it)."""
        if not self._finished:
            self._finished = True
            self.engine.active_segments -= 1
        self._stop_partials()
        self.resume()

    def _stop_partials(self) -> None:
        if self._partial_task is not None:
            self._partial_task.cancel()
            self._partial_task = None

    @staticmethod
    def _t_ms(samples: int) -> int:
        return int(samples * 1000 / TARGET_RATE)

    async def _partials_loop(self) -> None:
        cfg = self.engine.config
        interval = cfg.partial_interval_ms / 1000
        first = cfg.first_partial_ms * TARGET_RATE // 1000
        decoded_upto = 0
        try:
            while not self._finished:
                if self._samples < first or self._samples == decoded_upto or self._paused:
                    self._new_audio.clear()
                    await self._new_audio.wait()
                    continue
                started = time.perf_counter()
                decoded_upto = self._samples
                result = await self._partial_once()
                if result is not None and not self._finished and result.text != self._last_partial_text:
                    self._last_partial_text = result.text
                    assert self._on_partial is not None
                    await self._on_partial(result)
                if not self._last_partial_text:
                    # nothing recognisable yet: try again on the newer audio at once, since the first
                    # words are the partial a person is waiting for
                    continue
                # start-to-start cadence; when the decode took longer, the next one starts at once
                await asyncio.sleep(max(0.0, interval - (time.perf_counter() - started)))
        except asyncio.CancelledError:
            pass  # finish() or cancel() stopped the partials: the normal way out
        except Exception:  # a failed partial must not cost the final
            log.exception("partial_failed")

    async def _partial_once(self) -> PartialResult | None:
        # The audio is taken when the decode starts, not when it was queued: never a stale partial.
        snapshot: dict[str, int] = {}

        def work() -> Transcript:
            self._partial_since = time.monotonic()
            audio = self.audio()
            snapshot["end"] = audio.size
            snapshot["start"] = self._committed_samples
            return decoder.partial(audio[self._committed_samples:], self.options)

        decoder = self._partial_decoder
        result = await self.engine._run("partial", work, decoder.model_name, since=self._partial_since)
        if self._finished:
            return None
        self._maybe_commit(result, snapshot["start"], snapshot["end"])
        text = " ".join(t for t in (self._committed_text, self._tail_text(result, snapshot["start"])) if t)
        return PartialResult(text=text, confidence=result.confidence, t_ms=self._t_ms(snapshot["end"]))

    def _tail_text(self, result: Transcript, start: int) -> str:
        # after a commit moved past part of this decode, keep only the pieces after it
        offset = (self._committed_samples - start) / TARGET_RATE
        return " ".join(p.text for p in result.pieces if p.start >= offset - 0.05)

    def _maybe_commit(self, result: Transcript, start: int, end: int) -> None:
        window = self.engine.config.partial_window_s
        tail_s = (end - start) / TARGET_RATE
        if tail_s <= window or len(result.pieces) < 2 or start != self._committed_samples:
            return
        # commit whole Whisper segments that end at least 2 s before the tail's end: text that far
        # back no longer changes as more audio arrives
        keep_after = tail_s - 2.0
        done = [p for p in result.pieces[:-1] if p.end <= keep_after]
        if not done:
            return
        self._committed_text = " ".join(t for t in (self._committed_text, *(p.text for p in done)) if t)
        self._committed_samples = start + int(done[-1].end * TARGET_RATE)
