"""Who is at fault decides what happens next, so errors say it.

* ``PeerError``: the other side sent something wrong. It becomes an ``error`` message (and maybe a
  close); the process carries on serving everyone else.
* ``ConfigError``: the operator configured something impossible. The process prints one line naming
  the variable and exits 78 (EX_CONFIG) so that systemd's ``RestartPreventExitStatus=78`` stops the
  restart loop.
* ``TransientError``: the network, a broker or a server is away for now. Retried with backoff.
"""

from __future__ import annotations

EX_CONFIG = 78


class SttError(Exception):
    """Base of every error this project raises on purpose."""


class PeerError(SttError):
    """The peer broke the protocol. ``code`` is the stable, documented error code."""

    def __init__(self, code: str, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # fatal: the session cannot go on (the connection is closed after the error message)
        self.fatal = fatal


class ConfigError(SttError):
    """A configuration value cannot work. ``variable`` names the environment variable."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable
        self.message = message


class TransientError(SttError):
    """Something outside is unavailable for now; retrying later may succeed."""
