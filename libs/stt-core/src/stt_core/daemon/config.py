"""Configuration parsed once at the edge: environment first, then an optional env file.

``load`` turns any validation failure into one line naming the variable and exit status 78
(EX_CONFIG), so systemd's ``RestartPreventExitStatus=78`` stops instead of restart-looping on a typo.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from stt_core.errors import EX_CONFIG, ConfigError

S = TypeVar("S", bound=BaseSettings)


def exit_config(prog: str, message: str) -> NoReturn:
    print(f"{prog}: configuration error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(EX_CONFIG)


def describe(exc: ValidationError) -> str:
    """The first problem as 'VARIABLE: what is wrong (got value)'."""
    err = exc.errors()[0]
    variable = str(err["loc"][0]).upper() if err["loc"] else "configuration"
    got = err.get("input")
    shown = f" (got {got!r})" if isinstance(got, str | int | float) else ""
    return f"{variable}: {err['msg']}{shown}"


def load(cls: type[S], prog: str, env_file: Path | None = None) -> S:
    if env_file is not None and not env_file.is_file():
        exit_config(prog, f"env file {env_file} does not exist")
    try:
        return cls(_env_file=env_file)
    except ValidationError as exc:
        exit_config(prog, describe(exc))
    except ConfigError as exc:
        exit_config(prog, str(exc))
