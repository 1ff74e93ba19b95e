"""``stt-worker``: parse configuration once, then listen until SIGTERM (or the end of a WAV file)."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from stt_core import __version__
from stt_core.daemon import memory
from stt_core.daemon.config import exit_config, load
from stt_core.daemon.imports import ignore_pythonpath
from stt_core.daemon.logs import configure_logging
from stt_core.errors import ConfigError

from .settings import WorkerSettings

PROG = "stt-worker"


def main(argv: list[str] | None = None) -> None:
    ignore_pythonpath()
    memory.cap_arenas()  # before the decode threads start (stt_core/daemon/memory.py)
    parser = argparse.ArgumentParser(prog=PROG, description="Microphone -> voice gate -> Whisper -> MQTT.")
    parser.add_argument("--env-file", type=Path, default=os.environ.get("STT_ENV_FILE") or None,
                        help="read variables from this file too (the environment wins)")
    parser.add_argument("--list-devices", action="store_true", help="list audio input devices and exit")
    parser.add_argument("--remove-discovery", action="store_true",
                        help="delete this worker's Home Assistant discovery configs from the broker and exit")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args = parser.parse_args(argv)
    if args.list_devices:
        from .mic import describe_devices

        print(describe_devices())
        return
    settings = load(WorkerSettings, PROG, args.env_file)
    configure_logging(settings.log_level, settings.log_format)
    if args.remove_discovery:
        from .unpublish import remove_discovery

        raise SystemExit(asyncio.run(remove_discovery(settings)))
    from .app import Worker

    try:
        worker = Worker(settings)
        code = asyncio.run(worker.run())
    except ConfigError as exc:
        exit_config(PROG, str(exc))
    raise SystemExit(code)


if __name__ == "__main__":
    main()
