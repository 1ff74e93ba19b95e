"""Settings both apps read from the environment (each app's own settings extend ``CommonSettings``).
Loading them, and exiting 78 when they are wrong, is process plumbing: ``daemon.config``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

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
