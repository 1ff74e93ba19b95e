"""The "arm64" section of bench/RESULTS.md, from bench/results/arm64.json (``make check-arm64``'s figures).

Kept apart from bench/arm64.py so that bench/report.py, which renders RESULTS.md again after every published
``make bench``, can carry the section over without importing the check's mounts and subprocesses.
"""

from __future__ import annotations

from typing import Any

from . import sections

HEADING = "## arm64"


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f} s"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _built(root: dict[str, Any]) -> str:
    """Where the root and its venv came from: a rerun says what building them cost the first time."""
    stamp = root.get("stamp", {})
    made = "built in this run" if not root["reused"] else "reused from .cache/arm64"
    if stamp.get("debootstrap_s") is not None:
        made += f"; debootstrap took {stamp['debootstrap_s']:.0f} s on {stamp['built_at'][:10]}"
    if stamp.get("dependencies_s") is not None:
        made += (f", the venv's dependencies {stamp['dependencies_s']:.0f} s on "
                 f"{stamp['dependencies_at'][:10]}")
    return made


def section(r: dict[str, Any]) -> str:
    """The section's body (without its heading)."""
    meta, run = r["meta"], r["run"]
    verdict = "**passed**" if r["passed"] else "**failed**: " + "; ".join(r["failures"])
    make = f"`{meta['make']}` (`{meta['command']}`)" if meta.get("make") else f"`{meta['command']}`"
    steps = r["steps"]
    out = [
        f"{make} on {meta['date']}, commit `{meta['commit']}` ({meta['commit_subject']}; "
        f"{meta['uncommitted_files']} uncommitted files in the tree, built into the wheel). "
        f"A Debian {r['root']['suite']} arm64 root (debootstrap, "
        f"{_built(r['root'])}) run under "
        f"qemu-user-static ({r['root']['qemu']}) through binfmt_misc on {meta['cpu']}, "
        f"{meta['cores']} cores; "
        f"load average {meta['load_at_start']} at the start (shared machine). Inside it: Debian's "
        f"Python {r['root']['python']}, a venv with `{r['install']['spec']}` from PyPI "
        f"(`--only-binary :all:`: every dependency installed from an aarch64 wheel), Debian's mosquitto "
        f"on port {run['port']}, and `stt-worker` with STT_BACKEND=local and the embedded model transcribing "
        f"`demo/audio/demo.wav` ({run['audio_s']:.0f} s, {len(run['refs'])} utterances, AUDIO_REALTIME=0). "
        "Under emulation this is a functional check, not a speed figure.",
        "",
        f"Result: {verdict}.",
        "",
        _table(["step", "wall time"], [[k, _s(v)] for k, v in steps.items()]),
        "",
        _table(["model load (worker log)", "finals", "WER (bound)", "aarch64 wheels installed"],
               [[_s(run.get("model_load_s")), f"{len(run['finals'])} for {len(run['refs'])} utterances",
                 "-" if run.get("wer") is None else f"{run['wer']:.1%} ({run['max_wer']:.0%})",
                 ", ".join(r["install"].get("platform_wheels", [])) or "-"]]),
        "",
        "Finals on MQTT, in order: " + (" / ".join(f"“{t}”" for t in run["finals"]) or "none"),
    ]
    return "\n".join(out)


def upsert(markdown: str, body: str) -> str:
    """RESULTS.md with its arm64 section replaced by ``body``, or added before "## Method"."""
    return sections.upsert(markdown, HEADING, body)
