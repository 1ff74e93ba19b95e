"""The PNG plots of a run (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt

from .goals import FIRST_PARTIAL_S, LATENCY_RATIO


def latency(lat: dict[str, Any], path: Path) -> Path:
    """Per clip: the final after the hangover, per mode, beside the baseline's decode and the goal line."""
    modes = list(lat)
    clips = [u["clip"] for u in lat[modes[0]]["utterances"]]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(clips) + 2), 4))
    width = 0.8 / (len(modes) + 1)
    xs = range(len(clips))
    base = [u["baseline_s"] or 0 for u in lat[modes[0]]["utterances"]]
    ax.bar(
        [x - 0.4 + width / 2 for x in xs],
        base,
        width,
        label="baseline decode (offline, beam 5)",
        color="#999",
    )
    for k, m in enumerate(modes):
        hang = lat[m]["hangover_ms"] / 1000
        ys = [(u["latency_s"] - hang) if u["latency_s"] is not None else 0 for u in lat[m]["utterances"]]
        ax.bar(
            [x - 0.4 + width * (k + 1.5) for x in xs],
            ys,
            width,
            label=f"{m}: end of speech -> final, minus hangover",
        )
    ax.plot(
        [x - 0.4 for x in xs] + [len(clips) - 0.6],
        [LATENCY_RATIO * b for b in base] + [LATENCY_RATIO * base[-1]],
        drawstyle="steps-post",
        color="green",
        lw=1,
        label=f"goal: {LATENCY_RATIO}x baseline",
    )
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xticks(list(xs), clips, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("seconds")
    ax.set_title("Latency per utterance (worker -> MQTT subscriber)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def first_partial(lat: dict[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for m, s in lat.items():
        xs = sorted(u["first_partial_s"] for u in s["utterances"] if u["first_partial_s"] is not None)
        if xs:
            ax.step(xs, [(i + 1) / len(xs) for i in range(len(xs))], where="post", label=m)
    ax.axvline(FIRST_PARTIAL_S, color="green", lw=1, ls="--", label=f"goal {int(FIRST_PARTIAL_S * 1000)} ms")
    ax.set_xlabel("speech onset -> first partial received (s)")
    ax.set_ylabel("share of utterances")
    ax.set_title("First partial")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def capacity(series: dict[str, dict[str, Any]], path: Path) -> Path:
    """End -> final latency against concurrent streams, p50 (solid) and p90 (dashed), a colour per server."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, (name, cap) in enumerate(series.items()):
        lv = [x for x in cap.get("levels", []) if x["latency_s"]["p50"] is not None]
        if not lv:
            continue
        color = f"C{k}"
        xs = [x["streams"] for x in lv]
        ax.plot(xs, [x["latency_s"]["p50"] for x in lv], "o-", color=color, label=f"{name} p50")
        ax.plot(xs, [x["latency_s"]["p90"] for x in lv], "s--", color=color, label=f"{name} p90")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent real-time streams")
    ax.set_ylabel("end of audio -> final (s)")
    ax.set_title("Server capacity, same machine and model")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw(bench: dict[str, Any] | None, peers: dict[str, Any] | None, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}
    lat = (bench or {}).get("latency")
    if lat:
        made["latency"] = latency(lat, out / "latency.png")
        made["first_partial"] = first_partial(lat, out / "first_partial.png")
    series: dict[str, dict[str, Any]] = {}
    if peers and peers.get("capacity"):
        series["stt-bridge"] = peers["capacity"]
        series.update({k: v for k, v in peers.get("peers", {}).items() if "levels" in v})
    elif bench and bench.get("capacity"):
        series["stt-bridge"] = bench["capacity"]
    if series:
        made["capacity"] = capacity(series, out / "capacity.png")
    return made
