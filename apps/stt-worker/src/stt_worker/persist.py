"""Muted and backend survive a restart, in a small JSON file, when the service has a state directory.

The directory is systemd's ``STATE_DIRECTORY`` (``StateDirectory=`` in the unit; the first one when
there are several); without it nothing is kept. Not ``XDG_STATE_HOME``: a worker run by hand (a
test, ``make demo``) must not start muted because a service once was. The backend
chosen at run time is only restored while ``STT_BACKEND`` is what it was when it was chosen: an
operator who edits the configuration and restarts gets what they configured.

Muting fails closed: a state file that is there but cannot be read or understood means muted (logged
as an error), since the worker cannot know that nobody muted it, and a microphone that was muted must
not start transcribing because a disk sector went bad. Unmuting (the switch, ``<base>/<site>/set``)
writes a good file again. Writes are atomic (a temporary file renamed over the old one) and durable
(the file and its directory fsynced before and after the rename), so a power cut leaves the old state
or the new one, never none.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from .backend import BACKEND_NAMES, BackendName

log = structlog.get_logger(__name__)


def state_dir(env: Mapping[str, str] | None = None) -> Path | None:
    env = os.environ if env is None else env
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    return None


@dataclass(frozen=True)
class Saved:
    muted: bool = False
    backend: BackendName | None = None


class StateFile:
    def __init__(self, directory: Path | None, site_id: str, configured_backend: BackendName) -> None:
        name = re.sub(r"[^a-zA-Z0-9_.-]", "_", site_id)
        self.path = directory / f"worker-{name}.json" if directory is not None else None
        self.configured_backend = configured_backend

    def load(self) -> Saved:
        if self.path is None or not self.path.exists():
            return Saved()
        try:
            data = json.loads(self.path.read_text())
            if not isinstance(data, dict) or not isinstance(data.get("muted"), bool):
                raise ValueError("no muted flag in it")
            same_config = data.get("configured_backend") == self.configured_backend
            backend = data.get("backend") if same_config else None
            return Saved(muted=data["muted"], backend=backend if backend in BACKEND_NAMES else None)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            log.error("state_file_unreadable", path=str(self.path), error=str(exc), muted=True,
                      hint="starting muted; unmute to write a good state file")
            return Saved(muted=True)

    def save(self, *, muted: bool, backend: str) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        data = json.dumps({"muted": muted, "backend": backend, "configured_backend": self.configured_backend})
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(self.path)  # atomic: a crash mid-write leaves the old file, never half a file
            _fsync_dir(self.path.parent)  # and the rename itself survives a power cut
        except OSError as exc:
            log.warning("state_file_unwritable", path=str(self.path), error=str(exc))
            with contextlib.suppress(OSError):
                tmp.unlink()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
