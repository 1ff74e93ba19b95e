"""``stt-server``: parse configuration once, load the model once, serve until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from stt_core import __version__
from stt_core.build import build_engine
from stt_core.daemon import memory
from stt_core.daemon.config import exit_config, load
from stt_core.daemon.imports import ignore_pythonpath
from stt_core.daemon.logs import configure_logging
from stt_core.errors import ConfigError

from .settings import ServerSettings

PROG = "stt-server"


def main(argv: list[str] | None = None) -> None:
    ignore_pythonpath()
    memory.cap_arenas()  # before the decode threads start (stt_core/daemon/memory.py)
    from .app import Server  # the Wyoming listener's package among its imports: after the line above

    parser = argparse.ArgumentParser(prog=PROG, description="Real-time speech-to-text: /stt and Wyoming.")
    parser.add_argument("--env-file", type=Path, default=os.environ.get("STT_ENV_FILE") or None,
                        help="read variables from this file too (the environment wins)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args = parser.parse_args(argv)
    settings = load(ServerSettings, PROG, args.env_file)
    configure_logging(settings.log_level, settings.log_format)
    try:
        engine, info = build_engine(
            whisper_model=settings.whisper_model, device=settings.device, compute_type=settings.compute_type,
            cpu_threads=settings.cpu_threads, partial_interval_ms=settings.partial_interval_ms,
            final_workers=settings.final_workers, partial_workers=settings.partial_workers,
            partial_order=settings.partial_order, final_greedy_logprob=settings.final_greedy_logprob,
            final_context_s=settings.final_context_s, draft_model=settings.draft_model,
            final_batch=settings.final_batch, final_batch_window_ms=settings.final_batch_window_ms,
            final_batch_max=settings.final_batch_max)
    except ConfigError as exc:
        exit_config(PROG, str(exc))
    try:
        asyncio.run(Server(settings, engine, info).serve())
    except ConfigError as exc:  # WYOMING_PORT taken
        exit_config(PROG, str(exc))
    except OSError as exc:  # the port is taken or the address is not ours: the operator's to fix
        exit_config(PROG, f"HOST/PORT: cannot listen on {settings.host}:{settings.port}: "
                          f"{exc.strerror or exc}")


if __name__ == "__main__":
    main()
