"""RESULTS.md from the runs' figures, the plots beside it, and the history of earlier runs.

A full ``make bench`` or ``make bench-peers`` run is *published*: its figures go to bench/results/<kind>.json,
a line of key figures is appended to bench/history.jsonl (never rewritten), and bench/RESULTS.md is
rendered again from the latest of both kinds plus that history, with plots in bench/plots/. Quick, smoke
and ``--only`` runs write the same files into their output folder only (bench/out/ by default).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import arm64_report, charts, draft_report, idle_report, levers_report, soak_report
from .goals import Goal, evaluate, f

BENCH = Path(__file__).resolve().parent
RESULTS_DIR = BENCH / "results"
HISTORY = BENCH / "history.jsonl"


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def pc(x: float | None) -> str:
    return f(None if x is None else 100 * x, ".1f", "%")


def s2(d: dict[str, Any]) -> str:
    """p50 / p90 of a spread."""
    return f"{f(d['p50'])} / {f(d['p90'])}"


def command(meta: dict[str, Any]) -> str:
    cmd = f"`{meta['command']}`"
    return f"`{meta['make']}` ({cmd})" if meta.get("make") else cmd


# ---- sections -----------------------------------------------------------------------------------


def run_section(meta: dict[str, Any], title: str) -> str:
    return "\n".join(
        [
            f"**{title}**: {command(meta)} ({meta['plan']} plan) on {meta['date']}, "
            f"commit `{meta['commit']}` ({meta['commit_subject']}; {meta['uncommitted_files']} uncommitted "
            f"files in the tree, which the editable install runs too), {meta.get('duration_s', 0):.0f} s.",
            f"Machine: {meta['cpu']}, {meta['cores']} cores, {meta['memory_gb']} GB; "
            f"Python {meta['python']}, "
            + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
            + f". Load average (1/5/15 min) {meta['load_at_start']} at the start, "
            f"{meta.get('load_at_end')} at the end "
            "(the machine is shared: other engineers' tests run beside the benchmark).",
        ]
    )


def goals_section(goals: list[Goal]) -> str:
    mark = {True: "met", False: "**not met**", None: "not measured"}
    return table(
        ["goal", "our figure", "met?", "how judged; for a gap: reason and next step"],
        [[g.goal, g.figure, mark[g.met], g.note] for g in goals],
    )


def latency_section(lat: dict[str, Any], acc: dict[str, Any], plots: dict[str, str]) -> str:
    rows = []
    for m, s in lat.items():
        fallback = f", {s['fallback_finals']} by the fallback" if s["fallback_finals"] else ""
        rows.append(
            [
                m,
                f"{s['clips'] - s['missed']}/{s['clips']} ({s['finals']} finals{fallback})",
                s2(s["latency_s"]),
                s2(s["worker_latency_s"]),
                s2(s["minus_hangover_s"]),
                s2(s["ratio"]),
                s2(s["worker_ratio"]),
                s2(s["first_partial_s"]),
                f(s["partial_gap_s"]["p50"]),
                f"{s['speculative']}/{s['clips']}",
                pc(acc.get("modes", {}).get(m, {}).get("wer")),
            ]
        )
    hang = next(iter(lat.values()))["hangover_ms"]
    out = [
        table(
            [
                "mode",
                "clips with a final",
                "end of speech -> final, s (p50 / p90)",
                "final's latency_ms, s",
                "minus hangover, s",
                "ratio to baseline",
                "ratio (latency_ms)",
                "onset -> first partial, s",
                "partial gap p50, s",
                "speculative",
                "WER",
            ],
            rows,
        ),
        "",
        f"Hangover (VAD_HANGOVER_MS) {hang} ms; ratio = (latency - hangover) / the baseline's decode time of "
        "the same clip, per utterance, then median / p90.",
    ]
    for name in ("latency", "first_partial"):
        if name in plots:
            out += ["", f"![{name}]({plots[name]})"]
    per = []
    for m, s in lat.items():
        for u in s["utterances"]:
            per.append(
                [
                    m,
                    u["clip"],
                    f(u["latency_s"]),
                    f(u["worker_latency_s"]),
                    f(u["baseline_s"]),
                    f(u["ratio"]),
                    f(u["first_partial_s"]),
                    str(u["finals"]),
                    u["text"][:80],
                ]
            )
    out += [
        "",
        "<details><summary>Per utterance</summary>",
        "",
        table(
            [
                "mode",
                "clip",
                "latency s",
                "latency_ms s",
                "baseline s",
                "ratio",
                "first partial s",
                "finals",
                "text",
            ],
            per,
        ),
        "",
        "</details>",
    ]
    return "\n".join(out)


def accuracy_section(acc: dict[str, Any]) -> str:
    ids = list(acc.get("baseline_per_clip", {}))
    modes = list(acc.get("modes", {}))
    rows = [
        [i, *(pc(acc["modes"][m]["per_clip"].get(i)) for m in modes), pc(acc["baseline_per_clip"][i])]
        for i in ids
    ]
    rows.append(
        [
            "**all**",
            *(f"**{pc(acc['modes'][m]['wer'])}**" for m in modes),
            f"**{pc(acc.get('baseline_wer'))}**",
        ]
    )
    return table(["clip", *modes, "baseline"], rows)


def capacity_rows(cap: dict[str, Any]) -> list[list[str]]:
    return [
        [
            str(lv["streams"]),
            str(lv["segments"]),
            s2(lv["latency_s"]),
            s2(lv["ratio_to_baseline"]),
            s2(lv["first_text_s"]),
            f(lv["partial_gap_s"]["p50"]),
            f(lv["partials_per_segment"], ".1f"),
            pc(lv["wer"]),
            str(lv["errors"]),
            server_decodes(lv.get("decodes") or {}),
        ]
        for lv in cap["levels"]
    ]


def server_decodes(d: dict[str, Any]) -> str:
    """The server's own mean decode time per kind over the level (its /metrics), with the count."""
    if not d:
        return "n/a"
    return " / ".join(f"{f(d[k]['mean_s'])} ({d[k]['n']})" for k in ("final", "partial") if k in d)


CAPACITY_HEADERS = [
    "streams",
    "segments",
    "end -> final, s (p50 / p90)",
    "ratio to baseline",
    "first text, s",
    "partial gap p50, s",
    "partials per segment",
    "WER",
    "failed",
    "server's mean decode, s: final (n) / partial (n)",
]


def capacity_section(cap: dict[str, Any], plots: dict[str, str]) -> str:
    out = [
        table(CAPACITY_HEADERS, capacity_rows(cap)),
        "",
        f"Held: **{cap['held']}** streams (the largest count up to which every count kept its p90 within "
        f"{cap['hold_factor']:g}x of one stream's, {f(cap['one_stream_p90_s'])} s, with no failed stream).",
    ]
    if "capacity" in plots:
        out += ["", f"![capacity]({plots['capacity']})"]
    return "\n".join(out)


def final_cost_section(cost: dict[str, Any]) -> str:
    rows = [
        [
            cid,
            f(d["audio_s"], ".1f"),
            f(d["offline_s"]),
            f(d["encoder_30s_s"]),
            f(d["ours_s"]),
            "offline" if d["fell_back"] else f"{cost['context_s']:g} s",
        ]
        for cid, d in cost["clips"].items()
    ]
    t = cost["total"]
    rows.append(["**all**", "", f(t["offline_s"]), f(t["encoder_30s_s"]), f(t["ours_s"]), ""])
    head = ["clip", "audio, s", "offline transcribe, s", "its encoder pass (30 s window), s",
            "our final, s", "our final's context"]
    return "\n".join([
        table(head, rows),
        "",
        f"One core, best of a few repeats. The encoder's pass over Whisper's 30 s window is "
        f"**{cost['encoder_share']:.0%}** of an offline decode's time. Encoded {cost['batch']} at a time, a "
        f"window costs {f(cost['encoder_batched_per_item_s'])} s against {f(cost['encoder_single_s'])} s "
        f"alone ({cost['encoder_batched_per_item_s'] / cost['encoder_single_s'] - 1:+.0%}): on a CPU, "
        f"batching the finals that end together buys nothing. A shorter "
        f"window is what pays: our finals (FINAL_CONTEXT_S={cost['context_s']:g}, checked and decoded "
        f"offline when a check fails: {cost['fallbacks']} of {len(cost['clips'])} here) take "
        f"**{cost['speedup']:.1f}x** less time, at a WER of {cost['wer_ours']:.1%} against "
        f"{cost['wer_offline']:.1%} offline.",
    ])


def edge_section(edge: dict[str, Any]) -> str:
    rows = []
    for m, d in edge.get("idle", {}).items():
        rows.append(
            [
                m,
                f"idle ({d.get('seconds', 0):g} s of silence)",
                f(d.get("cpu_percent")),
                f(d.get("rss_mb"), ".1f"),
                f(d.get("rss_peak_mb"), ".1f"),
            ]
        )
    for m, d in edge.get("transcribing", {}).items():
        rows.append(
            [
                m,
                "transcribing (the latency run)",
                f(d["cpu_percent"]),
                f(d["rss_mb"], ".1f"),
                f(d["rss_peak_mb"], ".1f"),
            ]
        )
    out = [table(["mode", "while", "CPU, % of one core", "RSS, MB", "peak RSS, MB"], rows)]
    for m, d in edge.get("idle", {}).items():
        if d.get("memory_by_owner"):
            out += [
                "",
                f"Idle {m} worker, resident memory by owner: "
                + ", ".join(f"{k} {v:g} MB" for k, v in d["memory_by_owner"])
                + ".",
            ]
    return "\n".join(out)


def both(s: dict[str, Any], key: str) -> str:
    """A dialect's ratio: for the endpointed ones raw, then with the hangover taken off."""
    if not s["endpointed"]:
        return f(s[key])
    return f"{f(s['raw_' + key])} raw; {f(s[key])} minus hangover"


def na(x: float | None) -> str:
    """A figure that does not apply to the dialect is left blank, not n/a."""
    return "" if x is None else f(x)


def dialects_section(d: dict[str, Any], meta: dict[str, Any]) -> str:
    """One row per dialect of the one server: how its utterances end, end of speech -> final (and minus
    the hangover where the server's gate ends them), as ratios to /stt's and to the offline decode."""
    if "error" in d:
        return f"Produced by {command(meta)} ({meta['plan']} plan): not measured: {d['error']}"
    rows = []
    for name, s in d.get("dialects", {}).items():
        rows.append(
            [
                s["label"],
                s["ends"],
                f"{s['with_final']}/{s['clips']} ({s['finals']} finals)",
                s2(s["end_to_final_s"]),
                s2(s["minus_hangover_s"]) if s["endpointed"] else "",
                "" if s["endpointed"] else s2(s["after_end_s"]),
                "1 (reference)" if name == "stt" else both(s, "ratio_to_stt"),
                both(s, "ratio_to_baseline"),
                s2(s["first_partial_s"]),
                pc(s["wer"]),
            ]
        )
    labels = d.get("labels", {})
    for name, why in d.get("skipped", {}).items():
        rows.append([labels.get(name, name), "not measured: " + why, *([""] * 8)])
    out = [
        f"Produced by {command(meta)} ({meta['plan']} plan): clips {', '.join(d.get('clips', []))}.",
        "",
        table(
            [
                "dialect",
                "utterance ended by",
                "clips with a final",
                "end of speech -> final, s (p50 / p90)",
                "minus hangover, s",
                "end/commit/audio-stop -> final, s",
                "ratio to /stt (p50)",
                "ratio to baseline decode (p50)",
                "onset -> first partial, s",
                "WER",
            ],
            rows,
        ),
        "",
        f"One server, one stream at a time, every dialect in turn on each clip, 20 ms frames in real time. "
        f"Hangover (VAD_HANGOVER_MS, as the server ran) {d['hangover_ms']} ms, gate {d['vad_engine']}. "
        "Client-ended dialects send their end right after the clip (its trailing silence included); the "
        "endpointed ones stream silence on, and the server's gate ends the utterance after the hangover. "
        "Ratios are of medians: to /stt's end of speech -> final in this run "
        f"({f(d.get('stt_p50_s'))} s), and to the baseline's median offline decode of the same clips "
        f"({f(d.get('baseline_decode_p50_s'))} s); for the endpointed dialects both raw and minus the "
        "hangover (the silence the gate waits through by design, which /stt's client does not wait).",
    ]
    errors = [
        f"{name}: {s['errors']} failed ({'; '.join(s['error_samples'])})"
        for name, s in d.get("dialects", {}).items()
        if s["errors"]
    ]
    if errors:
        out += ["", "Failed streams: " + "; ".join(errors) + "."]
    per = [
        [
            t["dialect"],
            t["clip"],
            f(t["end_to_final_s"]),
            na(t["minus_hangover_s"]),
            na(t["after_end_s"]),
            f(t["first_partial_s"]),
            str(t["finals"]),
            (t["error"] or t["text"])[:80],
        ]
        for s in d.get("dialects", {}).values()
        for t in s["takes"]
    ]
    out += [
        "",
        "<details><summary>Per clip</summary>",
        "",
        table(
            ["dialect", "clip", "end -> final s", "minus hangover s", "after end s", "first partial s",
             "finals", "text"],
            per,
        ),
        "",
        "</details>",
    ]
    return "\n".join(out)


PEERS_NOTE = (
    "Wyoming sends text once, after `audio-stop`, so its first text is its final. WhisperLive sends no "
    "final: its end -> final is the arrival of the message that first carried the text it settled on "
    "(generous: a client cannot know then that it will not change); it marked that text completed within "
    "the wait in {committed} segments (it commits after 10 identical re-decodes). Held: the largest stream "
    "count up to which p90 stayed within 2x of one stream's, none failing."
)


def committed_share(cap: dict[str, Any]) -> str:
    outcomes = [o for lv in cap.get("levels", []) for o in lv["outcomes"] if o["error"] is None]
    return f"{sum(1 for o in outcomes if o['committed_s'] is not None)}/{len(outcomes)}"


def wyoming_lines(peers: dict[str, Any]) -> list[str]:
    """Issue 10's goals for the Wyoming listener, in the same run as wyoming-faster-whisper: audio-stop ->
    transcript at most half of its, at equal WER (within 0.5 point); first chunk within 0.4 s of onset."""
    ours, theirs = peers.get("stt-bridge (Wyoming)", {}), peers.get("wyoming-faster-whisper", {})
    if "levels" not in ours or "levels" not in theirs:
        return []
    a, b = ours["levels"][0], theirs["levels"][0]
    lat_a, lat_b = a["latency_s"]["p50"], b["latency_s"]["p50"]
    if lat_a is None or not lat_b or a["wer"] is None or b["wer"] is None:
        return []
    ratio = lat_a / lat_b
    first = a["first_text_s"]["p50"]
    met = ratio <= 0.5 and a["wer"] <= b["wer"] + 0.005
    return ["", f"Wyoming, one stream: our audio-stop -> transcript is {ratio:.2f}x wyoming-faster-whisper's "
                f"(goal <= 0.5x at equal WER: {'met' if met else 'not met'}; WER {pc(a['wer'])} against "
                f"{pc(b['wer'])}); first transcript-chunk {f(first)} s after speech onset (goal <= 0.4 s: "
                f"{'met' if first is not None and first <= 0.4 else 'not met'}); streams held "
                f"{ours['held']} against {theirs['held']}."]


def peers_section(p: dict[str, Any], plots: dict[str, str]) -> str:
    series = {"stt-bridge (/stt)": p.get("capacity", {}), **p.get("peers", {})}
    rows = []
    for name, cap in series.items():
        if "levels" not in cap:
            rows.append([name, cap.get("error", "not run"), "", "", "", "", ""])
            continue
        one = cap["levels"][0]
        rows.append(
            [
                name,
                s2(one["latency_s"]),
                s2(one["ratio_to_baseline"]),
                s2(one["first_text_s"]),
                f(one["partial_gap_s"]["p50"]),
                pc(one["wer"]),
                str(cap["held"]),
            ]
        )
    out = [
        table(
            [
                "server",
                "1 stream: end -> final, s (p50 / p90)",
                "as a ratio to the offline decode (p50 / p90)",
                "speech onset -> first text, s",
                "partial gap, s",
                "WER",
                "streams held",
            ],
            rows,
        ),
        "",
        PEERS_NOTE.format(committed=committed_share(p.get("peers", {}).get("whisperlive", {}))),
        *wyoming_lines(p.get("peers", {})),
    ]
    for name, cap in series.items():
        if "levels" in cap:
            versions = ", ".join(f"{k} {v}" for k, v in cap.get("versions", {}).items())
            out += [
                "",
                f"**{name}**" + (f" ({versions})" if versions else ""),
                "",
                table(CAPACITY_HEADERS, capacity_rows(cap)),
            ]
    if "capacity" in plots:
        out += ["", f"![capacity with peers]({plots['capacity']})"]
    return "\n".join(out)


def history_section(history: list[dict[str, Any]]) -> str:
    b = [h for h in history if h["kind"] == "bench"]
    p = [h for h in history if h["kind"] == "peers"]
    out = []
    if b:
        out.append(
            table(
                [
                    "date",
                    "commit",
                    "local ratio p50",
                    "ws ratio p50",
                    "local / ws end->final p50, s",
                    "first partial p50 local / ws, s",
                    "WER local / ws / baseline",
                    "streams held",
                    "idle ws CPU % / RSS MB",
                ],
                [
                    [
                        h["date"],
                        h["commit"],
                        f(h.get("local_ratio_p50")),
                        f(h.get("ws_ratio_p50")),
                        f"{f(h.get('local_latency_p50'))} / {f(h.get('ws_latency_p50'))}",
                        f"{f(h.get('local_first_partial_p50'))} / {f(h.get('ws_first_partial_p50'))}",
                        f"{pc(h.get('local_wer'))} / {pc(h.get('ws_wer'))} / {pc(h.get('baseline_wer'))}",
                        str(h.get("held")),
                        f"{f(h.get('idle_ws_cpu'))} / {f(h.get('idle_ws_rss'), '.1f')}",
                    ]
                    for h in b
                ],
            )
        )
    if p:
        names = sorted({k for h in p for k in h.get("held_by", {})})
        out += [
            "",
            table(
                ["date", "commit", *(f"{n} held" for n in names), *(f"{n} 1-stream p50, s" for n in names)],
                [
                    [
                        h["date"],
                        h["commit"],
                        *(str(h["held_by"].get(n)) for n in names),
                        *(f(h.get("p50_by", {}).get(n)) for n in names),
                    ]
                    for h in p
                ],
            ),
        ]
    return "\n".join(out) if out else "No earlier runs recorded."


METHOD = """\
- **Latency** (`bench/latency.py`): the clips are concatenated with pauses
  (harness.speech.concat) and played in real time into the real `stt-worker`
  (AUDIO_SOURCE=<wav>, AUDIO_REALTIME=1) against a private Mosquitto; `STT_BACKEND=local`, then `ws`
  against a real `stt-server`. The WAV's time is mapped to wall time from the worker's `worker_started`
  log line (the WAV source paces from there, within one 30 ms frame). End of speech is the end of the
  clip's last 10 ms frame within 35 dB of its peak (the file's trailing silence is not speech); latency is
  the subscriber's receive time of the clip's last final minus that wall time. The final's own
  `latency_ms` (the worker's clock, from the last voiced frame its gate saw) is shown beside it; it reads
  ~0.1 s lower because webrtcvad calls voiced the 50-190 ms after the acoustic end of these clips (checked
  frame by frame on LJ001-0002/0008/0011 and jfk), so the gate's idea of the end is that much late. First
  partial: the subscriber's receive time of the clip's first partial minus the wall time of speech onset.
- **Baseline** (`bench/baseline.py`): `WhisperModel.transcribe` of each whole clip, the embedded model,
  int8, beam 5, in the same run, timed after a warm-up on the clip's first second (as
  ../shared/conformance/lib.py does).
- **Accuracy** (`bench/accuracy.py`): WER of each clip's finals against refs.tsv, beside the baseline's
  WER, both with harness.speech.wer's normalisation.
- **Capacity** (`bench/capacity.py`): N clients stream clips in 20 ms frames paced in real time into one
  `stt-server` (partials on), send `end`, wait for the final; streams start spread over a second and each
  streams several clips one after another (one connection per clip). The next count is tried while the
  last one held; 16 only when 8 held.
- **Edge** (`bench/edge.py`): psutil CPU time and RSS of the worker process, idle on a WAV of silence (ws
  and local side by side, from 1 s after start) and over the latency runs.
- **Peers** (`bench/peers.py`, `make bench-peers`): wyoming-faster-whisper and WhisperLive in their own
  venvs (bench/.venvs/), the same clips, model, pacing and capacity runner; our `/stt` server measured in
  the same run. Wyoming answers once, after `audio-stop`. WhisperLive has no final message: its
  end -> final is when the text last changed (generous), and end -> committed when it marked the whole
  text completed, if it did within the wait.
- **Dialects** (`bench/dialects.py`): one `stt-server` with `STT_TOKEN`, `WYOMING_PORT`, `SOCKETIO_PORT`
  and `VAD_HANGOVER_MS` set; each latency clip is streamed in real time (20 ms frames) into `/stt`, seed
  002's NeMo path, Wyoming, seed 001's `/ws`, seed 003's `/ws/transcribe` and seed 004's Socket.IO, one
  stream at a time, each by a client written from its seed. `/stt`, NeMo and Wyoming end the utterance
  right after the clip (`end`, `commit`, `audio-stop`); the others keep sending silence until the
  server's gate ends it. End of speech is the clip's (as for latency), mapped to the wall clock from the
  first frame sent; the time to the clip's last final is given raw, minus the hangover for the
  endpointed dialects, and from the end message for the others; first partial from speech onset
  (Wyoming: `transcript-chunk`)."""


def render(
    bench: dict[str, Any] | None,
    peers: dict[str, Any] | None,
    history: list[dict[str, Any]],
    plots: dict[str, str],
) -> str:
    out = [
        "# stt-bridge benchmark",
        "",
        "Generated by `bench/report.py` from the runs below (`make bench`, `make bench-peers`; "
        "`.venv/bin/python -m bench.report` renders it again from bench/results/ without a run); do not edit "
        "by hand. Every figure is measured, none is asserted by a test.",
        "",
    ]
    for d, title in ((bench, "Benchmark run"), (peers, "Peers run")):
        if d:
            out += [run_section(d["meta"], title), ""]
    out += ["## Goals", "", goals_section(evaluate(bench, peers)), ""]
    if bench and bench.get("latency"):
        out += [
            "## 1. Latency, end to end (worker -> MQTT)",
            "",
            latency_section(bench["latency"], bench.get("accuracy", {}), plots),
            "",
        ]
    if bench and bench.get("accuracy"):
        out += ["## 2. Accuracy (WER)", "", accuracy_section(bench["accuracy"]), ""]
    if bench and bench.get("capacity"):
        out += [
            "## 3. Server capacity",
            "",
            capacity_section(bench["capacity"], plots if not (peers and peers.get("peers")) else {}),
            "",
        ]
    if (levers := load_json(RESULTS_DIR / "levers.json")) is not None:
        # bench/levers.py's own run (issue 13's capacity levers), carried over by every re-render
        out += [levers_report.section(levers), ""]
    if bench and bench.get("edge"):
        out += ["## 4. Edge cost (the worker)", "", edge_section(bench["edge"]), ""]
    if peers and peers.get("peers"):
        out += [
            "## 5. Peers (same machine, clips, model and pacing; one run)",
            "",
            peers_section(peers, plots),
            "",
        ]
    if bench and bench.get("final_cost"):
        out += ["## 6. Cost of a final (why FINAL_CONTEXT_S)", "",
                final_cost_section(bench["final_cost"]), ""]
    if bench and bench.get("dialects"):
        out += ["## 7. Every dialect of stt-server (one server, one run)", "",
                dialects_section(bench["dialects"], bench["meta"]), ""]
    if (soak := load_json(RESULTS_DIR / "soak.json")) is not None:
        # make soak's own run (bench/soak.py writes the section itself): carried over by every re-render
        out += [soak_report.HEADING, "", soak_report.section(soak), ""]
    if (draft := load_json(RESULTS_DIR / "draft.json")) is not None:
        # bench/draft.py's own run (DRAFT_MODEL with a real larger model), carried over the same way
        out += [draft_report.HEADING, "", draft_report.section(draft), ""]
    if (arm64 := load_json(RESULTS_DIR / "arm64.json")) is not None:
        # make check-arm64's own run (bench/arm64.py writes the section itself), carried over the same way
        out += [arm64_report.HEADING, "", arm64_report.section(arm64), ""]
    idle = newest(bench.get("idle") if bench else None, load_json(RESULTS_DIR / "idle.json"))
    if idle is not None:
        # make bench-idle's own run (bench/idle.py writes the section itself) or this run's, the later one
        out += [idle_report.HEADING, "", idle_report.section(idle), ""]
    out += [
        "## Method",
        "",
        METHOD,
        "",
        "## Before/after",
        "",
        "Key figures of every published run, oldest first (bench/history.jsonl).",
        "",
        history_section(history),
        "",
    ]
    return "\n".join(out)


# ---- files --------------------------------------------------------------------------------------


def key_figures(kind: str, r: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "date": r["meta"]["date"],
        "commit": r["meta"]["commit"],
        "kind": kind,
        "plan": r["meta"]["plan"],
    }
    if kind == "bench":
        for m, s in r.get("latency", {}).items():
            row[f"{m}_ratio_p50"] = s["ratio"]["p50"]
            row[f"{m}_ratio_p90"] = s["ratio"]["p90"]
            row[f"{m}_latency_p50"] = s["latency_s"]["p50"]
            row[f"{m}_first_partial_p50"] = s["first_partial_s"]["p50"]
        for m, a in r.get("accuracy", {}).get("modes", {}).items():
            row[f"{m}_wer"] = a["wer"]
        row["baseline_wer"] = r.get("accuracy", {}).get("baseline_wer")
        row["held"] = r.get("capacity", {}).get("held")
        idle = r.get("edge", {}).get("idle", {}).get("ws", {})
        row["idle_ws_cpu"], row["idle_ws_rss"] = idle.get("cpu_percent"), idle.get("rss_mb")
        dia = r.get("dialects", {}).get("dialects", {})
        if dia:
            row["dialect_end_final_p50"] = {k: v["end_to_final_s"]["p50"] for k, v in dia.items()}
            row["dialect_ratio_to_stt"] = {k: v["ratio_to_stt"] for k, v in dia.items()}
    else:
        series = {"stt-bridge": r.get("capacity", {}), **r.get("peers", {})}
        row["held_by"] = {k: v.get("held") for k, v in series.items()}
        row["p50_by"] = {k: v["levels"][0]["latency_s"]["p50"] for k, v in series.items() if v.get("levels")}
    return row


def newest(*runs: dict[str, Any] | None) -> dict[str, Any] | None:
    """The run with the latest ``meta.date`` of those given."""
    present = [r for r in runs if r is not None]
    return max(present, key=lambda r: str(r["meta"]["date"])) if present else None


def load_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def load_history() -> list[dict[str, Any]]:
    if not HISTORY.is_file():
        return []
    return [json.loads(line) for line in HISTORY.read_text().splitlines() if line.strip()]


def write(kind: str, results: dict[str, Any], out_dir: Path, publish: bool) -> Path:
    """Write the run's figures, plots and RESULTS.md; returns the RESULTS.md written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"results-{kind}.json").write_text(json.dumps(results, indent=1))
    if not publish:
        bench, peers = (results, None) if kind == "bench" else (None, results)
        made = charts.draw(bench, peers, out_dir)
        target = out_dir / "RESULTS.md"
        target.write_text(render(bench, peers, [], {k: v.name for k, v in made.items()}))
        return target
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"{kind}.json").write_text(json.dumps(results, indent=1))
    with HISTORY.open("a") as fh:
        fh.write(json.dumps(key_figures(kind, results)) + "\n")
    return render_published()


def render_published() -> Path:
    """bench/RESULTS.md and bench/plots/ again from bench/results/*.json and the history (no new run)."""
    bench, peers = load_json(RESULTS_DIR / "bench.json"), load_json(RESULTS_DIR / "peers.json")
    made = charts.draw(bench, peers, BENCH / "plots")
    target = BENCH / "RESULTS.md"
    target.write_text(
        render(bench, peers, load_history(), {k: os.path.relpath(v, BENCH) for k, v in made.items()})
    )
    return target


if __name__ == "__main__":
    print(f"bench: wrote {render_published()}")
