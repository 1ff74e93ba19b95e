"""Speech made on the spot with espeak-ng (installed by `make setup`): words no recording has, such
as made-up names, as 16 kHz mono int16."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np


def say(text: str, tmp: Path, voice: str = "en-us", wpm: int = 150) -> np.ndarray:
    wav = tmp / "espeak.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(wav), text], check=True)
    raw = subprocess.run(["sox", str(wav), "-t", "raw", "-r", "16000", "-c", "1", "-b", "16", "-e", "signed",
                          "-"], check=True, capture_output=True).stdout
    pcm = np.frombuffer(raw, dtype="<i2")
    # a little silence either side, as a person's utterance has: the gate and Silero expect it
    pad = np.zeros(16000 * 3 // 10, dtype=np.int16)
    return np.concatenate([pad, pcm, pad])
