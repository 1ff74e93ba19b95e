"""The systemd units in systemd/: `systemd-analyze verify` accepts them, and they say what the apps rely on.

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

ROOT = Path(__file__).resolve().parents[2]
UNITS = {"stt-server": "server", "stt-worker": "worker"}
INSTALLED_BIN = "/opt/stt-bridge/.venv/bin"

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
    assert one("RestrictAddressFamilies").split() == ["AF_UNIX", "AF_INET", "AF_INET6"]
    # systemd's stop timeout leaves room for the app's own bounded shutdown
    settings = ServerSettings if role == "server" else WorkerSettings
    shutdown_default = settings.model_fields["shutdown_timeout_s"].default
    assert float(one("TimeoutStopSec")) == 15
    assert shutdown_default < float(one("TimeoutStopSec"))
    if role == "worker":
        assert one("SupplementaryGroups") == "audio"
        assert one("DevicePolicy") == "closed"
        assert one("DeviceAllow") == "char-alsa rw"


def test_unit_commands_are_the_project_scripts() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(UNITS) <= set(scripts), f"pyproject [project.scripts] lacks {set(UNITS) - set(scripts)}"
