"""stt-server's variables. Names are fixed by existing clients and deployments."""

from __future__ import annotations

from pydantic import Field, SecretStr
from stt_core.settings import CommonSettings


class ServerSettings(CommonSettings):
    host: str = "0.0.0.0"  # a LAN service by design; restrict with HOST=127.0.0.1
    port: int = Field(default=9000, ge=1, le=65535)
    device: str = Field(default="cuda", pattern="^(?i)(cuda|cpu|auto)$")
    stt_token: SecretStr | None = None
    max_sessions: int = Field(default=32, ge=1, le=10_000)
    max_segment_s: float = Field(default=60.0, gt=0, le=3600)
    max_frame_bytes: int = Field(default=65_536, ge=640, le=16 * 1024 * 1024)
    max_frames_per_s: int = Field(default=400, ge=10)
    idle_timeout_s: float = Field(default=120.0, gt=0)
    shutdown_timeout_s: float = Field(default=10.0, gt=0, le=600)
    # 0: auto (one single-threaded final decode per core on the CPU, one on a GPU)
    final_workers: int = Field(default=0, ge=0, le=64, description="decodes of finals at once")
    partial_workers: int = Field(default=1, ge=1, le=64, description="decodes of partials at once")
