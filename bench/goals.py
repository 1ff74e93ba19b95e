"""The issue's goals, judged from a run's figures (reported, never asserted). Each row says how it was
judged; a gap's reason is built from what the run measured (the worker's own log included), and its next
step is the lever those figures point at."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .clips import pct

LATENCY_RATIO = 0.3
WER_MARGIN_POINTS = 0.5
FIRST_PARTIAL_S = 0.4
CADENCE_SLACK = 1.2  # the median gap between partials may exceed PARTIAL_INTERVAL_MS by this factor
IDLE_CPU_PERCENT = 1.0
IDLE_RSS_MB = 60.0
STREAMS_AIM = 16
DEFAULT_INTERVAL_MS = 300  # PARTIAL_INTERVAL_MS's default, for runs that did not record the server's
# what only the local backend needs, in the terms edge.memory_by_owner names them
LOCAL_ENGINE_LIBS = ("ctranslate2", "faster_whisper", "onnxruntime", "av", "tokenizers", "torch")


@dataclass(frozen=True)
class Goal:
    goal: str
    figure: str
    met: bool | None  # None: not measured by the runs at hand
    note: str


def f(x: float | None, fmt: str = ".2f", unit: str = "") -> str:
    return "n/a" if x is None else f"{x:{fmt}}{unit}"


def one_stream_decodes(cap: dict[str, Any] | None) -> dict[str, Any]:
    """The server's own decode times at one stream (its /metrics), by kind: the same engine as local."""
    levels = (cap or {}).get("levels") or [{}]
    out: dict[str, Any] = levels[0].get("decodes") or {}
    return out


def latency_goal(lat: dict[str, Any], acc: dict[str, Any], cap: dict[str, Any] | None = None) -> Goal:
    name = (
        f"End of speech -> final on MQTT, minus the hangover: <= {LATENCY_RATIO}x the baseline decode time, "
        f"at WER <= baseline + {WER_MARGIN_POINTS} point"
    )
    if not lat:
        return Goal(name, "not measured", None, "")
    parts, met, notes = [], True, []
    base_wer = acc.get("baseline_wer")
    for mode, s in lat.items():
        r = s["ratio"]
        w = acc.get("modes", {}).get(mode, {})
        dw = w.get("minus_baseline_points")
        parts.append(
            f"{mode}: {f(r['p50'])}x median, {f(r['p90'])}x p90; "
            f"WER {f(100 * w['wer'], '.1f', '%') if w else 'n/a'}"
            + (f" ({dw:+.1f} pt)" if dw is not None else "")
        )
        ok = r["p50"] is not None and r["p50"] <= LATENCY_RATIO and (dw is None or dw <= WER_MARGIN_POINTS)
        met = met and ok
        if not ok:
            notes.append(_latency_reason(mode, s, one_stream_decodes(cap)))
    if base_wer is not None:
        parts.append(f"baseline WER {100 * base_wer:.1f}%")
    note = "Judged on the median ratio (subscriber clock). " + " ".join(notes)
    return Goal(name, "; ".join(parts), met, note.strip())


def _latency_reason(mode: str, s: dict[str, Any], decodes: dict[str, Any]) -> str:
    after = s["minus_hangover_s"]["p50"]
    dec, spec, n = s["decode_ms"]["p50"], s["speculative"], s["clips"]
    base = pct((u["baseline_s"] for u in s["utterances"]), 50)
    why = f"{mode}: the final reaches MQTT {f(after)} s after the hangover (median"
    why += f"; the baseline decodes in {f(base)} s)"
    if dec is not None:
        why += f"; the worker logs {f(dec, '.0f')} ms from the gate closing to the decoder's result"
    why += f"; speculative in {spec}/{n} utterances."
    late = [
        u["latency_s"] - u["worker_latency_s"]
        for u in s["utterances"]
        if u["latency_s"] is not None and u["worker_latency_s"] is not None
    ]
    if late:
        why += (
            f" The gate takes speech to end {f(pct(late, 50))} s after its acoustic end (median gap between "
            "the subscriber's latency and the final's latency_ms; webrtcvad calls the clips' faint tails "
            "voiced)."
        )
    final = decodes.get("final", {}).get("mean_s")
    if final is not None:
        why += f" The server's final decodes take {f(final)} s on average at one stream (its /metrics)."
    if spec == 0:
        step = (
            "Next: start the final's decode before the gate closes (at the voice gate's Pause) so it "
            "overlaps the hangover"
            + (" - the /stt protocol needs a way to say so (a `pause` message)" if mode == "ws" else "")
            + "."
        )
    elif dec is not None and dec < 100:
        step = (
            "The decode itself is hidden in the hangover (speculative, a few ms after the gate closes): what "
            "is left is the gate ending late. Next: find the end of speech more precisely than webrtcvad "
            "does, e.g. the trailing frames' energy against the utterance's speech level, or Silero VAD on "
            "the last few hundred ms at Pause, so that the hangover starts at the acoustic end."
        )
    else:
        step = (
            "Next: the speculative decode starts at Pause but is still running when the hangover ends: "
            "make it cheaper (reuse the last partial's encoder pass, or a smaller beam for short "
            "utterances) or start it earlier (a shorter pause before speculating)."
        )
    return f"{why} {step}"


def partial_goal(lat: dict[str, Any], cap: dict[str, Any] | None = None) -> Goal:
    name = (
        f"First partial <= {int(FIRST_PARTIAL_S * 1000)} ms after speech onset, "
        "then one every PARTIAL_INTERVAL_MS"
    )
    if not lat:
        return Goal(name, "not measured", None, "")
    partial = one_stream_decodes(cap).get("partial", {}).get("mean_s")
    keeps_up = (
        ""
        if partial is None
        else f" The engine's partial decodes take {f(partial)} s on average (server, one stream, /metrics)."
    )
    parts, met, notes = [], True, []
    for mode, s in lat.items():
        first, gap, interval = s["first_partial_s"], s["partial_gap_s"], s["partial_interval_ms"] / 1000
        parts.append(
            f"{mode}: first {f(first['p50'])} s median ({f(first['p90'])} s p90), "
            f"gap {f(gap['p50'])} s median (interval {interval:.2f} s)"
        )
        first_ok = first["p50"] is not None and first["p50"] <= FIRST_PARTIAL_S
        gap_ok = gap["p50"] is not None and gap["p50"] <= CADENCE_SLACK * interval
        met = met and first_ok and gap_ok
        if not first_ok:
            notes.append(
                f"{mode}: the first partial comes {f(first['p50'])} s after onset; the worker's own "
                "count from the gate's start (pre-roll included) is "
                f"{f(s['worker_first_partial_s']['p50'])} s."
            )
        if not gap_ok:
            notes.append(
                f"{mode}: partials come every {f(gap['p50'])} s, not every {interval:.2f} s (a partial whose "
                "text did not change is not sent)."
            )
    if not met:
        notes.append(
            keeps_up + " Next: make the first partial one cheap decode of the first ~300 ms the gate "
            "passes, ahead of any other work, and keep each later partial within the interval (decode only "
            "the uncommitted tail, greedy, without the Silero check once speech is known)."
        )
    note = (
        f"Judged on medians; the cadence counts when the median gap is <= {CADENCE_SLACK}x the interval. "
        + " ".join(notes)
    )
    return Goal(name, "; ".join(parts), met, note.strip())


def server_goal(cap: dict[str, Any] | None, peers: dict[str, Any] | None) -> Goal:
    name = (
        f"Server: at least 2x the real-time streams that WhisperLive holds on the same machine and model, "
        f"with partials on; aim for {STREAMS_AIM} on 2 cores"
    )
    if not cap:
        return Goal(name, "not measured", None, "")
    ours = cap["held"]
    wl = (peers or {}).get("whisperlive", {})
    fig = f"ours: {ours} stream(s) held (p90 within 2x of one stream)"
    if "held" not in wl:
        return Goal(
            name,
            fig + "; WhisperLive: not measured in this run (make bench-peers)",
            None,
            f"Aim of {STREAMS_AIM}: {'met' if ours >= STREAMS_AIM else 'not met'}.",
        )
    fig += f"; WhisperLive: {wl['held']}"
    met = ours >= 2 * max(wl["held"], 1)
    note = f"Aim of {STREAMS_AIM}: {'met' if ours >= STREAMS_AIM else 'not met'}."
    if ours < STREAMS_AIM:
        note += " " + _capacity_reason(cap)
    return Goal(name, fig, met, note)


def _capacity_reason(cap: dict[str, Any]) -> str:
    levels = cap["levels"]
    over = next((lv for lv in levels if lv["streams"] > cap["held"]), None)
    if over is None:
        return "The largest count tried held; the next count was not tried in this run."
    why = (
        f"At {over['streams']} streams the p90 end->final latency is {f(over['latency_s']['p90'])} s against "
        f"{f(cap['one_stream_p90_s'])} s for one stream; partials every {f(over['partial_gap_s']['p50'])} s "
        f"and first text after {f(over['first_text_s']['p50'])} s (medians), {over['errors']} failed."
    )
    one, interval = one_stream_decodes(cap), cap.get("partial_interval_ms", DEFAULT_INTERVAL_MS) / 1000
    partial = one.get("partial", {}).get("mean_s")
    final_one = one.get("final", {}).get("mean_s")
    final_over = (over.get("decodes") or {}).get("final", {}).get("mean_s")
    if partial is not None:
        why += (
            f" The server's partial decodes take {f(partial)} s on average at one stream against a "
            f"{interval:.2f} s interval: one stream's partials alone would keep the decoder (both cores) "
            f"busy {partial / interval:.0%} of the time, so with more streams partials thin out and finals "
            f"queue behind each other (final decode {f(final_one)} s at one stream, {f(final_over)} s at "
            f"{over['streams']})."
        )
    if partial is not None and partial < interval / 2:
        return (
            why + " Partials are already cheap and give way to finals; what queues is the finals' own "
            "decodes (one per core at a time). Finals already decode on a 15 s encoder context instead of "
            "30 s (section 6). Batching the encoder passes of finals that end together saves little on a "
            "CPU (section 6 measures it) but is nearly free on a GPU, the Jetson this server is for: that "
            "is the next step there. On a CPU, the next is to decode only the tail of a long final, after "
            "the prefix the partials committed, and a beam of 5 only when the greedy decode is unsure."
        )
    return (
        why + " Next: make a partial much cheaper than the interval (decode only the audio since the last "
        "commit, skip the Silero check once the gate says speech) and shed partials before finals as the "
        "final queue grows; then batch the encoder passes of finals that end together."
    )


def idle_goal(edge: dict[str, Any] | None) -> Goal:
    name = f"Worker idle in ws mode: < {IDLE_CPU_PERCENT:g}% of one core and < {IDLE_RSS_MB:g} MB RSS"
    ws = (edge or {}).get("idle", {}).get("ws")
    if not ws or ws.get("cpu_percent") is None:
        return Goal(name, "not measured", None, "")
    cpu, rss = ws["cpu_percent"], ws["rss_mb"]
    met = cpu < IDLE_CPU_PERCENT and rss is not None and rss < IDLE_RSS_MB
    note = f"Over {ws['seconds']:g} s of silence, 1 s after start."
    if rss is not None and rss >= IDLE_RSS_MB:
        owners = ws.get("memory_by_owner") or []
        heavy = [k for k, _ in owners if k in LOCAL_ENGINE_LIBS]
        note += (
            " Resident memory is over the goal; its largest owners: "
            + ", ".join(f"{k} {v:g} MB" for k, v in owners)
            + "."
        )
        note += (
            f" Next: keep the local engine's libraries ({', '.join(heavy)}) out of a ws worker until its "
            "fallback is needed."
            if heavy
            else " Next: find what the heap holds after start (tracemalloc) and import less at start."
        )
    if cpu >= IDLE_CPU_PERCENT:
        note += (
            " CPU is over the goal: the capture loop wakes every frame. Next: a larger frame or a cheaper "
            "gate on silence."
        )
    return Goal(name, f"{f(cpu)}% CPU, {f(rss, '.1f')} MB RSS", met, note)


def evaluate(bench: dict[str, Any] | None, peers: dict[str, Any] | None) -> list[Goal]:
    b = bench or {}
    p = peers or {}
    # the server goal compares figures of one run: ours as measured in the peers run when there is one
    cap = p.get("capacity") if p.get("peers") else b.get("capacity")
    return [
        latency_goal(b.get("latency", {}), b.get("accuracy", {}), b.get("capacity")),
        partial_goal(b.get("latency", {}), b.get("capacity")),
        server_goal(cap, p.get("peers")),
        idle_goal(b.get("edge")),
    ]
