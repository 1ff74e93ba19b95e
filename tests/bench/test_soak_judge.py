"""The soak's verdict on memory (bench/soak.py ``judge``), on made-up samples: the worker's RSS is judged
with its fallback unloaded and loaded apart, so that the model's tens of MB coming and going are no growth,
while memory that stays behind after each outage is."""

from __future__ import annotations

from bench import soak

MB = 2**20


def run_of(rss_at_rest: list[float], rss_loaded: list[float]) -> soak.Run:
    """A run of 3600 s whose samples alternate between the two states, every sample settled, no finals."""
    run = soak.Run(3600.0, 1)
    states = [(False, r) for r in rss_at_rest] + [(True, r) for r in rss_loaded]
    # interleaved as outages come and go, in time order within each state
    rest, loaded = iter(rss_at_rest), iter(rss_loaded)
    order = [i % 2 == 1 for i in range(len(states))]
    t = 0.0
    for is_loaded in order:
        value = next(loaded if is_loaded else rest)
        worker = {"pid": 1, "rss": int(value * MB), "fds": 14, "threads": 13 if is_loaded else 3}
        run.samples.append(soak.Sample(t, worker, None, {}, None, 0, 0, 0, local_loaded=is_loaded))
        t += 3600.0 / len(states)
    run.worker_exit = 0
    return run


def worker_failures(run: soak.Run) -> list[str]:
    return [f for f in soak.judge(run)["failures"] if f.startswith("worker")]


def test_the_model_coming_and_going_is_not_growth() -> None:
    """Flat in each state, 63 MB at rest and 250 MB loaded, alternating: passes, though a mean of the
    whole window's first and last samples would see 190 MB appear or vanish (at rest counts the libraries
    loaded with the first model, which stay: 63 stands for any level)."""
    assert worker_failures(run_of([63.0] * 20, [250.0] * 20)) == []


def test_memory_left_behind_at_rest_fails() -> None:
    """At rest the worker keeps 3 MB more after every outage: 60 MB over the run, past the bound."""
    at_rest = [63.0 + 3 * i for i in range(20)]
    failures = worker_failures(run_of(at_rest, [250.0] * 20))
    assert len(failures) == 1, failures
    assert failures[0].startswith("worker (at rest): RSS grew"), failures


def test_growth_with_the_fallback_loaded_fails() -> None:
    failures = worker_failures(run_of([63.0] * 20, [250.0 + 4 * i for i in range(20)]))
    assert [f.split(":")[0] for f in failures] == ["worker (fallback loaded)"], failures


def test_a_mid_decode_peak_is_not_growth() -> None:
    """One sample near the end caught a decode (+70 MB for a moment): the thirds' medians ignore it."""
    loaded = [250.0] * 20
    loaded[-2] = 320.0
    assert worker_failures(run_of([63.0] * 20, loaded)) == []


def test_a_state_never_seen_cannot_pass() -> None:
    """A run whose fallback was never unloaded has nothing at rest to judge: it fails, not passes."""
    run = run_of([63.0] * 20, [250.0] * 20)
    for s in run.samples:
        s.local_loaded = True
    failures = worker_failures(run)
    assert any("too few to judge" in f for f in failures), failures
