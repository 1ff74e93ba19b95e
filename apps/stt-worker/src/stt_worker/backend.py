"""What every backend gives the rest of the worker, whichever it is.

A backend opens one ``Stream`` per utterance. The stream takes audio and hints (``pause``/``resume``)
and is told ``finish``; what comes back, partials and the final alike, comes back the same way: as
``BackendEvent`` values handed to the ``Emit`` function the backend was built with. The worker's
utterance machine (``utterances.py``) is fed those events; it never awaits a backend.

The names of the backends are here (settings, control and discovery read them without importing a
backend); how each is built is in ``backends.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, get_args

from stt_core.options import SpeechOptions

# every value STT_BACKEND takes, in the order Home Assistant's select offers them
BackendName = Literal["local", "ws", "wyoming"]
BACKEND_NAMES: tuple[BackendName, ...] = get_args(BackendName)


@dataclass(frozen=True)
class PartialText:
    utterance_id: str
    backend: BackendName
    text: str
    t_ms: int  # audio covered, from the start of the utterance


@dataclass(frozen=True)
class FinalText:
    utterance_id: str
    backend: BackendName
    text: str
    confidence: float
    language: str | None
    model: str
    decode_ms: int | None = None  # from the end of the utterance to the decoder's result
    speculative: bool = False  # decoding began during the hangover


@dataclass(frozen=True)
class StreamFailed:
    """This backend cannot give this utterance its final (server away, refused, dropped, cut short).
    The utterance machine still has the audio and decides what happens next."""

    utterance_id: str
    backend: BackendName
    reason: str


@dataclass(frozen=True)
class ConnectionChanged:
    """A remote backend connected or lost its server, or learned the server's model."""

    backend: BackendName
    connected: bool


BackendEvent = PartialText | FinalText | StreamFailed | ConnectionChanged
Emit = Callable[[BackendEvent], None]


class Stream(Protocol):
    def feed(self, pcm16: bytes) -> None:
        """16 kHz mono S16LE audio of the utterance, in order."""

    def pause(self) -> None:
        """Trailing silence began: a backend may start decoding the final speculatively."""

    def resume(self) -> None:
        """Speech came back: speculative work is stale."""

    def finish(self) -> None:
        """The utterance ended: a ``FinalText`` or a ``StreamFailed`` for it follows, exactly one."""

    def cancel(self) -> None:
        """Drop the utterance: no event for it follows."""


class Backend(Protocol):
    name: BackendName

    @property
    def model(self) -> str:
        """The finals' model ("?" until a server has named it)."""

    @property
    def draft_model(self) -> str | None:
        """The partials' model when it is another one (DRAFT_MODEL), else None."""

    @property
    def connected(self) -> bool:
        """Whether an utterance opened now would reach its decoder (always true in-process)."""

    async def start(self) -> None:
        """Load or connect. ``ConfigError`` when it can never work (a model that does not load)."""

    async def stop(self) -> None: ...

    def open(self, utterance_id: str, options: SpeechOptions) -> Stream: ...
