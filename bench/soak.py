"""``python -m bench.soak [--seconds N] [--seed N]`` (``make soak``; SOAK_S, default 3600): nothing grows,
nothing said is lost, for an hour of restarts.

The real parts, as a home runs them: a persistent Mosquitto (sessions and queued QoS 1 messages kept over
its restarts, as a packaged one keeps them), one stt-server, one stt-worker with STT_BACKEND=ws and its
default failover to the local model, its state directory (finals wait there for the broker). Recordings
from the speech set go into the worker's stdin (AUDIO_SOURCE=-) in real time, with silences between them;
broker and server are restarted at moments drawn from a seeded RNG (the server alternately SIGTERMed and
SIGKILLed), the first of each inside the warm-up, so the fallback model and the reconnection paths are
loaded before growth is judged. The worker unloads its fallback FALLBACK_KEEP_S after each outage
(SOAK_FALLBACK_KEEP_S, 60 s here against the default 300, so that an hour holds a dozen load and unload
cycles). A subscriber with a persistent session (clean_session=False, QoS 1)
records every final. Every SOAK_SAMPLE_S (30 s) the worker's and the server's RSS, open descriptors and
threads are sampled (psutil), with the worker's queue (its retained diagnostics topic), the server's
/metrics gauges and the finals made and delivered so far.

Exit 1 when a bound is broken (``judge``): the worker's RSS growing over the last 3/4 of the run by more
than max(20 MB, 10 %), judged apart with its fallback unloaded (at rest) and loaded, since the two differ by
the model and its buffers (tens of MB) and a sample falls in either; descriptors or threads rising steadily;
any final the worker made that never arrived; any spoken utterance without a final; finals out of order; the
worker's queue dropping anything; the worker dying. Writes bench/results/soak.json and the "Soak" section of
bench/RESULTS.md either way.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from harness import speech
from harness.pacing import paced
from harness.procs import Mosquitto, Proc, start_server
from harness.stt_client import pcm_frames, ws_url
from tests.worker import helpers as h

from . import meta, soak_report

BENCH = Path(__file__).resolve().parent
RESULTS_JSON = BENCH / "results" / "soak.json"
RESULTS_MD = BENCH / "RESULTS.md"

SITE = "soak"
TOPIC = f"{h.BASE}/{SITE}"
RATE = 16_000
FRAME_MS = 20
SILENCE_FRAME = bytes(RATE * FRAME_MS // 1000 * 2)

# ---- the bounds --------------------------------------------------------------------------------------------
WARMUP_FRACTION = 0.25  # growth is judged over the last 3/4 of the run
RSS_BOUND_MB = 20.0
RSS_BOUND_FRACTION = 0.10  # of the RSS at the start of the judged window; the larger of the two is the bound
# descriptors and threads: rising steadily = every sample of the judged window's last third above every
# sample of its first third, by more than this (a reconnection in flight holds a socket and a thread or two)
FD_SLACK = 2
THREAD_SLACK = 2
# the worker's fallback unloaded this long after an outage (its FALLBACK_KEEP_S; the default is 300)
FALLBACK_KEEP_S = float(os.environ.get("SOAK_FALLBACK_KEEP_S", "60"))
# a sample this soon after the fallback was loaded or unloaded is in neither state (the load's and the
# unload's own allocations, the trim) and is judged in neither series
SETTLE_S = 10.0
# a series with fewer samples than this in the judged window cannot show growth: the run fails instead
MIN_SERIES = 6
# a server life shorter than this is not judged for growth (its restarts reset it)
SERVER_LIFE_MIN_S = 240.0
# the time after a final's voiced end within which the final must match a spoken recording (the gate's
# preroll and hangover blur the edges by well under this)
MATCH_SLACK_S = 1.0
# after the last utterance: paho backs off up to 30 s between attempts while the broker is away
DRAIN_S = 150.0


def log(msg: str) -> None:
    print(f"soak: {msg}", flush=True)


def wall(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


# ---- what happens when -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Restart:
    at_s: float  # seconds after the first utterance
    kind: str  # broker | server
    down_s: float
    signal: str = "term"  # the server's: term | kill
    # the server's first: kept down until the worker has decoded an utterance with its local fallback, so
    # the fallback's model and decode buffers are in memory before growth is judged
    until_fallback: bool = False


def schedule(rng: random.Random, seconds: float) -> list[Restart]:
    """Each kind a few times per 10 minutes; the first of each inside the warm-up. Everything is drawn here,
    up front, so a seed gives the same run however slow the machine is."""
    out: list[Restart] = []
    warmup = seconds * WARMUP_FRACTION
    for kind, gap in (("server", (120.0, 480.0)), ("broker", (90.0, 240.0))):
        t = rng.uniform(0.2, 0.6) * warmup + (0.0 if kind == "server" else 0.3 * warmup)
        first = True
        while t < seconds - 20:
            if kind == "server":
                out.append(Restart(t, kind, round(rng.uniform(0.5, 8.0), 1), rng.choice(["term", "kill"]),
                                   until_fallback=first))
            else:
                out.append(Restart(t, kind, round(rng.uniform(1.0, 20.0), 1)))
            t += rng.uniform(*gap)
            first = False
    return sorted(out, key=lambda r: r.at_s)


# ---- the voice -----------------------------------------------------------------------------------------


@dataclass
class Spoken:
    clip: str
    start: float  # wall time of its first frame written
    end: float = 0.0  # of its last


class Speaker(threading.Thread):
    """Recordings in real time on the worker's stdin, silences of 2.5-8 s between them and now and then one
    of 15-40 s, as a room is quiet most of the time. ``finish`` ends it after the utterance under way."""

    def __init__(self, worker: Proc, rng: random.Random) -> None:
        super().__init__(daemon=True, name="speaker")
        self.worker = worker
        self.rng = rng
        self.finish = threading.Event()
        self.spoken: list[Spoken] = []
        self.error: str | None = None
        self._lock = threading.Lock()

    def _frames(self) -> Iterator[tuple[bytes, str | None]]:
        clips = sorted(speech.refs())
        yield from ((SILENCE_FRAME, None) for _ in range(1000 // FRAME_MS))
        while True:
            self.rng.shuffle(clips)
            for clip in clips:
                if self.finish.is_set():
                    return
                frames = pcm_frames(speech.clip(clip), RATE, FRAME_MS)
                for i, frame in enumerate(frames):
                    yield frame, ("start:" if i == 0 else "end:" if i == len(frames) - 1 else "") + clip
                quiet = self.rng.uniform(15, 40) if self.rng.random() < 0.1 else self.rng.uniform(2.5, 8)
                yield from ((SILENCE_FRAME, None) for _ in range(int(quiet * 1000 / FRAME_MS)))

    def run(self) -> None:
        stdin = self.worker.p.stdin
        assert stdin is not None
        try:
            for frame, mark in paced(self._frames(), FRAME_MS / 1000):
                stdin.write(frame)
                stdin.flush()
                if mark and mark.startswith("start:"):
                    with self._lock:
                        self.spoken.append(Spoken(mark[6:], time.time()))
                elif mark and mark.startswith("end:"):
                    with self._lock:
                        self.spoken[-1].end = time.time()
        except (BrokenPipeError, ValueError) as exc:
            self.error = f"the worker's stdin closed: {exc!r}"

    def utterances(self) -> list[Spoken]:
        with self._lock:
            return [s for s in self.spoken if s.end]


# ---- figures -------------------------------------------------------------------------------------------


@dataclass
class Sample:
    t: float  # seconds since the first utterance
    worker: dict[str, int] | None
    server: dict[str, int] | None  # with its pid: a restart is a new life
    server_metrics: dict[str, float]
    diagnostics: dict[str, Any] | None  # the worker's last retained queue diagnostics
    spoken: int
    made: int
    delivered: int
    # the worker's local fallback: loaded (its `local_models` log lines outnumber `fallback_released`),
    # and whether that state has held for SETTLE_S
    local_loaded: bool = False
    settled: bool = True


def proc_figures(pid: int) -> dict[str, int] | None:
    try:
        p = psutil.Process(pid)
        with p.oneshot():
            return {"pid": pid, "rss": p.memory_info().rss, "fds": p.num_fds(), "threads": p.num_threads()}
    except psutil.Error:
        return None


def server_metrics(port: int) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("stt_active_sessions", "stt_active_segments"):
            out[name] = float(value)
    return out


@dataclass
class Run:
    """Everything the run saw, in the order it saw it."""

    seconds: float
    seed: int
    restarts_done: list[dict[str, Any]] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    finals: list[dict[str, Any]] = field(default_factory=list)  # every message on transcript/final, in order
    errors: list[dict[str, Any]] = field(default_factory=list)
    made: list[dict[str, Any]] = field(default_factory=list)  # the worker's `utterance` log lines
    spoken: list[Spoken] = field(default_factory=list)
    drain_s: float = 0.0
    worker_exit: int | None = None
    notes: list[str] = field(default_factory=list)
    fallback_loads: int = 0  # the worker's `local_models` log lines
    fallback_releases: int = 0  # its `fallback_released` ones


class Listener:
    """The persistent subscriber (the tests' Collector), read by topic."""

    def __init__(self, port: int, seed: int) -> None:
        self.col = h.Collector(port, [f"{TOPIC}/transcript/final", f"{TOPIC}/error", f"{TOPIC}/diagnostics"],
                               client_id=f"soak-{seed}-{time.time_ns()}", persistent=True, timeout=30)

    def on(self, suffix: str) -> list[Any]:
        return [m.json() for m in list(self.col.messages) if m.topic == TOPIC + suffix]

    def close(self) -> None:
        self.col.close()


class Soak:
    def __init__(self, seconds: float, seed: int, sample_s: float) -> None:
        self.rng = random.Random(seed)
        self.plan = schedule(self.rng, seconds)
        self.run = Run(seconds, seed)
        self.sample_s = sample_s
        self.state_dir = Path(tempfile.mkdtemp(prefix="stt-soak-state-"))
        self.broker = Mosquitto(persistent=True)
        self.server, self.port = start_server()
        self.listener = Listener(self.broker.port, seed)
        env = h.worker_env(self.broker.port, "-", STT_BACKEND="ws", WS_URL=ws_url(self.port), SITE_ID=SITE,
                           STATE_DIRECTORY=str(self.state_dir))
        # the worker's own defaults otherwise (STT_FALLBACK=local, WS_FINAL_TIMEOUT_S, RECONNECT_MAX_S, ...)
        for name in ("STT_FALLBACK", "AUDIO_REALTIME"):
            env.pop(name, None)
        env["FALLBACK_KEEP_S"] = f"{FALLBACK_KEEP_S:g}"
        self.worker = h.start_worker(env, stdin=subprocess.PIPE)
        self.speaker = Speaker(self.worker, self.rng)
        self.t0 = 0.0

    # ---- the run -----------------------------------------------------------------------------------

    def go(self) -> Run:
        h.wait_log(self.worker, "worker_started", 120)
        h.wait_log(self.worker, "server_connected", 60)
        log(f"{self.run.seconds:.0f} s, seed {self.run.seed}: {len(self.plan)} restarts planned "
            f"({sum(r.kind == 'server' for r in self.plan)} of the server)")
        self.t0 = time.time()
        self.speaker.start()
        todo = list(self.plan)
        next_sample = 0.0
        while (now := time.time() - self.t0) < self.run.seconds:
            if not self.worker.alive():
                self.run.notes.append(f"the worker exited ({self.worker.p.returncode}) at {now:.0f} s")
                break
            if now >= next_sample:
                self.sample()
                next_sample = max(next_sample + self.sample_s, now + self.sample_s / 2)
            if todo and now >= todo[0].at_s:
                self.restart(todo.pop(0))
                continue
            time.sleep(0.5)
        self.speaker.finish.set()
        self.speaker.join(90)
        self.drain()
        self.sample()
        self.stop()
        return self.run

    def restart(self, r: Restart) -> None:
        t = time.time() - self.t0
        log(f"{t:.0f} s: {r.kind} {'SIG' + r.signal.upper() if r.kind == 'server' else 'stopped'}, "
            f"down {r.down_s} s{' and until a final from the fallback' if r.until_fallback else ''}")
        if r.kind == "broker":
            self.broker.stop()
            time.sleep(r.down_s)
            self.broker.start()
        else:
            if r.signal == "kill":
                self.server.signal(signal.SIGKILL)
                self.server.wait(10)
            else:
                self.server.stop(20)
            time.sleep(r.down_s)
            if r.until_fallback:
                before = sum(bool(e.get("fallback")) for e in h.events(self.worker, "utterance"))
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and self.worker.alive() and before == sum(
                        bool(e.get("fallback")) for e in h.events(self.worker, "utterance")):
                    time.sleep(0.5)
            self.server, _ = start_server(port=self.port)
        self.run.restarts_done.append({**asdict(r), "done_at_s": round(t, 1),
                                       "took_s": round(time.time() - self.t0 - t, 1)})

    def sample(self) -> None:
        made = h.events(self.worker, "utterance")
        delivered = {f["utterance_id"] for f in self.listener.on("/transcript/final")}
        diagnostics = self.listener.on("/diagnostics")
        loads, releases = h.events(self.worker, "local_models"), h.events(self.worker, "fallback_released")
        changes = [wall(e["timestamp"]) for e in loads + releases]
        s = Sample(round(time.time() - self.t0, 1), proc_figures(self.worker.p.pid),
                   proc_figures(self.server.p.pid) if self.server.alive() else None,
                   server_metrics(self.port), diagnostics[-1] if diagnostics else None,
                   len(self.speaker.utterances()), len(made), len(delivered),
                   local_loaded=len(loads) > len(releases),
                   settled=not changes or time.time() - max(changes) >= SETTLE_S)
        self.run.samples.append(s)
        w = s.worker or {}
        log(f"{s.t:.0f} s: worker {w.get('rss', 0) / 2**20:.0f} MB "
            f"(fallback {'loaded' if s.local_loaded else 'unloaded'}{'' if s.settled else ', settling'}), "
            f"{w.get('fds')} fds, {w.get('threads')} threads; spoken {s.spoken}, made {s.made}, "
            f"delivered {s.delivered}")

    def drain(self) -> None:
        """Until every final made has arrived and every utterance spoken has one, or DRAIN_S."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < DRAIN_S:
            made = {e["utterance_id"] for e in h.events(self.worker, "utterance")}
            delivered = {f["utterance_id"] for f in self.listener.on("/transcript/final")}
            if made <= delivered and not uncovered(self.speaker.utterances(), self.listener.on(
                    "/transcript/final")) and self.worker.alive():
                break
            time.sleep(1)
        self.run.drain_s = time.monotonic() - t0

    def stop(self) -> None:
        self.run.spoken = self.speaker.utterances()
        if self.speaker.error:
            self.run.notes.append(self.speaker.error)
        try:
            if self.worker.p.stdin is not None:
                self.worker.p.stdin.close()  # end of input: the worker finishes and exits 0
            self.run.worker_exit = self.worker.wait(30)
        except Exception as exc:
            self.run.notes.append(f"the worker did not exit at the end of its input: {exc!r}")
        time.sleep(1)
        self.run.made = h.events(self.worker, "utterance")
        self.run.fallback_loads = len(h.events(self.worker, "local_models"))
        self.run.fallback_releases = len(h.events(self.worker, "fallback_released"))
        self.run.finals = self.listener.on("/transcript/final")
        self.run.errors = self.listener.on("/error")
        self.close()

    def close(self) -> None:
        self.worker.stop()
        self.listener.close()
        self.server.stop()
        self.broker.stop()


# ---- judging ---------------------------------------------------------------------------------------------


def uncovered(spoken: list[Spoken], finals: list[dict[str, Any]]) -> list[Spoken]:
    """The utterances spoken that no final's span (started_at..ended_at) overlaps."""
    spans = [(wall(f["started_at"]), wall(f["ended_at"])) for f in finals]
    return [s for s in spoken
            if not any(a - MATCH_SLACK_S <= s.end and s.start <= b + MATCH_SLACK_S for a, b in spans)]


def series(samples: list[dict[str, int]], key: str, scale: float = 1.0) -> list[float]:
    return [x[key] / scale for x in samples]


def growth(points: list[dict[str, int]], *, min_points: int = 6) -> tuple[dict[str, Any], list[str]]:
    """Figures of one process over its judged samples, and the bounds it broke. RSS growth is the median
    of the last third against the median of the first third: a sample taken mid-decode (tens of MB for a
    moment) moves neither, a step that stays moves both thirds' medians apart."""
    failures: list[str] = []
    rss, fds, thr = series(points, "rss", 2**20), series(points, "fds"), series(points, "threads")
    out: dict[str, Any] = {"samples": len(points)}
    for name, xs in (("rss_mb", rss), ("fds", fds), ("threads", thr)):
        out[name] = {"start": xs[0] if xs else None, "end": xs[-1] if xs else None,
                     "max": max(xs) if xs else None}
    if len(points) < min_points:
        out["rss_mb"]["growth_mb"] = None
        return out, failures
    third = max(2, len(points) // 3)
    start, end = statistics.median(rss[:third]), statistics.median(rss[-third:])
    bound = max(RSS_BOUND_MB, RSS_BOUND_FRACTION * start)
    out["rss_mb"].update(growth_mb=round(end - start, 1), bound_mb=round(bound, 1))
    if end - start > bound:
        failures.append(f"RSS grew {end - start:.1f} MB (bound {bound:.0f} MB)")
    for name, xs, slack in (("open fds", fds, FD_SLACK), ("threads", thr, THREAD_SLACK)):
        if min(xs[-third:]) > max(xs[:third]) + slack:
            failures.append(f"{name} rose steadily: {max(xs[:third]):g} -> {min(xs[-third:]):g}")
    return out, failures


def judge(run: Run) -> dict[str, Any]:
    failures = list(run.notes)
    if run.worker_exit not in (0, None):
        failures.append(f"the worker exited {run.worker_exit}")
    window = run.seconds * WARMUP_FRACTION
    judged = [s for s in run.samples if s.t >= window and s.worker]
    # the whole run's start, end and peak (the model loaded at each failover included), not judged
    worker, _ = growth([s.worker for s in run.samples if s.worker])
    worker["rss_mb"]["growth_mb"] = None
    # growth is judged in each state of the fallback apart: unloaded (at rest) and loaded
    states: dict[str, Any] = {}
    for state, loaded in (("at_rest", False), ("fallback_loaded", True)):
        points = [s.worker for s in judged if s.worker and s.local_loaded is loaded and s.settled]
        states[state], broke = growth(points)
        failures += [f"worker ({state.replace('_', ' ')}): {b}" for b in broke]
        if len(points) < MIN_SERIES:
            failures.append(f"worker ({state.replace('_', ' ')}): {len(points)} samples in the judged "
                            f"window, too few to judge growth (at least {MIN_SERIES})")
    worker["states"] = states
    worker["fallback"] = {"loads": run.fallback_loads, "releases": run.fallback_releases,
                          "keep_s": FALLBACK_KEEP_S}
    lives: dict[int, list[Sample]] = {}
    for s in judged:
        if s.server:
            lives.setdefault(s.server["pid"], []).append(s)
    longest = max(lives.values(), key=lambda xs: xs[-1].t - xs[0].t, default=[])
    life_s = longest[-1].t - longest[0].t if longest else 0.0
    # a life's first minute (or quarter) is its own warm-up: the decode pools' buffers, the first sessions
    settled = [s for s in longest if s.t >= longest[0].t + max(60.0, WARMUP_FRACTION * life_s)]
    server, broke = growth([s.server for s in settled if s.server])
    whole, _ = growth([s.server for s in longest if s.server])
    for name in ("rss_mb", "fds", "threads"):
        server[name].update(start=whole[name]["start"], max=whole[name]["max"])
    if life_s < SERVER_LIFE_MIN_S:
        server["rss_mb"]["growth_mb"] = None
    else:
        failures += [f"server: {b}" for b in broke]
    server.update(life_s=life_s,
                  max_active_sessions=max((s.server_metrics.get("stt_active_sessions", 0)
                                           for s in run.samples), default=None),
                  max_active_segments=max((s.server_metrics.get("stt_active_segments", 0)
                                           for s in run.samples), default=None))

    made_ids = [e["utterance_id"] for e in run.made]
    seen: set[str] = set()
    delivered: list[str] = []
    for f in run.finals:
        if f["utterance_id"] not in seen:
            seen.add(f["utterance_id"])
            delivered.append(f["utterance_id"])
    lost = [u for u in made_ids if u not in seen]
    order = [u for u in delivered if u in set(made_ids)]
    expected = [u for u in made_ids if u in seen]
    out_of_order = sum(a != b for a, b in zip(order, expected, strict=False))
    no_final = uncovered(run.spoken, run.finals)
    if lost:
        failures.append(f"{len(lost)} finals made and never delivered: {lost[:10]}")
    if no_final:
        failures.append(f"{len(no_final)} utterances spoken with no final: "
                        + ", ".join(f"{s.clip} at {s.start:.0f}" for s in no_final[:10]))
    if out_of_order:
        failures.append(f"{out_of_order} finals out of order")
    diags = [s.diagnostics.get("queue", {}) for s in run.samples if s.diagnostics]
    dropped = max((d.get("dropped_total") or 0 for d in diags), default=None)
    if dropped:
        failures.append(f"the worker's queue dropped {dropped} messages")
    by_backend: dict[str, int] = {}
    for e in run.made:
        key = f"{e.get('backend')}{' (fallback)' if e.get('fallback') else ''}"
        by_backend[key] = by_backend.get(key, 0) + 1
    restarts = run.restarts_done
    # away: from the stop to the listening port again (the server's model load included)
    downs = {k: [r["took_s"] for r in restarts if r["kind"] == k] for k in ("broker", "server")}
    return {
        "failures": failures,
        "worker": worker,
        "server": server,
        "finals": {"spoken": len(run.spoken), "made": len(made_ids), "delivered": len(delivered),
                   "lost": len(lost), "uncovered": len(no_final),
                   "duplicates": len(run.finals) - len(delivered), "out_of_order": out_of_order,
                   "errors": len(run.errors), "by_backend": by_backend},
        "queue": {"max_queued_utterances": max((d.get("queued_utterances") or 0 for d in diags),
                                               default=None),
                  "dropped_total": dropped,
                  "max_backlog": max((s.made - s.delivered for s in run.samples), default=0)},
        "restarts": {"broker": len(downs["broker"]), "server": len(downs["server"]),
                     "server_term": sum(r.get("signal") == "term" for r in restarts if r["kind"] == "server"),
                     "server_kill": sum(r.get("signal") == "kill" for r in restarts if r["kind"] == "server"),
                     "broker_down_s": span(downs["broker"]), "server_down_s": span(downs["server"])},
        "bounds": {"text": f"the worker's RSS growth over the last {1 - WARMUP_FRACTION:.0%} of the run at "
                           f"most max({RSS_BOUND_MB:.0f} MB, {RSS_BOUND_FRACTION:.0%}), with its fallback "
                           f"unloaded and loaded judged apart, each on at least {MIN_SERIES} samples taken "
                           f"{SETTLE_S:g} s or more after a load or unload (median of the last third of the "
                           f"samples against the first third's); the server's likewise; descriptors and "
                           f"threads not rising steadily (the window's last third all above its first third "
                           f"by more than {FD_SLACK} and {THREAD_SLACK}); the server judged over its longest "
                           f"life if it lasted {SERVER_LIFE_MIN_S:.0f} s; no final lost, none out of order, "
                           f"no utterance spoken without a final, nothing dropped by the worker's queue; "
                           f"duplicates (QoS 1 redelivery) counted, not failed"},
    }


def span(xs: list[float]) -> str:
    return f"{min(xs):g}-{max(xs):g} s" if xs else "-"


# ---- main ------------------------------------------------------------------------------------------------


def env_seconds() -> float:
    raw = os.environ.get("SOAK_S", "3600")
    try:
        value = float(raw)
    except ValueError:
        value = -1
    if value < 60:
        print(f"SOAK_S={raw!r}: seconds, at least 60", file=sys.stderr)
        raise SystemExit(78)
    return value


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=None, help="how long speech goes on (SOAK_S, 3600)")
    ap.add_argument("--seed", type=int, default=int(os.environ.get("SOAK_SEED", "12")))
    ap.add_argument("--sample-s", type=float, default=float(os.environ.get("SOAK_SAMPLE_S", "30")))
    args = ap.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else env_seconds()
    exe = Path(sys.executable)
    shown = os.path.relpath(exe, meta.ROOT) if exe.is_relative_to(meta.ROOT) else str(exe)
    command = shlex.join([shown, "-m", "bench.soak", "--seconds", f"{seconds:g}", "--seed", str(args.seed)])
    info = meta.collect(command)
    soak = Soak(seconds, args.seed, args.sample_s)
    try:
        run = soak.go()
    except BaseException:
        soak.close()
        raise
    verdict = judge(run)
    info.update(seconds=seconds, seed=args.seed, drain_s=run.drain_s, load_at_end=meta.load_average(),
                make=f"make soak SOAK_S={seconds:g}" if os.environ.get("SOAK_MAKE") else None)
    results = {"meta": info, **verdict, "plan": [asdict(r) for r in soak.plan],
               "restarts_done": run.restarts_done, "samples": [asdict(s) for s in run.samples],
               "spoken": [asdict(s) for s in run.spoken], "made": run.made, "final_messages": run.finals,
               "errors": run.errors}
    RESULTS_JSON.parent.mkdir(exist_ok=True)
    RESULTS_JSON.write_text(json.dumps(results, indent=1, default=str))
    RESULTS_MD.write_text(soak_report.upsert(RESULTS_MD.read_text(), soak_report.section(results)))
    for f in verdict["failures"]:
        log(f"FAILED: {f}")
    log(f"{'passed' if not verdict['failures'] else 'failed'}; wrote {RESULTS_JSON} and {RESULTS_MD}")
    return 1 if verdict["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
