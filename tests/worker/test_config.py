"""Configuration that cannot work stops the worker at once with exit status 78 (EX_CONFIG, so systemd's
RestartPreventExitStatus=78 does not restart-loop on a typo) and one line on stderr naming the
variable: no traceback, nothing else but structured log lines."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from harness.procs import free_port
from tests.worker import helpers as h

CASES = {
    "backend": ({"STT_BACKEND": "carrier-pigeon"}, "STT_BACKEND"),
    "aggressiveness": ({"VAD_AGGRESSIVENESS": "7"}, "VAD_AGGRESSIVENESS"),
    "frame": ({"VAD_FRAME_MS": "25"}, "VAD_FRAME_MS"),
    "final-context": ({"FINAL_CONTEXT_S": "5"}, "FINAL_CONTEXT_S"),
    "port": ({"MQTT_PORT": "abc"}, "MQTT_PORT"),
    # a language the embedded English-only model cannot do: found when the model is loaded
    "language": ({"WHISPER_LANG": "de"}, "WHISPER_LANG"),
    "task": ({"WHISPER_TASK": "summarise"}, "WHISPER_TASK"),
    "translate-on-en": ({"WHISPER_TASK": "translate"}, "WHISPER_TASK"),
    "wyoming-uri": ({"STT_BACKEND": "wyoming", "WYOMING_URI": "http://box:10300"}, "WYOMING_URI"),
    "wav": ({"AUDIO_SOURCE": "/nonexistent.wav"}, "AUDIO_SOURCE"),
    "device": ({"AUDIO_SOURCE": "mic", "AUDIO_DEVICE": "no-such-mic"}, "AUDIO_DEVICE"),
    "model-name": ({"WHISPER_MODEL": "not-a-cached-model", "HF_HUB_OFFLINE": "1"}, "WHISPER_MODEL"),
    # a real model name, but not in the (empty) cache, and the hub may not be asked
    "model-offline": ({"WHISPER_MODEL": "small.en", "HF_HUB_OFFLINE": "1", "HF_HOME": "{tmp}"},
                      "WHISPER_MODEL"),
}


def run_worker(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([h.WORKER, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)


@pytest.mark.parametrize("case", CASES)
def test_bad_configuration_exits_78_with_one_line_naming_the_variable(case: str, tmp_path: Path):
    """Each impossible setting, alone in an otherwise good configuration (a broker port nobody listens
    on is fine: it is retried, not fatal): exit 78 within seconds, exactly one line on stderr, of the
    form "stt-worker: configuration error: VARIABLE: ...", no traceback anywhere, and stdout holds
    nothing but JSON log lines."""
    bad, variable = CASES[case]
    env = {**h.env_without("PYTHONPATH"),
           **h.worker_env(free_port(), "-", **{k: v.format(tmp=tmp_path) for k, v in bad.items()})}
    t0 = time.monotonic()
    r = run_worker(env)
    took = time.monotonic() - t0
    assert r.returncode == 78, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert took < 20, f"took {took:.1f} s to refuse the configuration"
    assert "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert re.match(rf"^stt-worker: configuration error: {variable}: \S", lines[0]), lines[0]
    for line in r.stdout.splitlines():
        if line.strip():
            assert isinstance(json.loads(line), dict), line


def test_an_env_file_that_does_not_exist_is_a_configuration_error(tmp_path: Path):
    """--env-file naming a missing file: exit 78, one line saying which file."""
    env = {**h.env_without("PYTHONPATH"), "AUDIO_SOURCE": "-"}
    r = run_worker(env, "--env-file", str(tmp_path / "nope.env"))
    assert r.returncode == 78
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert "nope.env" in r.stderr, r.stderr


def test_a_bad_value_in_the_env_file_is_named_too(tmp_path: Path):
    """A variable read from --env-file is validated like the environment: VAD_FRAME_MS=25 there exits 78
    naming VAD_FRAME_MS."""
    env_file = tmp_path / "worker.env"
    env_file.write_text("AUDIO_SOURCE=-\nVAD_FRAME_MS=25\n")
    env = {k: v for k, v in h.env_without("PYTHONPATH", "VAD_FRAME_MS", "AUDIO_SOURCE").items()}
    r = run_worker(env, "--env-file", str(env_file))
    assert r.returncode == 78, r.stderr
    assert r.stderr.startswith("stt-worker: configuration error: VAD_FRAME_MS:"), r.stderr


def test_list_devices_prints_the_input_devices_and_exits_0():
    """`stt-worker --list-devices` needs no configuration (a bad one is not even read) and prints one line
    per input device ("index  name  (channels, rate)", the default marked *) or "(no input devices)"."""
    r = run_worker({**h.env_without("PYTHONPATH"), "STT_BACKEND": "carrier-pigeon"}, "--list-devices")
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if line.strip()]
    assert lines, "printed nothing"
    if lines != ["(no input devices)"]:
        for line in lines:
            assert re.match(r"^[ *]\s*\d+\s+.+\(\d+ ch, \d+ Hz\)$", line), line
