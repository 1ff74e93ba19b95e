"""stt-worker: the edge daemon. Microphone -> voice gate -> local or remote decoder -> MQTT."""

from stt_core import __version__

__all__ = ["__version__"]
