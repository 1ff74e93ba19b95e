"""Configuration parsed once at the edge: environment first, then an optional env file.

``load`` turns any validation failure into one line naming the variable and exit status 78
(EX_CONFIG), so systemd's ``RestartPreventExitStatus=78`` stops instead of restart-looping on a typo.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, NoReturn, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import EX_CONFIG, ConfigError

LogFormat = Literal["auto", "json", "console"]


class CommonSettings(BaseSettings):
    """Variables both apps understand."""

    # an empty variable (STT_TOKEN= in an env file) means "unset", not "the empty string"
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore",
                                      env_ignore_empty=True)

    whisper_model: str | None = Field(default=None, description="embedded tiny.en when unset")
    compute_type: str | None = Field(default=None, description="float16 on cuda, int8 on cpu when unset")
    cpu_threads: int = Field(default=0, ge=0, le=256,
                             description="CTranslate2 threads per decode; 0: its default")
    partial_interval_ms: int = Field(default=300, ge=50, le=10_000)
    final_context_s: float | None = Field(
        default=None, ge=10.0, le=30.0,
        description="encoder context of a final, seconds; 30: exactly as offline; unset: 15 for the "
                    "embedded model (validated on it), 30 for any other")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: LogFormat = "auto"


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
