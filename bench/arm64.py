"""``python -m bench.arm64`` (``make check-arm64``, not part of ``make test``): the worker, installed from a
wheel of this tree, transcribes the demo recording on arm64 under qemu-user.

Steps, each timed: binfmt_misc has qemu-aarch64 registered (mounted and enabled here if it is not); a
Debian arm64 root built with debootstrap (cached in .cache/arm64/<suite>/, so a rerun only reinstalls the
wheel); its Debian packages (python3, python3-venv, mosquitto, libportaudio2); the host's local CAs, so an
egress proxy the host trusts is trusted inside too; the wheel built on the host; in the root's venv
``pip install --only-binary :all: <wheel>[worker]`` from PyPI (every dependency must have an aarch64
wheel; skipped when the wheel's requirements did not change since the last run); the wheel itself
reinstalled; then Debian's arm64 mosquitto on a free port and ``stt-worker`` (STT_BACKEND=local, the
embedded model, AUDIO_REALTIME=0) on demo/audio/demo.wav, both inside the root. A subscriber on the host
(the root shares its network) collects the finals; they are held to demo/audio/demo.tsv as the worker tests
hold theirs (one or two finals an utterance, WER at most 15 %).

One trap (../shared/NOTES.md): with the host's /proc and /sys mounted, /proc/cpuinfo describes the x86 host
and ``import onnxruntime`` (faster-whisper's Silero VAD; onnxruntime 1.32.0) segfaults under qemu (signal
11; without /sys its cpuinfo library only warns), so an arm64-style cpuinfo is bind-mounted over it.
Every mount is undone on the way out, Ctrl-C and SIGTERM included.

Prints one last ``check-arm64: PASS|FAIL`` line with the figures. Once the worker ran, writes
bench/results/arm64.json and the "arm64" section of bench/RESULTS.md, passed or failed; a setup failure
(no binfmt, mirror or PyPI unreachable) is printed only and leaves the published section alone.
Needs root for debootstrap, mount and chroot (sudo is used when not root).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import wave
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from harness import speech
from harness.procs import free_port

from . import arm64_report, meta

REPO = meta.ROOT
BENCH = REPO / "bench"
RESULTS_JSON = BENCH / "results" / "arm64.json"
RESULTS_MD = BENCH / "RESULTS.md"
CACHE = Path(os.environ.get("ARM64_CACHE", REPO / ".cache" / "arm64")).resolve()
# Raspberry Pi OS and Armbian for the Orange Pi are bookworm-based
SUITE = os.environ.get("ARM64_SUITE", "bookworm")
MIRROR = os.environ.get("ARM64_MIRROR", "http://deb.debian.org/debian")
RUN_TIMEOUT_S = float(os.environ.get("ARM64_RUN_TIMEOUT_S", "2400"))
# what the worker needs from Debian on a board (the Makefile's DEB_PACKAGES, less the host's test tools)
ROOT_PACKAGES = ["python3", "python3-venv", "mosquitto", "libportaudio2", "ca-certificates"]
ROOT = CACHE / SUITE
STAMP = ROOT / ".stt-bridge-root.json"
VENV = "/opt/stt-bridge/venv"
WAV = REPO / "demo" / "audio" / "demo.wav"
TSV = REPO / "demo" / "audio" / "demo.tsv"
SITE = "arm64"
BASE = "stt"
MAX_WER = 0.15
SUDO = [] if os.geteuid() == 0 else ["sudo"]
# what a Cortex-A55 board says; cpuinfo (onnxruntime's) parses these fields on arm64
CPUINFO_CORE = ("processor\t: {n}\nBogoMIPS\t: 48.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 "
                "atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\n"
                "CPU architecture: 8\nCPU variant\t: 0x2\nCPU part\t: 0xd05\nCPU revision\t: 0\n\n")


class SetupError(Exception):
    """A step before the worker failed: the machine, the mirror or PyPI, not the project."""


def say(msg: str) -> None:
    print(f"check-arm64: {msg}", flush=True)


def run(cmd: list[str], *, timeout: float | None = None, env: dict[str, str] | None = None,
        what: str | None = None) -> str:
    """Run ``cmd`` (sudo first when not root), its output shown only on failure; SetupError if it fails."""
    full = [*SUDO, *cmd]
    try:
        r = subprocess.run(full, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        raise SetupError(f"{what or cmd[0]}: no answer within {timeout:.0f} s") from exc
    if r.returncode != 0:
        out = (r.stdout + r.stderr).strip()[-3000:]
        raise SetupError(f"{what or shlex.join(cmd)} exited with {r.returncode}:\n{out}")
    return r.stdout


def chroot_env(**extra: str) -> list[str]:
    """``env -i`` with the little a process in the root needs: nothing of the host's environment leaks in."""
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
           "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive",
           # the root's bundle, which has the host's local CAs too (see install_cas)
           "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
           "PIP_DEFAULT_TIMEOUT": "180", **extra}
    return ["env", "-i", *(f"{k}={v}" for k, v in env.items())]


def in_root(*cmd: str, timeout: float | None = None, what: str | None = None, **env: str) -> str:
    return run([*chroot_env(**env), "chroot", str(ROOT), *cmd], timeout=timeout, what=what)


# ---- binfmt_misc -------------------------------------------------------------------------------------------

BINFMT = Path("/proc/sys/fs/binfmt_misc")


def binfmt_entry() -> dict[str, str]:
    entry = BINFMT / "qemu-aarch64"
    if not entry.exists():
        return {}
    lines = entry.read_text().splitlines()
    out = {"state": lines[0].strip()}
    for line in lines[1:]:
        key, _, value = line.partition(" ")
        out[key.rstrip(":")] = value.strip()
    return out


def ensure_binfmt() -> dict[str, str]:
    """qemu-aarch64 registered and enabled; registered here when it is not (binfmt-support's entry)."""
    if not shutil.which("qemu-aarch64-static") or not shutil.which("update-binfmts"):
        raise SetupError("qemu-aarch64-static or update-binfmts missing: run `make check-arm64`, which "
                         "installs qemu-user-static and binfmt-support")
    if not (BINFMT / "register").exists():
        say("binfmt_misc is not mounted; mounting it")
        try:
            run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], what="mount binfmt_misc")
        except SetupError as exc:
            raise SetupError(f"{exc}\nbinfmt_misc cannot be mounted here: a container needs CAP_SYS_ADMIN "
                             "(or a host that registers qemu-aarch64 for it)") from None
    if binfmt_entry().get("state") != "enabled":
        with contextlib.suppress(SetupError):
            run(["update-binfmts", "--import", "qemu-aarch64"], what="update-binfmts --import")
        run(["update-binfmts", "--enable", "qemu-aarch64"], what="update-binfmts --enable qemu-aarch64")
    entry = binfmt_entry()
    if entry.get("state") != "enabled":
        raise SetupError(f"qemu-aarch64 is not enabled in binfmt_misc after registering it: {entry}")
    return entry


# ---- the root ----------------------------------------------------------------------------------------------


def mounts_under(path: Path) -> list[str]:
    """Mount points at or under ``path``, deepest first (the order to unmount them in)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == str(path) or point.startswith(f"{path}/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def unmount_all(path: Path) -> None:
    for point in mounts_under(path):
        r = subprocess.run([*SUDO, "umount", point], capture_output=True, check=False)
        if r.returncode != 0:  # something still has a file open there: detach it now, freed when closed
            subprocess.run([*SUDO, "umount", "-l", point], capture_output=True, check=False)
    if left := mounts_under(path):
        raise SetupError(f"could not unmount {left}")


def build_root() -> bool:
    """The debootstrapped root; False when the cached one was reused."""
    if STAMP.exists():
        return False
    partial = ROOT.with_name(f"{SUITE}.partial")
    unmount_all(partial)  # a debootstrap that was killed leaves its /proc mounted: never rm -rf through it
    if partial.exists():
        run(["rm", "-rf", "--one-file-system", str(partial)])
    CACHE.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    say(f"debootstrap {SUITE} arm64 from {MIRROR} into {partial} (minutes: the second stage runs under qemu)")
    try:
        run(["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={','.join(ROOT_PACKAGES)}",
             SUITE, str(partial), MIRROR], timeout=3600, what="debootstrap")
    finally:
        unmount_all(partial)
    if ROOT.exists():
        unmount_all(ROOT)
        run(["rm", "-rf", "--one-file-system", str(ROOT)])
    partial.rename(ROOT)
    # kept with the root, so a rerun's report still says what building it cost
    write_stamp({"suite": SUITE, "mirror": MIRROR, "built_at": meta.collect("")["date"],
                 "debootstrap_s": round(time.monotonic() - t0)})
    return True


def write_stamp(data: dict[str, Any]) -> None:
    old = json.loads(STAMP.read_text()) if STAMP.exists() else {}
    STAMP.write_text(json.dumps({**old, **data}, indent=1))


def read_stamp() -> dict[str, Any]:
    return json.loads(STAMP.read_text()) if STAMP.exists() else {}


@contextlib.contextmanager
def mounted() -> Iterator[None]:
    """/proc, /sys and /dev inside the root, and the arm64 cpuinfo over /proc/cpuinfo; undone on exit."""
    unmount_all(ROOT)  # what a killed run left behind
    cpuinfo = CACHE / "cpuinfo"
    cpuinfo.write_text("".join(CPUINFO_CORE.format(n=n) for n in range(os.cpu_count() or 1)))
    shutil.copyfile("/etc/resolv.conf", ROOT / "etc" / "resolv.conf")  # pip and apt resolve names in there
    try:
        run(["mount", "-t", "proc", "proc", str(ROOT / "proc")])
        run(["mount", "--bind", str(cpuinfo), str(ROOT / "proc" / "cpuinfo")])
        run(["mount", "--bind", "/sys", str(ROOT / "sys")])
        run(["mount", "--bind", "/dev", str(ROOT / "dev")])
        yield
    finally:
        unmount_all(ROOT)


def ensure_packages() -> None:
    out = subprocess.run([*SUDO, "chroot", str(ROOT), "dpkg-query", "-W", "-f", "${Package} ${Status}\n",
                          *ROOT_PACKAGES], capture_output=True, text=True, check=False).stdout
    have = {line.split()[0] for line in out.splitlines() if line.endswith("install ok installed")}
    if missing := [p for p in ROOT_PACKAGES if p not in have]:
        say(f"installing {' '.join(missing)} in the root")
        in_root("apt-get", "update", "-qq", timeout=1800)
        in_root("apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing, timeout=3600)


def install_cas() -> None:
    """The host's local CAs (an egress proxy's, say) into the root's bundle, when they changed."""
    src = Path("/usr/local/share/ca-certificates")
    dst = ROOT / "usr" / "local" / "share" / "ca-certificates"
    certs = sorted(src.glob("*.crt")) if src.is_dir() else []
    digest = hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in certs)).hexdigest()
    if read_stamp().get("cas") == digest:
        return
    dst.mkdir(parents=True, exist_ok=True)
    for p in certs:
        shutil.copyfile(p, dst / p.name)
    in_root("update-ca-certificates", timeout=900)
    write_stamp({"cas": digest})


# ---- the project -------------------------------------------------------------------------------------------


def build_wheel() -> Path:
    out = CACHE / "wheels"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SetupError(f"building the wheel failed:\n{(r.stdout + r.stderr)[-3000:]}")
    (wheel,) = out.glob("stt_bridge-*.whl")
    return wheel


def requirements(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(name).decode().splitlines()
    # only what `[worker]` pulls in: a new bench or dev dependency needs no pip run under qemu
    return [line for line in lines if line.startswith("Requires-Dist:")
            and ("extra ==" not in line or "extra == 'worker'" in line or 'extra == "worker"' in line)]


def install(wheel: Path) -> tuple[dict[str, float], str]:
    """The venv, the dependencies when the wheel's requirements changed, and the wheel itself."""
    times: dict[str, float] = {}
    inside = f"/opt/stt-bridge/wheels/{wheel.name}"
    (ROOT / "opt" / "stt-bridge" / "wheels").mkdir(parents=True, exist_ok=True)
    for old in (ROOT / "opt" / "stt-bridge" / "wheels").glob("*.whl"):
        old.unlink()
    shutil.copyfile(wheel, ROOT / inside.lstrip("/"))
    spec = f"{inside}[worker]"
    t = time.monotonic()
    fresh = not (ROOT / VENV.lstrip("/") / "bin" / "python").exists()
    if fresh:
        say("creating the venv with Debian's python3")
        in_root("python3", "-m", "venv", VENV, timeout=900)
    reqs = hashlib.sha256("\n".join(requirements(wheel)).encode()).hexdigest()
    if read_stamp().get("requirements") != reqs:
        say(f"pip install --only-binary :all: {spec} from PyPI under qemu (slow: every wheel is unpacked and "
            "byte-compiled emulated)")
        in_root(f"{VENV}/bin/pip", "install", "-q", "--only-binary", ":all:", spec, timeout=5400,
                what="pip install (an error naming a package with no aarch64 wheel is a finding)")
        write_stamp({"requirements": reqs})
        if fresh:  # what a whole install costs, kept for reruns' reports (an update is not that figure)
            write_stamp({"dependencies_at": meta.collect("")["date"],
                         "dependencies_s": round(time.monotonic() - t)})
        times["dependencies (pip, from PyPI)"] = time.monotonic() - t
    else:
        say("dependencies unchanged since the last run: kept")
        times["dependencies (unchanged: kept)"] = time.monotonic() - t
    t = time.monotonic()
    in_root(f"{VENV}/bin/pip", "install", "-q", "--no-deps", "--force-reinstall", inside, timeout=1800)
    times["the wheel reinstalled"] = time.monotonic() - t
    return times, spec.replace(inside, wheel.name)


def platform_wheels() -> list[str]:
    """The installed distributions whose wheel was built for aarch64 (read from the root, not under qemu)."""
    site = next((ROOT / VENV.lstrip("/") / "lib").glob("python3*/site-packages"))
    out = []
    for w in site.glob("*.dist-info/WHEEL"):
        if "aarch64" in w.read_text():
            out.append(w.parent.name.rsplit("-", 1)[0].split("-")[0])
    return sorted(out, key=str.lower)


# ---- the check ---------------------------------------------------------------------------------------------


class Finals:
    """A subscriber on the host (the root shares its network) keeping every final, in arrival order."""

    def __init__(self, port: int) -> None:
        self.texts: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"check-arm64-{os.getpid()}")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{BASE}/{SITE}/transcript/final", qos=1)
        self.client.on_subscribe = lambda c, u, mid, rc, p: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self.ready.wait(30):
            self.close()
            raise SetupError(f"could not subscribe to the root's mosquitto on port {port}")

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.texts.append(json.loads(msg.payload))

    def count(self) -> int:
        with self.lock:
            return len(self.texts)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    import socket

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SetupError(f"the root's mosquitto exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        time.sleep(0.5)
    raise SetupError(f"the root's mosquitto did not listen on port {port} within {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def transcribe() -> dict[str, Any]:
    """Mosquitto and the worker inside the root; the finals, the worker's exit and its model load time."""
    port = free_port()
    conf = ROOT / "tmp" / "check-arm64-mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    shutil.copyfile(WAV, ROOT / "opt" / "stt-bridge" / "demo.wav")
    log_path = CACHE / "worker.log"
    say(f"mosquitto (arm64) on port {port}; stt-worker on demo.wav with the embedded model")
    broker = subprocess.Popen([*SUDO, *chroot_env(), "chroot", str(ROOT), "mosquitto", "-c",
                               "/tmp/check-arm64-mosquitto.conf"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker: subprocess.Popen[bytes] | None = None
    finals: Finals | None = None
    try:
        wait_port(port, broker, 120)
        finals = Finals(port)
        env = chroot_env(AUDIO_SOURCE="/opt/stt-bridge/demo.wav", AUDIO_REALTIME="0", STT_BACKEND="local",
                         WHISPER_MODEL="", HF_HUB_OFFLINE="1", MQTT_HOST="127.0.0.1", MQTT_PORT=str(port),
                         MQTT_BASE_TOPIC=BASE, SITE_ID=SITE, LOG_FORMAT="json", LOG_LEVEL="info",
                         STATE_DIRECTORY="", XDG_STATE_HOME="")
        with open(log_path, "wb") as fh:
            worker = subprocess.Popen([*SUDO, *env, "chroot", str(ROOT), f"{VENV}/bin/stt-worker"],
                                      stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                code: int | None = worker.wait(RUN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                code = None
                stop(worker)
        # the last final may still be on its way through the broker
        deadline = time.monotonic() + 10
        seen = -1
        while time.monotonic() < deadline and seen != finals.count():
            seen = finals.count()
            time.sleep(2)
        got = list(finals.texts)
    finally:
        if worker is not None:
            stop(worker)
        if finals is not None:
            finals.close()
        stop(broker)
    events = []
    for line in log_path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            events.append(json.loads(line))
    loaded: dict[str, Any] = next((e for e in events if e.get("event") == "model_loaded"), {})
    return {"port": port, "exit": code, "finals_full": got, "model_load_s": loaded.get("seconds"),
            "model": loaded.get("model"), "log_tail": log_path.read_text(errors="replace")[-3000:]}


def judge(res: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    refs = [line.split("\t")[3] for line in TSV.read_text().splitlines() if line.strip()]
    texts = [f["text"] for f in res["finals_full"]]
    wer = speech.wer([(" ".join(refs), " ".join(texts))]) if texts else None
    failures = []
    if res["exit"] is None:
        failures.append(f"the worker was still running after {RUN_TIMEOUT_S:.0f} s")
    elif res["exit"] != 0:
        failures.append(f"the worker exited with {res['exit']}")
    if not len(refs) <= len(texts) <= 2 * len(refs):
        failures.append(f"{len(texts)} finals for {len(refs)} utterances")
    if wer is not None and wer > MAX_WER:
        failures.append(f"WER {wer:.1%} > {MAX_WER:.0%}")
    if backends := {f.get("backend") for f in res["finals_full"]} - {"local"}:
        failures.append(f"finals from {sorted(map(str, backends))}, not the local backend")
    with wave.open(str(WAV)) as w:
        audio_s = w.getnframes() / w.getframerate()
    return failures, {"port": res["port"], "exit": res["exit"], "audio_s": audio_s, "refs": refs,
                      "finals": texts, "wer": wer, "max_wer": MAX_WER, "model_load_s": res["model_load_s"],
                      "model": res["model"]}


def main() -> int:
    # SIGTERM (make interrupted, a CI timeout) unwinds like Ctrl-C: the mounts are undone on the way out
    def on_term(*_: object) -> None:
        say("SIGTERM: stopping the worker and mosquitto, then unmounting")
        sys.exit(143)

    signal.signal(signal.SIGTERM, on_term)
    exe = Path(sys.executable)
    shown = os.path.relpath(exe, REPO) if exe.is_relative_to(REPO) else str(exe)
    info = meta.collect(shlex.join([shown, "-m", "bench.arm64"]))
    info["make"] = "make check-arm64" if os.environ.get("ARM64_MAKE") else None
    steps: dict[str, float] = {}
    t_all = time.monotonic()

    def step(name: str, t0: float) -> None:
        steps[name] = time.monotonic() - t0
        say(f"{name}: {steps[name]:.0f} s")

    try:
        t = time.monotonic()
        say("[1/6] qemu-aarch64 in binfmt_misc")
        entry = ensure_binfmt()
        step("binfmt", t)
        t = time.monotonic()
        say(f"[2/6] the Debian {SUITE} arm64 root in {ROOT}")
        built = build_root()
        if "F" not in entry.get("flags", ""):  # the interpreter is looked up inside the root then
            interp = ROOT / entry["interpreter"].lstrip("/")
            interp.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(entry["interpreter"], interp)
            interp.chmod(0o755)
        step("root (debootstrap)" if built else "root (cached)", t)
        with mounted():
            t = time.monotonic()
            say("[3/6] Debian packages and CAs in the root")
            ensure_packages()
            install_cas()
            step("packages", t)
            t = time.monotonic()
            say("[4/6] the wheel, built on the host")
            wheel = build_wheel()
            step("wheel built", t)
            say(f"[5/6] {wheel.name}[worker] into the root's venv")
            times, spec = install(wheel)
            for k, v in times.items():
                steps[k] = v
                say(f"{k}: {v:.0f} s")
            say("[6/6] the worker transcribes demo.wav (emulated: minutes)")
            t = time.monotonic()
            res = transcribe()
            step("worker run (model load included)", t)
    except SetupError as exc:
        say(f"FAIL (setup, nothing published): {exc}")
        return 1
    failures, figures = judge(res)
    python = (ROOT / VENV.lstrip("/") / "pyvenv.cfg").read_text()
    qemu = subprocess.run(["qemu-aarch64-static", "--version"], capture_output=True, text=True,
                          check=False).stdout.splitlines()[0]
    results = {"meta": info, "passed": not failures, "failures": failures, "steps": steps,
               "root": {"suite": SUITE, "reused": not built, "stamp": read_stamp(),
                        "qemu": qemu.removeprefix("qemu-aarch64 "),
                        "python": next((ln.split("=")[1].strip() for ln in python.splitlines()
                                        if ln.startswith("version")), "?")},
               "install": {"spec": spec, "platform_wheels": platform_wheels()}, "run": figures}
    RESULTS_JSON.parent.mkdir(exist_ok=True)
    RESULTS_JSON.write_text(json.dumps(results, indent=1, default=str))
    RESULTS_MD.write_text(arm64_report.upsert(RESULTS_MD.read_text(), arm64_report.section(results)))
    if failures:
        print(res["log_tail"], file=sys.stderr)
    wer = "-" if figures["wer"] is None else f"{figures['wer']:.1%}"
    load = "-" if figures["model_load_s"] is None else f"{figures['model_load_s']:.0f} s"
    say(f"wrote {os.path.relpath(RESULTS_JSON, REPO)} and the arm64 section of bench/RESULTS.md")
    say(f"{'PASS' if not failures else 'FAIL'} in {time.monotonic() - t_all:.0f} s: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in steps.items())
        + f"; model load {load}; WER {wer}; {len(figures['finals'])} finals for {len(figures['refs'])} "
        f"utterances" + ("" if not failures else "; " + "; ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
