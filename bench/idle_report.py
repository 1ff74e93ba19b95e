"""The "Idle worker against the capture floor" section of bench/RESULTS.md, from bench/results/idle.json
(``make bench-idle``'s figures, bench/idle.py).

Apart from bench/idle.py for the reason soak_report.py is apart from soak.py: bench/report.py renders
RESULTS.md again after every published ``make bench`` and carries the section over without importing the
run's processes.
"""

from __future__ import annotations

from typing import Any

from . import sections

HEADING = "## Idle worker against the capture floor"
CPU_GOAL, RSS_GOAL = 1.0, 60.0  # issue 13: % of one core, MB (ws mode)
DEFAULT_BLOCK_MS = 60  # AUDIO_BLOCK_MS's default (stt_worker/settings.py)
ONSET_SLACK_S = 0.030  # issue 13: a longer block may add this much to the mean onset latency


def _f(x: float | None, fmt: str = ".2f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}x"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _label(p: dict[str, Any]) -> str:
    bare = " (ALSA without libasound2-plugins' conf.d)" if p.get("bare_alsa") else ""
    if p["what"] == "arecord":
        return "floor: `arecord` -> /dev/null" + bare
    if p["what"] == "sounddevice":
        return "floor: Python + sounddevice, empty callback" + bare
    shipped = {30: " (before: one VAD frame)", DEFAULT_BLOCK_MS: " (AUDIO_BLOCK_MS default)"}
    return f"**stt-worker, {p['backend']}**{shipped.get(p['block_ms'], '')}{bare}"


def _detail(e: dict[str, Any]) -> str:
    d = str(e.get("detail") or "")
    if "4408" in d or d == "idle_timeout":
        return " (idle timeout)"
    return f" ({d})" if d else ""


def _verdict(r: dict[str, Any], key: str) -> str:
    marks = []
    for phase, d in r["phases"].items():
        fig = d["figures"][key]
        cpu, rss = fig["cpu_percent"], fig["rss_mb"]
        ok = cpu is not None and rss is not None and cpu < CPU_GOAL and rss < RSS_GOAL
        marks.append(f"{phase}: {_f(cpu)}% and {_f(rss, '.0f')} MB, {'met' if ok else '**not met**'}")
    return "; ".join(marks)


def section(r: dict[str, Any]) -> str:
    """The section's body (without its heading)."""
    meta, procs = r["meta"], r["processes"]
    make = f"`{meta['make']}` (`{meta['command']}`)" if meta.get("make") else f"`{meta['command']}`"
    out = [
        f"{make} on {meta['date']}, commit `{meta['commit']}` ({meta['commit_subject']}; "
        f"{meta['uncommitted_files']} uncommitted files in the tree, which the editable install runs too), "
        f"{meta.get('duration_s', 0):.0f} s. Machine: {meta['cpu']}, {meta['cores']} cores, "
        f"{meta['memory_gb']} GB; load average {meta['load_at_start']} at the start, "
        f"{meta.get('load_at_end')} at the end (shared: other engineers' tests run beside it).",
        "",
        "Every process below ran at once, each on its own virtual microphone (ALSA's `file` plugin over "
        "`null`, its input a FIFO that a clock process writes one period of silence into per block, in "
        "real time: one wake-up per block, as a hardware device gives), sampled over the same windows of "
        f"{r['seconds']:g} s (the first {r['settle_s']:g} s after the last worker started). CPU: psutil "
        "user + system time over the window in % of one core (`bench/rig.py` Sampler, as `bench/edge.py`); "
        "the ratio is to the floor at the same block size in the same window. Phase *as found*: the machine "
        f"as others left it; *busy*: {r['busy_procs']} processes spinning (`while True: pass`, nice 0 like "
        "everything here) added by the run; *after the server's idle timeout*: as found again, from 30 s "
        "after the server's IDLE_TIMEOUT_S has run out on the idle ws sessions (the state an idle worker "
        "lives in). The clocks' own CPU is the device's and is not counted.",
        "",
    ]
    rows = []
    for phase, d in r["phases"].items():
        for key, fig in d["figures"].items():
            p = procs[key]
            rows.append([phase, _label(p), str(p["block_ms"]), _f(fig["cpu_percent"]),
                         "" if p["floor"] else _ratio(fig["ratio_to"]["arecord"]),
                         "" if p["floor"] else _ratio(fig["ratio_to"]["sounddevice"]),
                         _f(fig["rss_mb"], ".1f")])
    out.append(_table(["phase", "process", "block, ms", "CPU, % of one core", "ratio to arecord",
                       "ratio to sounddevice loop", "RSS, MB"], rows))
    loads = "; ".join(f"{k} {d['load_before']} -> {d['load_after']}" for k, d in r["phases"].items())
    out += ["", f"Load average (1/5/15 min) before -> after each window: {loads}."]
    ws = "worker-ws-30"
    # scripts/install.sh and make setup no longer install libasound2-plugins (its codecs, which PortAudio's
    # device scan loads, are +17 MB): ALSA without its conf.d is the ALSA the worker is shipped with
    verdicts = [(f"worker-ws-{DEFAULT_BLOCK_MS}-bare",
                 f"as shipped (AUDIO_BLOCK_MS={DEFAULT_BLOCK_MS}, ALSA as scripts/install.sh leaves it: "
                 "without libasound2-plugins)"),
                (f"worker-ws-{DEFAULT_BLOCK_MS}", "with libasound2-plugins' ALSA conf.d (a desktop's ALSA)"),
                (ws, "before (30 ms blocks)"),
                *((f"worker-ws-{b}", f"AUDIO_BLOCK_MS={b}") for b in r.get("longer_blocks_ms", [])
                  if b not in (30, DEFAULT_BLOCK_MS))]
    lines = [f"- {label}: {_verdict(r, key)}." for key, label in verdicts if key in procs]
    if lines:
        out += ["", f"Goal (issue 13): an idle ws worker under {CPU_GOAL:g}% of a core and {RSS_GOAL:g} MB "
                    "RSS.", "", *lines]
    seen = []
    phases = list(r["phases"].values())
    started = r.get("started", phases[0]["t0"] - r["settle_s"])
    for key, events in r.get("events", {}).items():
        # what happened while the windows ran (the onsets after them load the server on purpose)
        marks = [f"`{e['event']}`{_detail(e)} at +{e['t'] - started:.0f} s" for e in events
                 if e["t"] <= phases[-1]["t1"]]
        if marks:
            seen.append(f"{_label(procs[key]).replace('**', '')} at {procs[key]['block_ms']} ms: "
                        + ", ".join(marks))
    if seen:
        out += ["", "Logged by the workers up to the end of the last window, in seconds from the last "
                    "worker's start (the server closes "
                    "a session that sent nothing for its IDLE_TIMEOUT_S, "
                    f"{r.get('server_idle_timeout_s', 120):g} s by default): " + "; ".join(seen) + "."]
    uss = r.get("uss_mb", {})
    if uss:
        out += ["", "USS (memory held by the process alone; RSS also counts pages of shared libraries), at "
                    "the end of the windows: "
                    + ", ".join(f"{_label(procs[k]).replace('**', '')} at {procs[k]['block_ms']} ms "
                                f"{_f(v, '.1f')} MB" for k, v in uss.items() if not k.startswith("arecord"))
                    + "."]
    onset = r.get("onset", {})
    if onset:
        rows = []
        base = onset.get(ws, {})
        for key, o in onset.items():
            rows.append([str(procs[key]["block_ms"]), str(o["n"]), _f(o["p50"], ".3f"), _f(o["p90"], ".3f"),
                         _f(o["max"], ".3f"), _f(o["mean"], ".3f"),
                         "" if key == ws or not base else
                         f"{1000 * (o['mean'] - base['mean']):+.0f} ms "
                         f"({'within' if o['mean'] - base['mean'] <= ONSET_SLACK_S else '**over**'} 30 ms)"])
        out += ["", f"Onset latency, ws workers side by side ({onset[next(iter(onset))]['n']} onsets of "
                    f"{r['onset_clip']}, each at a random phase of the period, machine as found): "
                    "`speech` ON's arrival on MQTT minus the time the clip's first voiced 10 ms entered "
                    "the device. It includes the gate's start window (voiced frames it needs before it "
                    "opens), the same at every block size.", "",
                _table(["block, ms", "onsets", "p50, s", "p90, s", "max, s", "mean, s", "mean vs 30 ms"],
                       rows)]
    for key, owners in r.get("memory_by_owner", {}).items():
        if owners:
            out += ["", f"{_label(procs[key]).replace('**', '')}, resident memory by owner: "
                        + ", ".join(f"{k} {v:g} MB" for k, v in owners) + "."]
    return "\n".join(out)


def upsert(markdown: str, body: str) -> str:
    """RESULTS.md with this section replaced by ``body``, or added before "## Method"."""
    return sections.upsert(markdown, HEADING, body)
