"""The voice gate's tail floor: inside an utterance, audio far below its loudest counts as silence, so
the hangover starts where the speech ends rather than where webrtcvad stops hearing a faint tail."""

from __future__ import annotations

import numpy as np
from stt_core import vad as v

from harness.speech import clip

MS = 30
FB = 16000 * MS // 1000 * 2


def frames_of(pcm: np.ndarray) -> list[bytes]:
    data = pcm.astype("<i2").tobytes()
    return [data[i:i + FB] for i in range(0, len(data) - FB + 1, FB)]


def tone(db_below: float, n_frames: int) -> np.ndarray:
    t = np.arange(n_frames * FB // 2) / 16000
    return (10000 * 10 ** (-db_below / 20) * np.sin(2 * np.pi * 220 * t)).astype(np.int16)


def end_of(config: v.VadConfig, pcm: np.ndarray, classifier=None) -> v.SpeechEnd:
    gate = v.VadGate(config, classifier)
    events = [e for f in frames_of(pcm) for e in gate.feed(f)]
    (end,) = [e for e in events if isinstance(e, v.SpeechEnd)]
    return end


def test_a_faint_tail_does_not_hold_the_gate_open():
    """Loud speech then 600 ms of a tail 45 dB down that the classifier calls voiced: with a 35 dB floor
    the last voiced frame is the loud speech's last, so the hangover starts there; without the floor
    the tail's end is taken for the end of speech."""
    loud, faint, silence = tone(0, 20), tone(45, 20), np.zeros(FB // 2 * 40, np.int16)
    pcm = np.concatenate([loud, faint, silence])
    always = lambda f: bool(np.any(np.frombuffer(f, "<i2")))  # noqa: E731 - "voiced" = not digital silence
    with_floor = end_of(v.VadConfig(tail_floor_db=35), pcm, always)
    without = end_of(v.VadConfig(), pcm, always)
    assert with_floor.voiced_end_ms == 20 * MS
    assert without.voiced_end_ms == 40 * MS


def test_a_quieter_word_inside_the_sentence_still_counts():
    """A word 20 dB below the loudest (well within the floor) keeps the utterance going."""
    pcm = np.concatenate([tone(0, 10), tone(20, 30), np.zeros(FB // 2 * 40, np.int16)])
    always = lambda f: bool(np.any(np.frombuffer(f, "<i2")))  # noqa: E731
    end = end_of(v.VadConfig(tail_floor_db=35), pcm, always)
    assert end.voiced_end_ms == 40 * MS


def test_real_speech_ends_no_later_with_the_floor_and_keeps_its_words():
    """webrtcvad on a real sentence: the floor moves the end of speech earlier or leaves it, never later,
    and never by more than the sentence's last 300 ms (no word is lost to it)."""
    pcm = np.concatenate([np.zeros(8000, np.int16), clip("LJ001-0004"), np.zeros(16000, np.int16)])
    with_floor = end_of(v.VadConfig(tail_floor_db=35), pcm)
    without = end_of(v.VadConfig(), pcm)
    assert without.voiced_end_ms - 300 <= with_floor.voiced_end_ms <= without.voiced_end_ms
