"""The systemd units in systemd/: `systemd-analyze verify` accepts them, they say what the apps rely on, their
`systemd-analyze security` exposure is held, and the apps run with the system calls the units deny failing.

The units name /opt/stt-bridge/.venv/bin/stt-* and the user stt, which exist on an installed box
(scripts/install.sh) but not here. So each unit is copied to a temporary directory with ExecStart pointing at
this checkout's venv, and only the messages that depend on the machine rather than on the unit's text are
set aside, each listed below with its reason. Anything else verify says about the unit is a failure, warnings
included: systemd starts a unit with an unknown or misspelt directive anyway ("..., ignoring"), and a
hardening line silently ignored is exactly the mistake this test is for.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from stt_server.settings import ServerSettings
from stt_worker.settings import WorkerSettings

from harness import speech
from harness.procs import Mosquitto, Proc, start_server
from harness.stt_client import stream, ws_url
from tests.worker import helpers as h

ROOT = Path(__file__).resolve().parents[2]
UNITS = {"stt-server": "server", "stt-worker": "worker"}
INSTALLED_BIN = "/opt/stt-bridge/.venv/bin"

# `systemd-analyze security --offline=yes` overall exposure (0 safest, 10 least), systemd 252: both units
# were at 3.5 before issue 12. The server is at 1.8 after it: the system call filter, RemoveIPC=,
# PrivateMounts=, UMask=0077, plus AF_NETLINK allowed back for zeroconf (+0.1); what is left is the GPU's
# (devices, clock, group video), the network it serves, and the JIT's W+X memory. The worker is at 1.5: the
# same, plus ProtectClock= and RestrictRealtime=, which cost it nothing.
EXPOSURE = {"stt-server": 1.8, "stt-worker": 1.5}
# the groups both units deny inside @system-service (the apps were run with them failing: tests below)
DENIED_GROUPS = ("@privileged", "@resources")
# the units' figures, each explained in its unit file
MEMORY_MAX = {"server": "4G", "worker": "1G"}
TASKS_MAX = {"server": "256", "worker": "128"}

# Messages about this machine, not about the unit file: (pattern, why it is not the unit's fault).
ENVIRONMENT_MESSAGES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b(user|group)\b.*\b(not found|does not exist|no such)\b|failed to resolve (user|group)",
                re.I),
     "User=stt / Group=stt / SupplementaryGroups= are created by scripts/install.sh, not on a test machine"),
    (re.compile(r"/etc/stt-bridge/\S+\.env", re.I),
     "EnvironmentFile= is optional ('-' prefix) and the file only exists after install.sh"),
    (re.compile(r"\b(sound|network-online)\.target\b|\bmosquitto\.service\b", re.I),
     "After=/Wants= targets and units that a container or a minimal test machine may not have"),
    (re.compile(r"/var/(lib|cache)/stt-bridge", re.I),
     "StateDirectory=/CacheDirectory= are created by systemd when the unit starts"),
]


def _analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail("systemd-analyze not found: run `make setup` (it installs the Debian package systemd, "
                    "listed in the Makefile's DEB_TEST_PACKAGES)")
    return found


def _directives(text: str) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> values, in order; comments and blank lines dropped, continuation lines joined."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.replace("\\\n", " ").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"directive outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _unit_text(name: str) -> str:
    return (ROOT / "systemd" / f"{name}.service").read_text()


def _local_copy(name: str, tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's venv, which exists here."""
    venv_bin = Path(sys.prefix) / "bin"
    exe = venv_bin / name
    if not exe.is_file():
        pytest.fail(f"{exe} is missing: run `make setup` (it installs the project into the venv)")
    text, count = re.subn(rf"^ExecStart={re.escape(INSTALLED_BIN)}/{re.escape(name)}$",
                          f"ExecStart={exe}", _unit_text(name), flags=re.M)
    assert count == 1, f"{name}.service: expected exactly one ExecStart={INSTALLED_BIN}/{name}"
    target = tmp_path / f"{name}.service"
    target.write_text(text)
    return target


@pytest.mark.parametrize("name", sorted(UNITS))
def test_systemd_analyze_verify_accepts_the_unit(name: str, tmp_path: Path) -> None:
    analyze = _analyze()
    unit = _local_copy(name, tmp_path)
    args = [analyze, "verify", "--man=no"]
    help_text = subprocess.run([analyze, "--help"], check=False, capture_output=True, text=True,
                               timeout=30).stdout
    if "--recursive-errors" in help_text:
        # judge this unit, not the units it is ordered after (systemd >= 250)
        args.append("--recursive-errors=no")
    # judged by its messages: a non-zero exit made only of set-aside messages is the machine's, not the unit's
    proc = subprocess.run([*args, str(unit)], check=False, capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    set_aside = [line for line in lines if any(p.search(line) for p, _ in ENVIRONMENT_MESSAGES)]
    about_unit = [line for line in lines if line not in set_aside and unit.name in line]
    report = "\n".join(lines)
    assert not about_unit, f"systemd-analyze verify on {name}.service:\n" + "\n".join(about_unit) + \
        f"\n\nfull output (exit {proc.returncode}):\n{report}"
    others = [line for line in lines if line not in set_aside]
    assert proc.returncode == 0 or not others, \
        f"systemd-analyze verify exited {proc.returncode} on {name}.service:\n{report}"


@pytest.mark.parametrize(("name", "role"), sorted(UNITS.items()))
def test_unit_has_the_directives_the_apps_rely_on(name: str, role: str) -> None:
    service = _directives(_unit_text(name))["Service"]

    def one(key: str) -> str:
        values = service.get(key, [])
        assert len(values) == 1, f"{name}.service: expected one {key}=, found {values}"
        return values[0]

    # the apps speak sd_notify from their main process: READY=1, WATCHDOG=1 at WATCHDOG_USEC/2, STOPPING=1
    assert one("Type") == "notify"
    assert one("NotifyAccess") == "main"
    assert one("WatchdogSec") == "30"
    assert one("Restart") == "on-failure"
    assert one("RestartSec") == "2"
    # a configuration error exits 78 (EX_CONFIG): restarting would only repeat it
    assert one("RestartPreventExitStatus") == "78"
    assert one("EnvironmentFile") == f"-/etc/stt-bridge/{role}.env"
    assert one("ExecStart") == f"{INSTALLED_BIN}/{name}"
    assert one("User") == "stt"
    assert one("Group") == "stt"
    assert "HF_HOME=/var/cache/stt-bridge" in service.get("Environment", [])
    assert one("StateDirectory") == "stt-bridge"
    assert one("CacheDirectory") == "stt-bridge"
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
                       "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes", "RestrictNamespaces": "yes",
                       "LockPersonality": "yes", "SystemCallArchitectures": "native",
                       # JIT kernels (CTranslate2's oneDNN) need W+X memory: explicitly off
                       "MemoryDenyWriteExecute": "no"}.items():
        assert one(key) == value, f"{name}.service: {key}={one(key)}, expected {value}"
    families = ["AF_UNIX", "AF_INET", "AF_INET6"] + (["AF_NETLINK"] if role == "server" else [])
    # the server's AF_NETLINK: zeroconf's getifaddrs() for the Wyoming mDNS advertisement
    assert one("RestrictAddressFamilies").split() == families
    # systemd's stop timeout leaves room for the app's own bounded shutdown
    settings = ServerSettings if role == "server" else WorkerSettings
    shutdown_default = settings.model_fields["shutdown_timeout_s"].default
    assert float(one("TimeoutStopSec")) == 15
    assert shutdown_default < float(one("TimeoutStopSec"))
    if role == "worker":
        assert one("SupplementaryGroups") == "audio"
        assert one("DevicePolicy") == "closed"
        assert one("DeviceAllow") == "char-alsa rw"
        assert one("ProtectClock") == "yes"
    else:
        # the GPU's device nodes: any device list (ProtectClock= implies one) would hide them
        for key in ("DevicePolicy", "DeviceAllow", "PrivateDevices", "ProtectClock"):
            assert key not in service, f"{name}.service: {key}= hides the GPU (DEVICE=cuda)"


@pytest.mark.parametrize(("name", "role"), sorted(UNITS.items()))
def test_unit_limits_system_calls_and_resources(name: str, role: str) -> None:
    """Issue 12 item 10: the system call filter, memory, tasks and descriptors, each bounded."""
    service = _directives(_unit_text(name))["Service"]
    assert service.get("SystemCallFilter") == ["@system-service", f"~{' '.join(DENIED_GROUPS)}"], \
        service.get("SystemCallFilter")
    assert service.get("SystemCallErrorNumber") == ["EPERM"]
    assert service.get("MemoryMax") == [MEMORY_MAX[role]]
    assert service.get("TasksMax") == [TASKS_MAX[role]]
    # paho-mqtt's select() fails on a descriptor numbered 1024 or more: never raise the soft limit past it
    assert service.get("LimitNOFILE") == ["1024"]
    for key, value in {"RestrictRealtime": "yes", "RemoveIPC": "yes", "PrivateMounts": "yes",
                       "UMask": "0077"}.items():
        assert service.get(key) == [value], f"{name}.service: {key}={service.get(key)}, expected {value}"
    # MAX_SESSIONS' sockets must fit under the descriptor limit with room for everything else
    if role == "server":
        assert ServerSettings.model_fields["max_sessions"].default * 4 < 1024


def _security(name: str) -> tuple[subprocess.CompletedProcess[str], float | None]:
    analyze = _analyze()
    threshold = round(EXPOSURE[name] * 10)  # --threshold counts tenths of the printed level
    proc = subprocess.run([analyze, "security", "--offline=yes", f"--threshold={threshold}", "--no-pager",
                           str(ROOT / "systemd" / f"{name}.service")],
                          check=False, capture_output=True, text=True, timeout=120)
    found = re.search(rf"Overall exposure level for {re.escape(name)}\.service: (\d+\.\d)",
                      proc.stdout + proc.stderr)
    return proc, float(found.group(1)) if found else None


@pytest.mark.parametrize("name", sorted(UNITS))
def test_security_exposure_is_held(name: str) -> None:
    """``systemd-analyze security --offline=yes`` judges the unit file alone (systemd >= 250): its overall
    exposure must stay at or under the figure reached in issue 12 (EXPOSURE). A directive dropped or
    loosened raises it and fails here; a lower figure is welcome (then lower EXPOSURE to hold it)."""
    proc, level = _security(name)
    report = proc.stdout + proc.stderr
    assert level is not None, f"no overall exposure level in systemd-analyze's output:\n{report}"
    assert level <= EXPOSURE[name], f"{name}.service exposure {level} > {EXPOSURE[name]}:\n{report}"
    assert proc.returncode == 0, f"systemd-analyze security exited {proc.returncode}:\n{report}"


# ---- the system call filter, tried on the real apps ------------------------------------------------------


def _denied_syscalls(name: str) -> list[str]:
    """Every call the unit's ``SystemCallFilter=~...`` names, expanded by systemd-analyze, that strace knows
    on this architecture (the groups list other architectures' calls too)."""
    analyze = _analyze()
    (deny,) = [v for v in _directives(_unit_text(name))["Service"]["SystemCallFilter"] if v.startswith("~")]
    calls: set[str] = set()
    todo = deny[1:].split()
    while todo:
        group = todo.pop()
        listing = subprocess.run([analyze, "syscall-filter", "--no-pager", group], check=True,
                                 capture_output=True, text=True, timeout=30).stdout
        for line in listing.splitlines()[1:]:
            item = line.strip()
            if not item or item.startswith("#"):
                continue
            if item.startswith("@"):
                todo.append(item)
            else:
                calls.add(item)
    strace = _strace()
    known = [c for c in sorted(calls)
             if subprocess.run([strace, "-e", f"trace={c}", "true"], check=False, capture_output=True,
                               timeout=30).returncode == 0]
    assert len(known) > 20, f"strace knows too few of {sorted(calls)}"
    return known


def _strace() -> str:
    found = shutil.which("strace")
    if found is None:
        pytest.fail("strace not found: run `make setup` (the Debian package strace, in the Makefile's "
                    "DEB_TEST_PACKAGES)")
    return found


def _under_denial(name: str, log: Path) -> list[str]:
    """A command prefix running a program with the unit's denied calls failing EPERM, as the filter makes
    them (SystemCallErrorNumber=EPERM), every thread included."""
    calls = ",".join(_denied_syscalls(name))
    return [_strace(), "-f", "-qq", "--seccomp-bpf", "-o", str(log), "-e", f"trace={calls}",
            "-e", f"inject={calls}:error=EPERM"]


def test_worker_decodes_with_the_denied_calls_failing(broker: Mosquitto, tmp_path: Path) -> None:
    """The worker's local backend (CTranslate2, onnxruntime, OpenBLAS, webrtcvad) and MQTT, run with every
    call of ``~@privileged @resources`` answered EPERM: both sentences decoded and published, exit 0."""
    wav = h.speech_wav(tmp_path / "two.wav", h.SHORT)
    col = h.Collector(broker.port)
    strace_log = tmp_path / "strace.log"
    w = Proc([*_under_denial("stt-worker", strace_log), h.WORKER], env=h.worker_env(broker.port, wav),
             name="worker")
    try:
        assert h.wait_exit(w, 240) == 0, h.tail(w) + strace_log.read_text()[-2000:]
        col.wait_finals(len(h.SHORT), 10, w)
    finally:
        w.stop()
        col.close()
    assert h.wer_of(h.SHORT, [f["text"] for f in col.finals()]) <= 0.15, col.finals()
    assert not [e for e in w.json_events() if e.get("level") in ("error", "critical")], h.tail(w)


def test_server_decodes_with_the_denied_calls_failing(tmp_path: Path) -> None:
    """The server (model, decode pools, /stt) with every call of ``~@privileged @resources`` answered
    EPERM: a streamed sentence gets its final, and nothing is logged at error."""
    strace_log = tmp_path / "strace.log"
    server, port = start_server(prefix=_under_denial("stt-server", strace_log), start_timeout=240)
    try:
        result = stream(ws_url(port), speech.clip("LJ001-0002"), 16000)
    finally:
        server.stop(20)
    assert result.final is not None, server.output()[-3000:]
    assert speech.wer([(speech.refs()["LJ001-0002"], result.final["text"])]) <= 0.15, result.final
    assert not [e for e in server.json_events() if e.get("level") in ("error", "critical")], \
        server.output()[-3000:]


def test_unit_commands_are_the_project_scripts() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(UNITS) <= set(scripts), f"pyproject [project.scripts] lacks {set(UNITS) - set(scripts)}"
