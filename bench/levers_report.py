"""Section 3's levers subsection of bench/RESULTS.md, from bench/results/levers.json (bench.levers).

Kept apart from bench/levers.py so that bench/report.py can carry it over without importing a model.
"""

from __future__ import annotations

import statistics
from typing import Any

HEADING = "### 3.1 Levers toward 16 streams with partials (issue 13)"
# what was kept, as decided from the figures below (edit with the figures when they change)
VERDICT = (
    "**Kept**: fair partials, the default (`PARTIAL_ORDER=fair`): at 8 streams the partial gap p50 fell to "
    "0.41x the baseline's in the same run (2.27 s against 4.14 s, 1.31 s against 4.92 s), WER unchanged; its "
    "end -> final moved with the machine's noise both ways (0.36x and 2.8x the baseline's p90 in the two "
    "repeats), as the other variants' did. **Off**: `PARTIAL_WORKERS=2` (a second partial worker takes the "
    "core a final needs: gap 0.28x at 8 streams but end -> final p90 1.93x, and no gain at 16); "
    "`FINAL_GREEDY_LOGPROB` (unset: on one core greedy-first saves 5% of a final at -0.2 with WER unchanged, "
    "9% at -0.3 at +0.45 point; on the rig it bought nothing, since tiny.en's final is mostly its encoder "
    "pass, which greedy does not shrink); the tail-only final, not built (1 clip of 13 has a committed "
    "prefix at its end). **Why 16 streams with partials every <= 1 s cannot be had on these 2 cores**: "
    "section 3's own run measured a tiny.en partial at 0.11 s and a final at 0.34 s on the server at 16 "
    "streams; 16 sessions with one partial a second is 1.76 core-seconds a second of partials, with the "
    "finals (32 x 0.34 s over the ~25 s level) 0.44 more: 2.2 cores of work for 2 cores, before the event "
    "loop and the clients' own CPU. The cadence at 16 is CPU-bound whatever the order; fairness shares the "
    "wait evenly, it cannot remove it. This run's machine was about 4x slower than section 3's (one "
    "stream's final 0.6-1.2 s against 0.21 s: other engineers' runs beside it), so no variant held 16 within "
    "2x here; the ratios within a repeat are the figures to read."
)


def _f(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _med(xs: list[float | None]) -> float | None:
    ys = [x for x in xs if x is not None]
    return statistics.median(ys) if ys else None


def _pair(a: float | None, b: float | None) -> str:
    return f"{_f(a)} / {_f(b)}"


def _level(run: dict[str, Any], n: int) -> dict[str, Any] | None:
    return next((lv for lv in run["levels"] if lv["streams"] == n), None)


def capacity_table(runs: list[dict[str, Any]]) -> str:
    """Per variant and stream count: the medians over repeats, and the ratio to the baseline of the same
    repeat (then the median of those ratios), for the gap and for the p90 end -> final."""
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    base = {r["repeat"]: r for r in runs if r["variant"] == "baseline"}
    rows = []
    for v in variants:
        mine = [r for r in runs if r["variant"] == v]
        for n in (8, 16):
            lvs = [(r, _level(r, n)) for r in mine]
            lvs = [(r, lv) for r, lv in lvs if lv is not None]
            if not lvs:
                continue
            one = [_level(r, 1) for r, _ in lvs]

            def m(key: str, q: str, lvs: list[Any] = lvs) -> float | None:
                return _med([lv[key][q] for _, lv in lvs])

            hold = _med(
                [
                    lv["latency_s"]["p90"] / o["latency_s"]["p90"]
                    for (_, lv), o in zip(lvs, one, strict=True)
                    if o is not None and o["latency_s"]["p90"]
                ]
            )
            vs_gap, vs_p90 = [], []
            for r, lv in lvs:
                b = _level(base[r["repeat"]], n) if r["repeat"] in base else None
                if b is not None and b["partial_gap_s"]["p50"] and lv["partial_gap_s"]["p50"]:
                    vs_gap.append(lv["partial_gap_s"]["p50"] / b["partial_gap_s"]["p50"])
                    vs_p90.append(lv["latency_s"]["p90"] / b["latency_s"]["p90"])
            rows.append(
                [
                    v,
                    str(n),
                    _pair(m("latency_s", "p50"), m("latency_s", "p90")),
                    _f(hold),
                    _pair(m("first_text_s", "p50"), m("first_text_s", "p90")),
                    _pair(m("partial_gap_s", "p50"), m("partial_gap_s", "p90")),
                    _pair(m("segment_gap_s", "p90"), m("segment_gap_s", "max")),
                    _f(_med([lv["partials_per_segment"] for _, lv in lvs]), ".1f"),
                    _f(100 * (_med([lv["wer"] for _, lv in lvs]) or 0), ".1f") + "%",
                    str(sum(lv["errors"] for _, lv in lvs)),
                    _pair(_med(vs_gap), _med(vs_p90)) if v != "baseline" else "1 / 1",
                ]
            )
    headers = [
        "variant",
        "streams",
        "end -> final, s (p50 / p90)",
        "p90 / one stream's",
        "first text, s (p50 / p90)",
        "partial gap, s (p50 / p90)",
        "segments' median gap, s (p90 / worst)",
        "partials per segment",
        "WER",
        "failed",
        "vs baseline: gap p50 / end -> final p90",
    ]
    return _table(headers, rows)


def greedy_table(g: dict[str, Any]) -> str:
    v = g["variants"]
    beam = v["beam5"]["total_s"]
    rows = [
        [
            name,
            _f(x["total_s"]),
            _f(x["total_s"] / beam),
            f"{len(x['greedy_kept'])}/{g['clips']}",
            _f(100 * x["wer"], ".1f") + "%",
        ]
        for name, x in v.items()
    ]
    return _table(
        [
            "final",
            f"{g['clips']} finals, s (one core, best of {g['repeats']})",
            "ratio to beam 5",
            "greedy kept",
            "WER",
        ],
        rows,
    )


def tail_text(t: dict[str, Any]) -> str:
    clips = t["clips"]
    with_prefix = {k: c for k, c in clips.items() if c["committed_s"]}
    longest = max((c["audio_s"] for c in clips.values() if not c["committed_s"]), default=0.0)
    out = (
        f"Committed prefix when the clip ends (partials every 300 ms of audio, partial_window_s "
        f"{t['partial_window_s']:g}): **{len(with_prefix)} of {len(clips)}** clips have one; the others "
        f"are all shorter than the window ({longest:.1f} s "
        "the longest), so a tail-only final would decode exactly what it decodes now."
    )
    for k, c in with_prefix.items():
        out += (
            f" {k} ({c['audio_s']:.1f} s): {c['committed_s']:.1f} s committed; its final "
            f"{_f(c['final_whole_s'])} s on the whole, {_f(c['final_tail_s'])} s on the tail (one core)."
        )
    return out


def section(d: dict[str, Any]) -> str:
    out = [HEADING, ""]
    cmds = "; ".join(
        f"`{m['command']}` ({m['date']}, commit `{m['commit']}`, load {m['load_at_end']} at the end)"
        for m in d.get("meta", {}).values()
    )
    out += [f"Measured by `bench/levers.py`: {cmds}.", ""]
    if d.get("capacity"):
        reps = max(r["repeat"] for r in d["capacity"]) + 1
        out += [
            "**(a) fair partials, (b) two partial workers**: the capacity rig (section 3's clients, 2 "
            f"segments per stream, clips of the full plan), each variant its own server, {reps} repeat(s), "
            "variants interleaved; medians over repeats. `baseline` is today's engine order "
            "(`PARTIAL_ORDER=fifo`, `PARTIAL_WORKERS=1`); each other variant changes one thing.",
            "",
            capacity_table(d["capacity"]),
            "",
        ]
    if d.get("greedy"):
        out += [
            "**(d) greedy final first, beam 5 where greedy is unsure** (`FINAL_GREEDY_LOGPROB`: the "
            "greedy result kept when its mean log-probability per token is at least the threshold and it "
            "passes the beam's checks: compression ratio <= 2.4, no loop, not cut at the length limit), "
            "every clip of ../shared/speech, in-process, one core:",
            "",
            greedy_table(d["greedy"]),
            "",
        ]
    if d.get("tail"):
        out += [
            "**(c) the final decoding only the tail after the partials' committed prefix**: "
            + tail_text(d["tail"]),
            "",
        ]
    if VERDICT:
        out += [VERDICT, ""]
    return "\n".join(out).rstrip()
