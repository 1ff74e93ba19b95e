"""stt-server's variables. Names are fixed by existing clients and deployments."""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Literal, Self

from pydantic import AnyHttpUrl, Field, PrivateAttr, SecretStr, field_validator, model_validator
from stt_core.errors import ConfigError
from stt_core.settings import CommonSettings
from stt_core.tls import server_context
from stt_core.vad import VadConfig

WYOMING_DEFAULT_PORT = 10300  # the port Home Assistant users know from wyoming-faster-whisper
SOCKETIO_DEFAULT_PORT = 2700  # seed 004's server's port


class ServerSettings(CommonSettings):
    host: str = "0.0.0.0"  # a LAN service by design; restrict with HOST=127.0.0.1
    port: int = Field(default=9000, ge=1, le=65535)
    device: str = Field(default="cuda", pattern="^(?i)(cuda|cpu|auto)$")
    stt_token: SecretStr | None = None
    # web pages (scheme://host[:port], comma-separated; * for any) whose scripts may open a session
    # besides the server's own page; a client that sends no Origin (not a browser) always may
    allowed_origins: str | None = Field(default=None, max_length=4096)
    max_sessions: int = Field(default=32, ge=1, le=10_000)
    # sessions one address may hold at once, over every dialect (loopback included: see the README)
    max_sessions_per_ip: int = Field(default=8, ge=1, le=10_000)
    # ---- TLS on every listener (wss:// and https:// on PORT, Wyoming, Socket.IO): both or neither
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # the Wyoming listener with TLS too (unset: when TLS_CERT_FILE is set). 0 keeps it plain TCP for
    # Home Assistant, whose Wyoming integration cannot speak TLS
    wyoming_tls: bool | None = None
    max_segment_s: float = Field(default=60.0, gt=0, le=3600)
    max_frame_bytes: int = Field(default=65_536, ge=640, le=16 * 1024 * 1024)
    max_frames_per_s: int = Field(default=400, ge=10)
    idle_timeout_s: float = Field(default=120.0, gt=0)
    shutdown_timeout_s: float = Field(default=10.0, gt=0, le=600)
    # 0: auto (one single-threaded final decode per core on the CPU, one on a GPU)
    final_workers: int = Field(default=0, ge=0, le=64, description="decodes of finals at once")
    partial_workers: int = Field(default=1, ge=1, le=64, description="decodes of partials at once")
    # who gets the next partial worker under load: fair = the session whose last partial is oldest
    # (bench/RESULTS.md, section 3's levers), fifo = whoever asked first
    partial_order: Literal["fair", "fifo"] = "fair"
    # a final decoded greedy first, kept when its mean log-probability per token is at least this;
    # beam 5 otherwise (bench/RESULTS.md, section 3's levers). Unset: beam 5 only
    final_greedy_logprob: float | None = Field(default=None, ge=-5.0, le=0.0)
    # seed 003's hybrid: partials from this (light) model, finals from WHISPER_MODEL; resolved as
    # WHISPER_MODEL is (a directory, a model name, or "embedded"); unset: WHISPER_MODEL does both
    draft_model: str | None = Field(default=None, max_length=4096)
    # finals of several sessions through the encoder as one batch: auto = on CUDA only (on a CPU it
    # buys nothing: bench/RESULTS.md, section 6); a final waits up to the window for others to join
    final_batch: Literal["auto", "on", "off"] = "auto"
    final_batch_window_ms: float = Field(default=5.0, ge=0, le=100)
    final_batch_max: int = Field(default=4, ge=2, le=64)
    # ---- Wyoming (Home Assistant Assist) beside /stt, on HOST. Unset: 10300 when it is free (a
    # warning when it is not); a number: that port or exit 78; 0: off
    wyoming_port: int | None = Field(default=None, ge=0, le=65535)
    # advertise _wyoming._tcp over mDNS; unset: on when the listener is on and reachable beyond loopback
    wyoming_zeroconf: bool | None = None
    # the service's name on the network (Home Assistant shows it); unset: stt-bridge-<hostname>
    wyoming_zeroconf_name: str | None = Field(default=None, min_length=1, max_length=63,
                                              pattern=r"^[A-Za-z0-9][A-Za-z0-9 _-]*$")
    # ---- the voice gate the server runs on a session's audio (the worker's names and meaning): it ends
    # the utterances of clients that never say where one ends (seed 001's /ws), and finds the trailing
    # silence of a Wyoming request
    vad_aggressiveness: int = Field(default=2, ge=0, le=3)
    vad_preroll_ms: int = Field(default=300, ge=0, le=5000)
    vad_hangover_ms: int = Field(default=600, ge=60, le=10_000)
    vad_min_speech_ms: int = Field(default=250, ge=0, le=10_000)
    vad_max_utterance_s: float = Field(default=30.0, gt=1, le=600)
    vad_tail_floor_db: float = Field(default=35.0, ge=0, le=90)
    # which classifier tells speech from silence inside the gate: webrtcvad (the worker's), or Silero
    # (seed 004's; the model faster-whisper ships), with its speech probability threshold
    vad_engine: Literal["webrtc", "silero"] = "webrtc"
    vad_threshold: float = Field(default=0.5, gt=0, lt=1)
    # ---- seed 004's Socket.IO server, on HOST. Unset: 2700 when it is free; a number: that port or
    # exit 78; 0: off
    socketio_port: int | None = Field(default=None, ge=0, le=65535)
    # ---- transcript subscribers: every final (and with MQTT_PARTIALS, partials) of every session, on
    # MQTT in the worker's topic layout (<MQTT_BASE_TOPIC>/<session or client id>/transcript/final);
    # MQTT_HOST unset: off
    mqtt_host: str | None = None
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_tls: bool = False
    mqtt_ca_file: Path | None = None
    mqtt_base_topic: str = Field(default="stt", min_length=1, pattern=r"^[^#+]+$")
    mqtt_client_id: str | None = None
    mqtt_partials: bool = False
    # ... and each final POSTed as JSON to WEBHOOK_URL (Home Assistant's and Node-RED's webhooks), with
    # bounded retries in the background
    webhook_url: AnyHttpUrl | None = None
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=60)
    webhook_retries: int = Field(default=3, ge=0, le=20)
    _tls: ssl.SSLContext | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _tls_files(self) -> Self:
        # ConfigError, not ValueError: pydantic passes it through, and it names the variable at fault
        cert, key = self.tls_cert_file, self.tls_key_file
        if (cert is None) != (key is None):
            missing = "TLS_KEY_FILE" if key is None else "TLS_CERT_FILE"
            raise ConfigError(missing, "TLS_CERT_FILE and TLS_KEY_FILE are set together or not at all")
        if cert is not None and key is not None:
            self._tls = server_context(cert, key)
        elif self.wyoming_tls:
            raise ConfigError("WYOMING_TLS", "needs TLS_CERT_FILE and TLS_KEY_FILE")
        return self

    @property
    def tls(self) -> ssl.SSLContext | None:
        """The listeners' TLS context; None: plain TCP."""
        return self._tls

    @property
    def wyoming_tls_context(self) -> ssl.SSLContext | None:
        return self._tls if self.wyoming_tls is not False else None

    @field_validator("mqtt_ca_file")
    @classmethod
    def _ca_file(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError("file does not exist")
        return v

    def vad_config(self) -> VadConfig:
        return VadConfig(aggressiveness=self.vad_aggressiveness, preroll_ms=self.vad_preroll_ms,
                         hangover_ms=self.vad_hangover_ms, min_speech_ms=self.vad_min_speech_ms,
                         max_utterance_s=self.vad_max_utterance_s,
                         tail_floor_db=self.vad_tail_floor_db or None, engine=self.vad_engine,
                         threshold=self.vad_threshold)

    @property
    def wyoming_explicit(self) -> bool:
        return self.wyoming_port is not None

    @property
    def wyoming_listen_port(self) -> int:
        return WYOMING_DEFAULT_PORT if self.wyoming_port is None else self.wyoming_port

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, v: str | None) -> str | None:
        for origin in (o.strip() for o in (v or "").split(",") if o.strip()):
            if origin != "*" and not re.fullmatch(r"https?://[^/\s?#]+", origin):
                raise ValueError(f"{origin!r} is not an origin: scheme://host[:port], or *")
        return v

    @property
    def origins(self) -> tuple[str, ...]:
        return tuple(o.strip().rstrip("/").lower() for o in (self.allowed_origins or "").split(",")
                     if o.strip())

    @property
    def socketio_explicit(self) -> bool:
        return self.socketio_port is not None

    @property
    def socketio_listen_port(self) -> int:
        return SOCKETIO_DEFAULT_PORT if self.socketio_port is None else self.socketio_port

    @property
    def advertise_wyoming(self) -> bool:
        if self.wyoming_zeroconf is not None:
            return self.wyoming_zeroconf and self.wyoming_listen_port != 0
        loopback = self.host in ("127.0.0.1", "::1", "localhost")
        return self.wyoming_listen_port != 0 and not loopback
