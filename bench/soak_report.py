"""The "Soak" section of bench/RESULTS.md, from bench/results/soak.json (``make soak``'s figures).

Kept apart from bench/soak.py so that bench/report.py, which renders RESULTS.md again after every published
``make bench``, can carry the section over without importing the soak's processes and subscribers.
"""

from __future__ import annotations

from typing import Any

from . import sections

HEADING = "## Soak"
# the runs before the one published, and what each taught (the section is rewritten by every run)
PREVIOUS = (
    "Earlier hours, same seed and schedule: at 40e2535, 253 spoken, 253 delivered, none lost, doubled or out "
    "of order, but the worker's RSS grew 326 -> 415 MB (+39.4 MB judged, bound 38): native memory left in "
    "glibc's per-thread arenas by the fallback's decodes (tracemalloc flat). Two arenas and a trim after "
    "each final (stt_core/daemon/memory.py) brought it to 273 MB at d979316, still +33.6 MB (bound 24), in "
    "steps at each outage: every outage's fragments stayed in a heap that the fallback's model, kept for "
    "good, never let go of. Since then the fallback is unloaded FALLBACK_KEEP_S after each outage "
    "(tests/worker/test_fallback_release.py), and growth is judged with it unloaded and loaded apart."
)


def _mb(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def _n(x: float | None) -> str:
    return "-" if x is None else f"{x:g}"


def _times(n: int) -> str:
    return {0: "never", 1: "once", 2: "twice"}.get(n, f"{n} times")


def _series_row(label: str, s: dict[str, Any]) -> list[str]:
    rss, fds, thr = s["rss_mb"], s["fds"], s["threads"]
    return [label,
            f"{_mb(rss['start'])} / {_mb(rss['end'])} / {_mb(rss['max'])}",
            f"{rss['growth_mb']:+.1f} MB (bound {rss['bound_mb']:.0f})" if rss.get("growth_mb") is not None
            else "not judged",
            f"{_n(fds['start'])} / {_n(fds['end'])} / {_n(fds['max'])}",
            f"{_n(thr['start'])} / {_n(thr['end'])} / {_n(thr['max'])}"]


def _table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def section(r: dict[str, Any]) -> str:
    """The section's body (without its heading)."""
    meta, fin, rs = r["meta"], r["finals"], r["restarts"]
    verdict = "**passed**" if not r["failures"] else "**failed**: " + "; ".join(r["failures"])
    make = f"`{meta['make']}` (`{meta['command']}`)" if meta.get("make") else f"`{meta['command']}`"
    short = "" if meta["seconds"] >= 3600 else \
        " A shortened run (the published figure is an hour's: `make soak`, SOAK_S=3600)."
    out = [
        f"{make} on {meta['date']}, commit `{meta['commit']}` ({meta['commit_subject']}; "
        f"{meta['uncommitted_files']} uncommitted files in the tree), seed {meta['seed']}: "
        f"{meta['seconds']:.0f} s of speech and silence alternating, then {meta['drain_s']:.0f} s to deliver "
        f"what was still queued.{short} Machine: {meta['cpu']}, {meta['cores']} cores, "
        f"{meta['memory_gb']} GB; "
        f"load average {meta['load_at_start']} at the start, {meta.get('load_at_end')} at the end (shared "
        "machine).",
        "",
        f"Result: {verdict}.",
        "",
        f"Restarts: the broker {_times(rs['broker'])} (away {rs['broker_down_s']}), the server "
        f"{_times(rs['server'])} ({rs['server_term']} SIGTERM, {rs['server_kill']} SIGKILL; away "
        f"{rs['server_down_s']}, its start-up included).",
        "",
        _table(["process", "RSS start / end / max (MB)", "RSS growth, last 3/4", "open fds start / end / max",
                "threads start / end / max"],
               [_series_row("stt-worker (whole run)", r["worker"]),
                *[_series_row(f"stt-worker, fallback {label} ({st.get('samples', '?')} samples judged)", st)
                  for key, label in (("at_rest", "unloaded"), ("fallback_loaded", "loaded"))
                  if (st := r["worker"].get("states", {}).get(key))],
                _series_row(f"stt-server (longest life, {r['server']['life_s']:.0f} s)", r["server"])]),
        "",
        _table(["utterances spoken", "finals made (worker log)", "delivered (distinct)", "lost",
                "spoken with no final", "duplicated", "out of order", "error events"],
               [[str(fin["spoken"]), str(fin["made"]), str(fin["delivered"]), str(fin["lost"]),
                 str(fin["uncovered"]), str(fin["duplicates"]), str(fin["out_of_order"]),
                 str(fin["errors"])]]),
        "",
        f"Worker queue (its retained diagnostics, published at each reconnection): at most "
        f"{_n(r['queue']['max_queued_utterances'])} utterances waiting, {_n(r['queue']['dropped_total'])} "
        f"dropped. Backlog seen from outside (finals made, not yet delivered) at most "
        f"{r['queue']['max_backlog']}. Server: at most {_n(r['server'].get('max_active_sessions'))} sessions "
        f"and {_n(r['server'].get('max_active_segments'))} segments at a sample. Finals by backend: "
        + ", ".join(f"{k} {v}" for k, v in sorted(fin["by_backend"].items())) + ".",
        "",
        f"Bounds ({r['bounds']['text']}).",
    ]
    if fb := r["worker"].get("fallback"):
        out[-2:-2] = ["", f"The worker's local fallback: loaded {_times(fb['loads'])} and unloaded "
                          f"{_times(fb['releases'])} (FALLBACK_KEEP_S={fb['keep_s']:g} s after each outage)."]
    if PREVIOUS:
        out += ["", PREVIOUS]
    return "\n".join(out)


def upsert(markdown: str, body: str) -> str:
    """RESULTS.md with its Soak section replaced by ``body``, or added before "## Method"."""
    return sections.upsert(markdown, HEADING, body)
