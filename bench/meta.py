"""What a result is worth without: the machine, the code, the load others put on it, the command."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str:
    try:
        r = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False)
        return r.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def mem_total_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def collect(command: str) -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "commit": _git("rev-parse", "--short=12", "HEAD"),
        "commit_subject": _git("log", "-1", "--format=%s"),
        # the editable install runs the working tree: uncommitted work of others is measured too
        "uncommitted_files": len([line for line in _git("status", "--porcelain").splitlines() if line]),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": mem_total_gb(),
        "python": platform.python_version(),
        "versions": {d: importlib.metadata.version(d) for d in ("faster-whisper", "ctranslate2", "numpy")},
        "load_at_start": load_average(),
        "command": command,
    }
