"""The microphone path (AUDIO_SOURCE=mic) through the real PortAudio, on virtual capture devices.

A capture device here is an ALSA ``file`` PCM: ``null`` underneath, its ``infile`` a speech clip
converted by sox to raw S16LE mono at the device's rate. The PCMs are defined in a temporary config
file given to ALSA as ``ALSA_CONFIG_PATH=/usr/share/alsa/alsa.conf:<ours>``: the variable replaces
ALSA's list of top-level files, so the stock alsa.conf (which itself still reads /etc/asound.conf and
~/.asoundrc) comes first and our definitions are added to it.

Such a PCM has no clock and takes every sample rate, where a USB microphone has a clock and often one
rate only; ``mic_shim/sitecustomize.py`` (put on the worker's PYTHONPATH) adds exactly those two
properties at the ``sounddevice`` boundary, and says why. Enumeration, lookup by name, opening, the
callback thread and every sample of audio are PortAudio's and ALSA's.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness import speech
from harness.procs import Mosquitto
from tests.support.notify import NotifyListener
from tests.worker import helpers as h

SHIM = Path(__file__).resolve().parent / "mic_shim"
CLIP = "LJ001-0004"  # "produced the block books, which were the immediate predecessors of the true ..."
DEVICES = {"filemic": 48_000, "filemic44": 44_100}
# silence after the clip, so the device's file does not run out while the test listens
TAIL_S = 60


@pytest.fixture(scope="module")
def alsa_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """ALSA_CONFIG_PATH naming a config with one file-backed capture PCM per rate in DEVICES."""
    # a failure, not a skip: make setup installs sox, and a skip would hide a set-up that does not
    assert shutil.which("sox"), "sox is missing: run make setup"
    d = tmp_path_factory.mktemp("alsa")
    conf = []
    for name, rate in DEVICES.items():
        raw = d / f"{name}.raw"
        subprocess.run(["sox", str(speech.SPEECH_DIR / f"{CLIP}.wav"), "-t", "raw", "-r", str(rate),
                        "-c", "1", "-b", "16", "-e", "signed", str(raw), "pad", "1", str(TAIL_S)], check=True)
        conf.append(f'pcm.{name} {{\n    type file\n    slave.pcm "null"\n    file "/dev/null"\n'
                    f'    infile "{raw}"\n    format "raw"\n}}\n')
    (d / "asoundrc").write_text("".join(conf))
    return {"ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{d / 'asoundrc'}"}


def test_list_devices_shows_the_virtual_microphones(alsa_env: dict[str, str]) -> None:
    """`stt-worker --list-devices` enumerates ALSA's capture PCMs through PortAudio (no shim here):
    both file-backed devices are listed by name, and it exits 0."""
    r = subprocess.run([h.WORKER, "--list-devices"], env={**h.env_without("PYTHONPATH"), **alsa_env},
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
    assert r.returncode == 0, r.stderr
    lines = [re.match(r"^[ *]\s*\d+\s+(.+?)\s+\(", line) for line in r.stdout.splitlines()]
    names = [m.group(1) for m in lines if m]
    assert "filemic" in names, r.stdout
    assert "filemic44" in names, r.stdout


@pytest.mark.parametrize(("device", "rate"), DEVICES.items())
def test_microphone_at_a_foreign_rate_is_resampled_and_transcribed(
        broker: Mosquitto, alsa_env: dict[str, str], device: str, rate: int) -> None:
    """AUDIO_SOURCE=mic AUDIO_DEVICE=<name>: the device is found by its exact name (filemic, though
    filemic44 contains it too), opened at its own rate since it refuses 16 kHz (log line mic_open
    with that rate and resampled=true), its audio resampled to 16 kHz, gated and transcribed: the
    clip's final reaches MQTT with WER <= 15%. SIGTERM then ends the worker with status 0."""
    col = h.Collector(broker.port)
    env = h.worker_env(broker.port, "mic", AUDIO_DEVICE=device, **alsa_env, PYTHONPATH=str(SHIM),
                       STT_TEST_VIRTUAL_MICS=json.dumps(DEVICES))
    w = h.start_worker(env)
    try:
        opened = h.wait_log(w, "mic_open", 60)[0]
        assert opened["rate"] == rate, opened
        assert opened["resampled"] is True, opened
        assert opened["device"] == device, opened
        assert opened["index"] is not None, opened
        finals = col.wait_finals(1, 60, w)
        col.wait_for(lambda c: c.payloads("/speech")[-1:] == ["OFF"], 10, "speech OFF", w)
        w.signal(signal.SIGTERM)
        assert h.wait_exit(w, 10) == 0, h.tail(w)
    finally:
        w.stop()
        col.close()
    finals = col.finals()
    h.assert_transcribed([CLIP], finals)
    assert all(f["backend"] == "local" for f in finals), finals
    assert len(h.events(w, "mic_open")) == 1, "the device was reopened: audio was lost on the way"
    # the clip, plus the pre-roll (0.3 s) and hangover (0.6 s) around it: a wrong rate would stretch it by 9%
    heard = sum(f["audio_s"] for f in finals)
    assert abs(heard - (speech.duration(CLIP) + 0.9)) <= 0.3, (heard, finals)


def test_microphone_unplugged_mid_sentence_and_plugged_back(
        broker: Mosquitto, tmp_path: Path) -> None:
    """A USB microphone pulled out while someone speaks, left out for 12 s, then plugged back in.

    Unplugging takes the PCM out of ALSA's configuration (it disappears from PortAudio's device list)
    and makes its open stream fail (the shim, as ALSA's failing reads would). The worker ends the
    utterance where the device stopped, publishing what was heard so far and speech OFF; it does not
    exit, and it keeps pinging systemd's watchdog all the while (a restart would not bring a device
    back, and with the device gone at start it would exit 78 and stay down). When the device is back
    it is found again by name and reopened; the file plays from the start again and its sentence
    comes out whole. The worker tells systemd READY=1, WATCHDOG=1 and, on SIGTERM, STOPPING=1."""
    rate = 48_000
    raw = tmp_path / "plugmic.raw"
    subprocess.run(["sox", str(speech.SPEECH_DIR / f"{CLIP}.wav"), "-t", "raw", "-r", str(rate), "-c", "1",
                    "-b", "16", "-e", "signed", str(raw), "pad", "1", str(TAIL_S)], check=True)
    plugged = (f'pcm.plugmic {{\n    type file\n    slave.pcm "null"\n    file "/dev/null"\n'
               f'    infile "{raw}"\n    format "raw"\n}}\n')
    conf = tmp_path / "asoundrc"
    conf.write_text(plugged)
    flag = tmp_path / "unplugged"
    notify = NotifyListener(tmp_path / "notify")
    col = h.Collector(broker.port)
    env = h.worker_env(broker.port, "mic", AUDIO_DEVICE="plugmic", PYTHONPATH=str(SHIM),
                       ALSA_CONFIG_PATH=f"/usr/share/alsa/alsa.conf:{conf}",
                       STT_TEST_VIRTUAL_MICS=json.dumps({"plugmic": rate}), STT_TEST_UNPLUGGED=str(flag),
                       NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="2000000")
    w = h.start_worker(env)
    try:
        h.wait_log(w, "mic_open", 60)
        notify.wait("READY=1", 30)
        col.wait_for(lambda c: "ON" in c.payloads("/speech"), 20, "speech ON", w)
        time.sleep(1.5)  # into the 5 s sentence

        conf.write_text("# unplugged\n")
        flag.touch()
        t_out = time.monotonic()
        h.wait_log(w, "mic_lost", 10)
        (cut,) = col.wait_finals(1, 20, w)
        col.wait_for(lambda c: c.payloads("/speech")[-1:] == ["OFF"], 10, "speech OFF", w)
        time.sleep(max(0.0, 12.0 - (time.monotonic() - t_out)))
        assert w.alive(), h.tail(w)
        assert len(h.events(w, "mic_open")) == 1, "opened while unplugged"

        conf.write_text(plugged)
        flag.unlink()
        t_back = time.monotonic()
        h.wait_log(w, "mic_open", 15, n=2)
        pings_out = [t for t in notify.times("WATCHDOG=1") if t_out <= t <= t_back]
        whole = col.wait_finals(2, 60, w)[1]
        w.signal(signal.SIGTERM)
        assert h.wait_exit(w, 10) == 0, h.tail(w)
        notify.wait("STOPPING=1", 1)
    finally:
        w.stop()
        col.close()
        notify.close()

    ref = speech.normalise(speech.refs()[CLIP]).split()
    heard = speech.normalise(cut["text"]).split()
    assert 1 <= len(heard) < len(ref), cut["text"]
    assert cut["audio_s"] < speech.duration(CLIP), cut
    # the watchdog (pinged every second for WATCHDOG_USEC=2 s) never went quiet while the device was out
    gaps = [b - a for a, b in itertools.pairwise([t_out, *pings_out, t_back])]
    assert max(gaps) < 3.0, gaps
    assert speech.wer([(speech.refs()[CLIP], whole["text"])]) <= 0.15, whole["text"]
