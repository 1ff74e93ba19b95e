"""``python -m bench.idle [--seconds N] [--onsets N]`` (``make bench-idle``; also ``python -m bench.run --only
idle``): the idle worker's CPU and memory against the floor any capture pays, and what a longer capture block
costs in onset latency.

The microphone is a capture device clocked in real time: ALSA's ``file`` plugin over ``null`` whose
``infile`` is a FIFO, written one period at a time by a clock process (``--clock``) at the rate of a real
device. ``null`` alone has no clock (arecord reads 2 s of it in 20 ms), and a FIFO read blocks until the
clock writes, so every consumer wakes once per period, as on an ALSA hardware device. Each consumer has its
own device (its own FIFO and clock) with the period set to the consumer's block, which PortAudio and
arecord then read whole (a shorter write would be padded by the plugin and run the stream fast).

In one run, side by side and over the same window:

* the floors: ``arecord`` reading its device at the block size into /dev/null, and a Python loop with
  ``sounddevice`` (the worker's PortAudio binding) whose callback does nothing;
* the worker (AUDIO_SOURCE=mic on its device, listening to silence) in ws mode against a real stt-server and
  in local mode, at today's block (one VAD frame) and, in ws mode, at ``--block-ms`` (AUDIO_BLOCK_MS);
* the same window again with the machine made busy by this run: one spinning process per core, at the
  same nice level as the rest (the harsh case for a worker's wake-ups).

CPU is psutil's user + system time over the window (``rig.Sampler``, as bench/edge.py measures), in % of
one core, and as a ratio to each floor at the same block size. Then onset latency: a clip is written into
the devices of the two ws workers at a random phase of the period, several times; the latency is the
subscriber's arrival time of ``speech`` ON minus the time the clip's first voiced 10 ms (bench/clips.py)
was spoken, i.e. the wall time that sample entered the device.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from harness.procs import VENV_BIN, Proc

from . import idle_report, meta
from .clips import RATE, load, spread
from .edge import memory_by_owner
from .rig import BASE_TOPIC, Rig, Sampler, Subscriber, wait_event, wall

BENCH = Path(__file__).resolve().parent
RESULTS_JSON = BENCH / "results" / "idle.json"
RESULTS_MD = BENCH / "RESULTS.md"
FRAME_MS = 30  # VAD_FRAME_MS's default: the capture block before AUDIO_BLOCK_MS
DEFAULT_BLOCK_MS = 60  # AUDIO_BLOCK_MS's default
FLOORS = ("arecord", "sounddevice")
ALSA_CONF = Path("/usr/share/alsa/alsa.conf")
SETTLE_S = 5.0  # after the last worker_started: the local model's first allocations, the ws handshake
ONSET_CLIP = "LJ001-0002"
ONSET_GAP_S = 2.5  # after speech OFF, before the next onset
SERVER_IDLE_TIMEOUT_S = 120.0  # stt-server's IDLE_TIMEOUT_S default: an idle session is closed after it
AS_FOUND, BUSY, AFTER_TIMEOUT = "as found", "busy", "as found, after the server's idle timeout"
NOTABLE = {"server_unreachable", "server_error_message", "model_loaded", "failover", "mic_lost"}


def bare_alsa_conf(root: Path) -> Path:
    """The stock alsa.conf without its hook that loads the conf.d folders: ALSA as on a machine without
    libasound2-plugins (pulse, jack, a52, lavrate...). PortAudio's device scan opens every PCM those
    define, and the a52 and lavrate ones bring in libavcodec and its codecs (about 17 MB RSS here)."""
    text = ALSA_CONF.read_text().splitlines()
    conf_d = re.compile(r'^\s*"(/var/lib/alsa|/usr/etc/alsa|/etc/alsa)/conf\.d"\s*$')
    out = root / "alsa-bare.conf"
    out.write_text("\n".join(line for line in text if not conf_d.match(line)) + "\n")
    return out


def log(msg: str) -> None:
    print(f"idle: {msg}", flush=True)


# ---- the clock: a capture device's period, in real time ------------------------------------------


def clock(fifo: Path, block_ms: int) -> None:
    """Write one period of silence into ``fifo`` every ``block_ms``, paced by the monotonic clock; a reader
    that goes away (PortAudio opens a device to probe it) is waited for again. A line ``speak <raw> <voiced>``
    on stdin puts that S16LE file's samples into the stream from the next period on; the line printed back
    gives the wall time its sample number ``voiced`` entered the device (the end of its period, less the
    samples after it)."""
    chunk = RATE * block_ms // 1000
    silence = np.zeros(chunk, dtype=np.int16)
    pending: queue.Queue[tuple[np.ndarray, int]] = queue.Queue()

    def commands() -> None:
        for line in sys.stdin:
            _, path, voiced = line.split()
            pending.put((np.fromfile(path, dtype="<i2"), int(voiced)))

    threading.Thread(target=commands, daemon=True).start()
    speech: np.ndarray | None = None
    at = 0  # next sample of ``speech`` to write
    voiced = 0
    while True:
        fd = os.open(fifo, os.O_WRONLY)
        t0, n = time.monotonic(), 0
        try:
            while True:
                if speech is None and not pending.empty():
                    speech, voiced = pending.get()
                    at = 0
                block = silence
                if speech is not None:
                    block = np.zeros(chunk, dtype=np.int16)
                    part = speech[at:at + chunk]
                    block[: len(part)] = part
                os.write(fd, block.tobytes())
                if speech is not None:
                    if at <= voiced < at + chunk:
                        spoken = time.time() - (at + chunk - voiced) / RATE
                        print(json.dumps({"spoken": spoken}), flush=True)
                    at += chunk
                    if at >= len(speech):
                        speech = None
                n += 1
                ahead = t0 + n * block_ms / 1000 - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        except BrokenPipeError:
            os.close(fd)


class VirtualMic:
    """One consumer's capture device: the FIFO, the ALSA configuration naming it, its clock."""

    def __init__(self, root: Path, name: str, block_ms: int, alsa_conf: Path | None = None) -> None:
        self.name, self.block_ms = name, block_ms
        self.fifo = root / f"{name}.fifo"
        os.mkfifo(self.fifo)
        conf = root / f"{name}.asoundrc"
        conf.write_text(f'pcm.{name} {{\n    type file\n    slave.pcm "null"\n    file "/dev/null"\n'
                        f'    infile "{self.fifo}"\n    format "raw"\n}}\n')
        self.env = {"ALSA_CONFIG_PATH": f"{alsa_conf or ALSA_CONF}:{conf}"}
        self.clock = Proc([sys.executable, "-m", "bench.idle", "--clock", str(self.fifo), str(block_ms)],
                          name=f"clock-{name}", stdin=subprocess.PIPE, env={"PYTHONPATH": str(meta.ROOT)})
        self._spoken = 0

    def speak(self, raw: Path, voiced: int) -> None:
        assert self.clock.p.stdin is not None
        self.clock.p.stdin.write(f"speak {raw} {voiced}\n".encode())
        self.clock.p.stdin.flush()

    def spoken(self, timeout: float) -> float:
        """The wall time of the last ``speak``'s voiced sample, once the clock has written it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = [json.loads(x) for x in self.clock.output().splitlines() if x.startswith("{")]
            if len(lines) > self._spoken:
                self._spoken = len(lines)
                return float(lines[-1]["spoken"])
            time.sleep(0.05)
        raise TimeoutError(f"the clock of {self.name} did not write the speech")

    def stop(self) -> None:
        self.clock.stop()


# ---- the consumers --------------------------------------------------------------------------------


# The least a Python program reading the device through sounddevice pays: a callback per block that does
# nothing. Run with ``-c`` so that it imports sounddevice and nothing else (its RSS is a floor too).
SD_FLOOR = """
import sys, threading
import sounddevice as sd
device, block_ms = sys.argv[1], int(sys.argv[2])
with sd.RawInputStream(device=device, channels=1, samplerate=16000, dtype="int16",
                       blocksize=16 * block_ms, callback=lambda *a: None):
    threading.Event().wait()
"""


def start_arecord(mic: VirtualMic) -> Proc:
    period = RATE * mic.block_ms // 1000
    return Proc(["arecord", "-q", "-D", mic.name, "-f", "S16_LE", "-r", str(RATE), "-c", "1", "-t", "raw",
                 f"--period-size={period}", f"--buffer-size={4 * period}", "/dev/null"],
                env=mic.env, name=f"arecord-{mic.name}")


def start_sd_floor(mic: VirtualMic) -> Proc:
    return Proc([sys.executable, "-c", SD_FLOOR, mic.name, str(mic.block_ms)], env=mic.env,
                name=f"sdfloor-{mic.name}")


def start_mic_worker(rig: Rig, mic: VirtualMic, site: str, backend: str, block_ms: int) -> Proc:
    env = {**mic.env, "AUDIO_SOURCE": "mic", "AUDIO_DEVICE": mic.name, "MQTT_HOST": "127.0.0.1",
           "MQTT_PORT": str(rig.broker_port), "MQTT_BASE_TOPIC": BASE_TOPIC, "SITE_ID": site,
           "STT_BACKEND": backend, "LOG_FORMAT": "json", "LOG_LEVEL": "info",
           "STATE_DIRECTORY": tempfile.mkdtemp(prefix=f"stt-idle-{site}-"), "AUDIO_BLOCK_MS": str(block_ms)}
    if backend == "ws":
        env["WS_URL"] = rig.server_url
    return Proc([str(VENV_BIN / "stt-worker")], env=env, name=f"worker-{site}")


def spinners(n: int) -> list[subprocess.Popen[bytes]]:
    """``n`` processes each spinning on a core, at the nice level of everything else here."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


# ---- the run ----------------------------------------------------------------------------------------


def unique_mb(pid: int) -> float | None:
    """USS: the memory only this process holds (RSS counts the shared libraries' pages too)."""
    try:
        return float(psutil.Process(pid).memory_full_info().uss) / 2**20
    except psutil.Error:
        return None


def notable(worker: Proc, started: float) -> list[dict[str, Any]]:
    """What the worker logged, after it started, that changes what it costs: its server going away, a model
    loaded (a ws worker's local fallback, prewarmed when the server is away), a failover."""
    out = []
    for e in worker.json_events():
        if e.get("event") in NOTABLE and "timestamp" in e and wall(e["timestamp"]) > started:
            out.append({"event": e["event"], "t": wall(e["timestamp"]),
                        "detail": e.get("error") or e.get("code") or e.get("model") or ""})
    return out


def figures(sampler: Sampler, t0: float, t1: float) -> dict[str, Any]:
    rss, peak = sampler.rss_mb(t0, t1)
    return {"cpu_percent": sampler.cpu_percent(t0, t1), "rss_mb": rss, "rss_peak_mb": peak}


def onsets(rig: Rig, mics: dict[str, VirtualMic], sites: dict[str, str], n: int,
           root: Path) -> dict[str, Any]:
    """``n`` onsets into each named device together, each at a random phase of its period; speech ON on
    MQTT minus the time the first voiced sample was spoken."""
    clip = load(ONSET_CLIP)
    rng = random.Random(13)
    sub = Subscriber(rig.broker_port, f"{BASE_TOPIC}/#")
    out: dict[str, list[float]] = {k: [] for k in mics}
    try:
        for i in range(n):
            spoken: dict[str, float] = {}
            for k, mic in mics.items():
                lead = rng.randrange(RATE * mic.block_ms // 1000)  # the phase the speech starts at
                raw = root / f"onset-{k}-{i}.raw"
                np.concatenate([np.zeros(lead, dtype=np.int16), clip.pcm]).astype("<i2").tofile(raw)
                mic.speak(raw, lead + round(clip.onset_s * RATE))
            for k, mic in mics.items():
                spoken[k] = mic.spoken(10)
            for k, site in sites.items():
                topic = f"{BASE_TOPIC}/{site}/speech"
                on = wait_for(lambda topic=topic, t=spoken[k]: [m.t for m in sub.on(topic)
                                                               if m.payload == "ON" and m.t > t - 1], 15)
                out[k].append(on[0] - spoken[k])
            for site in sites.values():
                topic = f"{BASE_TOPIC}/{site}/speech"
                wait_for(lambda topic=topic: sub.on(topic)[-1:] and sub.on(topic)[-1].payload == "OFF", 15)
            time.sleep(ONSET_GAP_S)
    finally:
        sub.close()
    return {k: {"onset_s": v, **spread(v), "mean": float(np.mean(v)) if v else None} for k, v in out.items()}


def wait_for(probe: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.01)
    raise TimeoutError("not seen on MQTT in time")


def run(rig: Rig, seconds: float, n_onsets: int, longer: list[int], busy_procs: int, *,
        after_timeout: bool = True) -> dict[str, Any]:
    """Every consumer at once; the windows as found, busy and (``after_timeout``, which waits for the server's
    idle timeout: over two minutes) as found after it; then the onsets."""
    root = Path(tempfile.mkdtemp(prefix="stt-idle-"))
    blocks = sorted({FRAME_MS, *longer})
    _ = rig.server_port, rig.broker_port
    mics: dict[str, VirtualMic] = {}
    procs: dict[str, Proc] = {}
    workers: dict[str, Proc] = {}
    info: dict[str, dict[str, Any]] = {}
    try:
        bare = bare_alsa_conf(root)
        # (key, what, block, alsa.conf): the floors at every block, the worker at today's block (one VAD
        # frame) and at the longer ones, and both again on ALSA without the plugins' configuration
        specs: list[tuple[str, str, int, Path | None]] = [
            (f"{kind}-{b}", kind, b, None) for b in blocks for kind in FLOORS]
        specs += [(f"worker-{backend}-{b}", backend, b, None)
                  for backend, b in [("ws", FRAME_MS), ("local", FRAME_MS), ("local", DEFAULT_BLOCK_MS),
                                     *(("ws", b) for b in longer)]]
        specs += [(f"{kind}-{DEFAULT_BLOCK_MS}-bare", kind, DEFAULT_BLOCK_MS, bare) for kind in FLOORS]
        specs += [(f"worker-ws-{DEFAULT_BLOCK_MS}-bare", "ws", DEFAULT_BLOCK_MS, bare)]
        for key, what, b, conf in dict.fromkeys(specs):
            if key in procs:
                continue
            mics[key] = mic = VirtualMic(root, f"idlemic{len(mics)}", b, conf)
            info[key] = {"what": what, "block_ms": b, "floor": what in FLOORS, "bare_alsa": conf is not None}
            if what == "arecord":
                procs[key] = start_arecord(mic)
            elif what == "sounddevice":
                procs[key] = start_sd_floor(mic)
            else:
                site = f"bench-idle-{key.removeprefix('worker-')}"
                workers[key] = procs[key] = start_mic_worker(rig, mic, site, what, b)
                info[key].update(site=site, backend=what)
        samplers = {k: Sampler(p.p.pid, interval=0.5) for k, p in procs.items()}
        started = max(wait_event(w, "worker_started", 120) for w in workers.values())
        for w in workers.values():
            wait_event(w, "mic_open", 30)
        time.sleep(max(0.0, started + SETTLE_S - time.time()))
        phases: dict[str, dict[str, Any]] = {}
        # the first two windows end before the server's idle timeout closes the idle ws sessions; the third
        # starts well after it, when whatever the worker does about that close has settled
        plan = [(AS_FOUND, 0.0), (BUSY, 0.0)]
        if after_timeout:
            plan.append((AFTER_TIMEOUT, started + SERVER_IDLE_TIMEOUT_S + 30))
        for phase, not_before in plan:
            time.sleep(max(0.0, not_before - time.time()))
            spin = spinners(busy_procs) if phase == BUSY else []
            try:
                if spin:
                    time.sleep(2.0)
                log(f"{phase}: sampling {seconds:g} s")
                load_before = meta.load_average()
                t0 = time.time()
                time.sleep(seconds)
                t1 = time.time()
                phases[phase] = {"t0": t0, "t1": t1, "load_before": load_before,
                                 "load_after": meta.load_average(),
                                 "figures": {k: figures(s, t0, t1) for k, s in samplers.items()}}
            finally:
                for spinner in spin:
                    spinner.kill()
                    spinner.wait()
        memory = {k: memory_by_owner(w.p.pid) for k, w in workers.items()}
        uss = {k: unique_mb(p.p.pid) for k, p in procs.items()}
        onset_keys = [k for k in workers if info[k]["backend"] == "ws" and not info[k]["bare_alsa"]]
        log(f"onset latency: {n_onsets} onsets into {', '.join(onset_keys)}")
        onset = onsets(rig, {k: mics[k] for k in onset_keys}, {k: info[k]["site"] for k in onset_keys},
                       n_onsets, root)
        for s in samplers.values():
            s.stop()
        alive = {k: p.alive() for k, p in procs.items()}
        events = {k: notable(w, started) for k, w in workers.items()}
    finally:
        for p in procs.values():
            p.stop()
        for m in mics.values():
            m.stop()
    for window in phases.values():
        for k, d in window["figures"].items():
            tail = "-bare" if info[k]["bare_alsa"] else ""
            floors = {kind: window["figures"][f"{kind}-{info[k]['block_ms']}{tail}"]["cpu_percent"]
                      for kind in FLOORS}
            d["ratio_to"] = {kind: (d["cpu_percent"] / v if d["cpu_percent"] is not None and v else None)
                             for kind, v in floors.items()}
    return {"seconds": seconds, "settle_s": SETTLE_S, "busy_procs": busy_procs, "frame_ms": FRAME_MS,
            "longer_blocks_ms": longer, "processes": info, "phases": phases, "memory_by_owner": memory,
            "uss_mb": uss, "events": events, "started": started,
            "server_idle_timeout_s": SERVER_IDLE_TIMEOUT_S, "onset": onset, "onset_clip": ONSET_CLIP,
            "alive_at_end": alive}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--clock"]:
        clock(Path(argv[1]), int(argv[2]))
        return 0
    ap = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=50.0, help="each sampling window (50)")
    ap.add_argument("--onsets", type=int, default=8, help="onsets per block size (8)")
    ap.add_argument("--blocks-ms", default="60,90", help="longer blocks tried (AUDIO_BLOCK_MS)")
    ap.add_argument("--busy", type=int, default=os.cpu_count() or 2, help="spinning processes (one a core)")
    ap.add_argument("--no-publish", action="store_true", help="print the section; leave bench/ as it is")
    args = ap.parse_args(argv)
    exe = Path(sys.executable)
    shown = os.path.relpath(exe, meta.ROOT) if exe.is_relative_to(meta.ROOT) else str(exe)
    command = shlex.join([shown, "-m", "bench.idle", *argv])
    info = meta.collect(command)
    info["make"] = "make bench-idle" if os.environ.get("IDLE_MAKE") else None
    t0 = time.monotonic()
    with Rig() as rig:
        longer = [int(b) for b in args.blocks_ms.split(",") if b.strip()]
        results = {"meta": info, **run(rig, args.seconds, args.onsets, longer, args.busy)}
    info.update(duration_s=time.monotonic() - t0, load_at_end=meta.load_average())
    section = idle_report.section(results)
    if args.no_publish:
        print(section)
        return 0
    RESULTS_JSON.parent.mkdir(exist_ok=True)
    RESULTS_JSON.write_text(json.dumps(results, indent=1))
    RESULTS_MD.write_text(idle_report.upsert(RESULTS_MD.read_text(), section))
    log(f"wrote {RESULTS_JSON} and {RESULTS_MD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
