"""What every backend gives the rest of the worker, whichever it is: a stream per utterance that takes
audio, reports partials and ends in one ``Transcript``."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from stt_core.errors import TransientError

# (text, t_ms) of a partial; a coroutine function, as the ws backend runs each call as its own task
PartialSink = Callable[[str, int], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Transcript:
    text: str
    confidence: float
    language: str | None
    backend: str  # "local" | "ws"
    model: str
    fallback: bool = False  # produced by the fallback after the primary failed
    decode_ms: int | None = None  # from the end of the utterance to the decoder's result
    speculative: bool = False  # decoding began during the hangover


class BackendUnavailable(TransientError):
    """The backend cannot produce this utterance's final (server down, refused, dropped, too slow)."""


class UtteranceStream(Protocol):
    def feed(self, pcm16: bytes) -> None: ...

    def pause(self) -> None:
        """Trailing silence began: a backend may start decoding the final speculatively."""

    def resume(self) -> None:
        """Speech came back: speculative work is stale."""

    async def finish(self) -> Transcript: ...

    def cancel(self) -> None: ...


class Backend(Protocol):
    name: str

    @property
    def model(self) -> str: ...

    @property
    def connected(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def open(self, on_partial: PartialSink | None) -> UtteranceStream: ...
