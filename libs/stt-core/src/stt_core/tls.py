"""TLS contexts, checked once at start so that a wrong file is a configuration error (one line naming
the variable, exit 78) and not a failure on the first connection.

The server's: ``TLS_CERT_FILE`` (PEM, the certificate then any intermediates) and ``TLS_KEY_FILE`` (its
unencrypted PEM private key: a daemon has nobody to type a passphrase). A client's: the system's
trust store, or one home CA file instead (``WS_CA_FILE``).
"""

from __future__ import annotations

import ssl
from pathlib import Path

from .errors import ConfigError


def _readable(variable: str, path: Path) -> None:
    try:
        with path.open("rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise ConfigError(variable, f"cannot read {path}: {exc.strerror or exc}") from None


def _no_passphrase() -> bytes:
    # asked only for an encrypted key; without this OpenSSL would prompt on the terminal (or hang)
    return b""


def server_context(cert: Path, key: Path, cert_var: str = "TLS_CERT_FILE",
                   key_var: str = "TLS_KEY_FILE") -> ssl.SSLContext:
    """The server side of TLS 1.2+ with the given certificate chain and key."""
    _readable(cert_var, cert)
    _readable(key_var, key)
    try:
        # the certificate alone first, so that a bad one is blamed on its own variable
        ssl.create_default_context(cafile=str(cert))
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(cert_var, f"{cert} is not a PEM certificate ({_reason(exc)})") from None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert), str(key), password=_no_passphrase)
    except (ssl.SSLError, ValueError) as exc:
        why = ("it is not the private key of the certificate in " + cert_var
               if "KEY_VALUES_MISMATCH" in str(exc) else
               "not an unencrypted PEM private key")
        raise ConfigError(key_var, f"{key}: {why}") from None
    return ctx


def client_context(ca_file: Path | None, variable: str = "WS_CA_FILE") -> ssl.SSLContext:
    """A client that verifies the server's certificate and host name: against ``ca_file`` when given
    (a home CA), else against the system's trust store."""
    if ca_file is None:
        return ssl.create_default_context()
    _readable(variable, ca_file)
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(variable, f"{ca_file} is not a PEM certificate ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    return getattr(exc, "reason", None) or str(exc) or type(exc).__name__
