"""stt-core: the one streaming-transcription engine shared by stt-server and stt-worker.

Everything here is either sans-I/O (protocol messages, sessions, audio conversion, the VAD gate)
or a thin adapter (the faster-whisper decoder, the decode pool). The apps import this package;
they never import each other.
"""

__version__ = "0.1.0"
