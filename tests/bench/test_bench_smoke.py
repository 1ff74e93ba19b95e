"""The benchmark harness, run small so it cannot rot: one clip, one stream, 2 s of silence, every
measurement's code path with the real worker, server, broker and model. Figures are checked for being
present and finite, never for their values (those are the benchmark's to report, not a test's to assert)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from bench import charts, report, run
from bench.peers import PEERS

pytestmark = pytest.mark.slow


def finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench")
    assert run.main(["--smoke", "--out", str(out)]) == 0
    return out, json.loads((out / "results-bench.json").read_text())


def test_smoke_run_measures_every_figure(smoke: tuple[Path, dict[str, Any]]) -> None:
    """Latency, accuracy, capacity and edge each produce their figures, beside a baseline of the same run."""
    _, r = smoke
    assert all(finite(v) for v in r["baseline"]["decode_s"].values())
    for mode in ("local", "ws"):
        lat = r["latency"][mode]
        assert lat["missed"] == 0, lat
        for key in ("latency_s", "worker_latency_s", "ratio", "first_partial_s"):
            assert finite(lat[key]["p50"]), (mode, key, lat[key])
        assert finite(r["accuracy"]["modes"][mode]["wer"])
        assert finite(r["edge"]["idle"][mode]["cpu_percent"])
        assert finite(r["edge"]["idle"][mode]["rss_mb"])
        assert finite(r["edge"]["transcribing"][mode]["cpu_percent"])
    assert finite(r["accuracy"]["baseline_wer"])
    level = r["capacity"]["levels"][0]
    assert level["errors"] == 0, level["error_samples"]
    assert finite(level["latency_s"]["p50"])
    assert finite(level["first_text_s"]["p50"])
    cost = r["final_cost"]
    for key in ("speedup", "encoder_share", "encoder_batched_per_item_s", "wer_offline", "wer_ours"):
        assert finite(cost[key]), (key, cost)
    # every dialect of the server in the same run: a final and its timing for each
    dialects = r["dialects"]["dialects"]
    assert set(dialects) == {"stt", "handy", "nemo", "hybrid", "socketio", "wyoming"}, dialects.keys()
    for name, d in dialects.items():
        assert d["errors"] == 0, (name, d["error_samples"])
        assert d["with_final"] == d["clips"], name
        assert finite(d["end_to_final_s"]["p50"]), name
        assert finite(d["ratio_to_stt"]), name
    for name in ("handy", "hybrid", "socketio"):
        assert finite(dialects[name]["minus_hangover_s"]["p50"]), name


def test_smoke_run_writes_results_and_plots(smoke: tuple[Path, dict[str, Any]]) -> None:
    """An unpublished run writes RESULTS.md with every section and its plots into its own folder only."""
    out, _ = smoke
    text = (out / "RESULTS.md").read_text()
    for heading in (
        "## Goals",
        "## 1. Latency",
        "## 2. Accuracy",
        "## 3. Server capacity",
        "## 4. Edge cost",
        "## 6. Cost of a final",
        "## 7. Every dialect",
        "## Before/after",
        "cores",
    ):
        assert heading in text
    for png in ("latency.png", "first_partial.png", "capacity.png"):
        assert (out / png).stat().st_size > 1000


def test_peers_section_renders(smoke: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """The peers report (tables, goal against WhisperLive, plot with several servers) renders from figures
    shaped like a peers run's; the smoke capacity result stands in for each peer."""
    _, r = smoke
    fake = {
        "meta": r["meta"],
        "capacity": r["capacity"],
        "peers": {p.name: {**r["capacity"], "versions": {"x": "1"}} for p in PEERS},
    }
    made = charts.draw(None, fake, tmp_path)
    text = report.render(
        None, fake, [report.key_figures("peers", fake)], {k: v.name for k, v in made.items()}
    )
    assert "## 5. Peers" in text
    assert "WhisperLive: 1" in text
    assert (tmp_path / "capacity.png").stat().st_size > 1000


@pytest.mark.skipif(
    not all((p.venv / ".bench-installed").is_file() for p in PEERS),
    reason="the peers' venvs are made by `make bench-peers` (minutes of pip); not on a fresh machine",
)
def test_peers_smoke(tmp_path: Path) -> None:
    """With the peers installed, one stream of one clip through each of them and our server."""
    assert run.main(["--smoke", "--peers", "--out", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "results-peers.json").read_text())
    for name, cap in r["peers"].items():
        assert "levels" in cap, (name, cap)
        assert finite(cap["levels"][0]["latency_s"]["p50"]), (name, cap["levels"][0])
