"""stt-server: the GPU box's ``/stt`` WebSocket service on the shared streaming engine."""

from stt_core import __version__

__all__ = ["__version__"]
