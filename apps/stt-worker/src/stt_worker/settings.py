"""stt-worker's variables, parsed once at start (environment, then the env file)."""

from __future__ import annotations

import re
import socket
import ssl
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from stt_core.errors import ConfigError
from stt_core.options import MAX_HOTWORDS_CHARS, MAX_PROMPT_CHARS, SpeechOptions, Task
from stt_core.settings import CommonSettings
from stt_core.tls import client_context
from stt_core.vad import FRAME_MS_ALLOWED, VadConfig

from .backend import BackendName
from .topics import Topics

# WS_URL's and WYOMING_URI's entries: what each must look like, and how the error says it
_SERVER_FORMS = {
    "ws_url": (re.compile(r"wss?://[^\s/?#,]+(/[^\s,]*)?"), "a ws:// or wss:// URL"),
    "wyoming_uri": (re.compile(r"tcp://[^\s/:,]+:\d{1,5}"), "tcp://host:port"),
}


def _default_site_id() -> str:
    # MQTT topic levels must not contain + # or /, and Home Assistant ids read best lower-case
    host = socket.gethostname().split(".")[0].lower()
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in host) or "stt"


class WorkerSettings(CommonSettings):
    # ---- backends
    stt_backend: BackendName = "local"
    stt_fallback: Literal["local", "none"] = "local"
    # the local engine loaded as the fallback (or left behind by a switch to a server) is unloaded once the
    # chosen server has been back this long with no utterance on it: its model and decode buffers (tiny.en:
    # ~55 MB) go back to the system, and each outage starts from a clean heap (the next one loads it again)
    fallback_keep_s: float = Field(default=300.0, ge=0, le=7 * 24 * 3600)
    # one server, or several comma-separated in order of preference: the first healthy one is used
    # (backend_ws.py), and the worker goes back to a preferred one when it is healthy again
    ws_url: str = "ws://localhost:9000/stt"
    ws_token: SecretStr | None = None
    # a wss:// server's certificate is verified against the system's trust store, or this CA (PEM)
    ws_ca_file: Path | None = None
    # STT_BACKEND=wyoming: a Wyoming speech-to-text server (stt-server's listener, wyoming-faster-whisper)
    # several comma-separated too, in order of preference: each utterance goes to the first reachable one
    wyoming_uri: str = "tcp://localhost:10300"
    # a server (ws or wyoming) that has not sent the final this long after the end of an utterance is
    # treated as down for this utterance
    ws_final_timeout_s: float = Field(default=5.0, gt=0, le=120)
    ws_connect_timeout_s: float = Field(default=3.0, gt=0, le=60)
    reconnect_max_s: float = Field(default=30.0, ge=1, le=3600)
    device: str = Field(default="cpu", pattern="^(?i)(cuda|cpu|auto)$")
    # not LANG: that is the POSIX locale (en_US.UTF-8), set on most systems. auto: detect (a
    # multilingual model); what the model can do is checked when it is loaded (or by the server)
    whisper_lang: str = Field(default="en", pattern=r"^([a-z]{2,3}|auto)$")
    whisper_task: Task = "transcribe"
    # a vocabulary bias for every utterance: room, device and people names
    whisper_prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    whisper_hotwords: str | None = Field(default=None, max_length=MAX_HOTWORDS_CHARS)
    # STT_BACKEND=local: partials from this (light) model, finals from WHISPER_MODEL (seed 003's
    # hybrid); a directory, a model name or "embedded"; unset: WHISPER_MODEL does both
    draft_model: str | None = Field(default=None, max_length=4096)
    # ---- audio
    audio_source: str = "mic"
    audio_device: str | None = None
    audio_realtime: bool = True
    # the microphone is read in blocks this long, fed to the gate in VAD_FRAME_MS frames: the idle cost is
    # per block (60 ms: 0.8% of a core against 1.4% at 30 ms, onset +3 ms on average: make bench-idle)
    audio_block_ms: int = Field(default=60, ge=10, le=300)
    # ---- voice gate
    vad_aggressiveness: int = Field(default=2, ge=0, le=3)
    vad_frame_ms: int = 30
    vad_preroll_ms: int = Field(default=300, ge=0, le=5000)
    vad_hangover_ms: int = Field(default=600, ge=60, le=10_000)
    vad_min_speech_ms: int = Field(default=250, ge=0, le=10_000)
    vad_max_utterance_s: float = Field(default=30.0, gt=1, le=600)
    # frames this far below the utterance's loudest count as silence (webrtcvad hears faint tails as
    # speech); 0 turns it off
    vad_tail_floor_db: float = Field(default=35.0, ge=0, le=90)
    # ---- MQTT
    mqtt_host: str = "localhost"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_tls: bool = False
    mqtt_ca_file: Path | None = None
    mqtt_base_topic: str = Field(default="stt", min_length=1)
    mqtt_client_id: str | None = None
    mqtt_keepalive_s: int = Field(default=30, ge=5, le=3600)
    # finals waiting for the broker (kept on disk in STATE_DIRECTORY: stt_worker/outbox.py), bounded in
    # megabytes and in hours: past either the oldest utterances are dropped, logged and counted in the
    # retained diagnostics topic. Age 0: no age bound.
    mqtt_queue_max_mb: float = Field(default=16.0, gt=0, le=10_000)
    mqtt_queue_max_age_h: float = Field(default=24.0, ge=0, le=24 * 365)
    site_id: str = Field(default_factory=_default_site_id, min_length=1, max_length=64)
    # ---- Home Assistant MQTT discovery and Hermes (Rhasspy / Snips) compatibility
    ha_discovery: bool = True
    ha_discovery_prefix: str = Field(default="homeassistant", min_length=1)
    hermes: bool = False
    # ---- shutdown
    shutdown_timeout_s: float = Field(default=4.0, gt=0, le=60)

    @field_validator("ws_url", "wyoming_uri")
    @classmethod
    def _server_list(cls, v: str, info: ValidationInfo) -> str:
        pattern, form = _SERVER_FORMS[info.field_name or ""]
        entries = [e.strip() for e in v.split(",")]
        for entry in entries:
            if not pattern.fullmatch(entry):
                raise ValueError(f"{entry!r} is not {form} (several: comma-separated, most preferred first)")
        if len(set(entries)) != len(entries):
            raise ValueError("names the same server twice")
        return ",".join(entries)

    @field_validator("vad_frame_ms")
    @classmethod
    def _frame(cls, v: int) -> int:
        if v not in FRAME_MS_ALLOWED:
            allowed = ", ".join(map(str, FRAME_MS_ALLOWED))
            raise ValueError(f"must be one of {allowed} (webrtcvad frame sizes)")
        return v

    @field_validator("site_id", "mqtt_base_topic", "ha_discovery_prefix")
    @classmethod
    def _topic_level(cls, v: str) -> str:
        if any(ch in v for ch in "+#") or v.startswith("/") or v.endswith("/"):
            raise ValueError("must not contain + or # nor start or end with /")
        return v

    @field_validator("audio_source")
    @classmethod
    def _source(cls, v: str) -> str:
        if v not in ("mic", "-") and not Path(v).is_file():
            raise ValueError("must be mic, - (stdin) or the path of a WAV file that exists")
        return v

    @field_validator("mqtt_ca_file", "ws_ca_file")
    @classmethod
    def _ca_file(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError("file does not exist")
        return v

    @field_validator("ws_ca_file")
    @classmethod
    def _ws_ca(cls, v: Path | None) -> Path | None:
        try:
            client_context(v)  # a file that is not a certificate fails here, not on every connect
        except ConfigError as exc:
            raise ValueError(exc.message) from None
        return v

    @property
    def ws_urls(self) -> list[str]:
        """WS_URL's servers, most preferred first."""
        return self.ws_url.split(",")

    @property
    def wyoming_uris(self) -> list[str]:
        """WYOMING_URI's servers, most preferred first."""
        return self.wyoming_uri.split(",")

    @property
    def ws_tls(self) -> ssl.SSLContext | None:
        """How WS_URL's wss:// servers are verified (one context for all); None when none is wss://."""
        return client_context(self.ws_ca_file) if any(u.startswith("wss://") for u in self.ws_urls) else None

    def vad_config(self) -> VadConfig:
        return VadConfig(frame_ms=self.vad_frame_ms, aggressiveness=self.vad_aggressiveness,
                         preroll_ms=self.vad_preroll_ms, hangover_ms=self.vad_hangover_ms,
                         min_speech_ms=self.vad_min_speech_ms, max_utterance_s=self.vad_max_utterance_s,
                         tail_floor_db=self.vad_tail_floor_db or None)

    def speech_options(self) -> SpeechOptions:
        """WHISPER_LANG/TASK/PROMPT/HOTWORDS, for whichever backend runs."""
        return SpeechOptions(language=None if self.whisper_lang == "auto" else self.whisper_lang,
                             task=self.whisper_task, prompt=self.whisper_prompt,
                             hotwords=self.whisper_hotwords)

    @property
    def topics(self) -> Topics:
        return Topics.of(self.mqtt_base_topic, self.site_id, self.ha_discovery_prefix)
