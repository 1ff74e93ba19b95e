"""The voice gate (stt_core.vad.VadGate) as a plain state machine: frames in, events out.

Most tests inject the classifier: a frame is voiced when its first byte is 1, and bytes 1-4 carry the
frame's index, so the audio handed out can be checked frame by frame. The last ones run the real
webrtcvad on real speech from the speech set and on silence.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from stt_core import vad as v

from harness import speech

CFG = v.VadConfig()  # 30 ms frames, 300 ms pre-roll, 600 ms hangover, 250 ms minimum speech, 150 ms pause
FB = CFG.frame_bytes
MS = CFG.frame_ms


def frame(i: int, voiced: bool) -> bytes:
    return bytes([1 if voiced else 0]) + struct.pack("<I", i) + b"\0" * (FB - 5)


def index(f: bytes) -> int:
    return int(struct.unpack("<I", f[1:5])[0])


def indices(audio: bytes) -> list[int]:
    return [index(audio[k:k + FB]) for k in range(0, len(audio), FB)]


def marked(f: bytes) -> bool:
    return f[0] == 1


class Script:
    """Feeds frames (S: silent, V: voiced) with running indices and keeps every event with the index
    of the frame that produced it."""

    def __init__(self, config: v.VadConfig = CFG) -> None:
        self.gate = v.VadGate(config, is_speech=marked)
        self.n = 0
        self.events: list[tuple[int, v.Event]] = []

    def feed(self, pattern: str) -> list[v.Event]:
        out: list[v.Event] = []
        for ch in pattern.replace(" ", ""):
            for e in self.gate.feed(frame(self.n, ch == "V")):
                self.events.append((self.n, e))
                out.append(e)
            self.n += 1
        return out

    def of(self, kind: type) -> list[tuple[int, v.Event]]:
        return [(i, e) for i, e in self.events if isinstance(e, kind)]

    def kinds(self) -> list[str]:
        return [type(e).__name__ for _, e in self.events if not isinstance(e, v.SpeechAudio)]


def test_pre_roll_before_the_trigger_is_handed_out_with_speech_start():
    """The gate opens once 90 ms of the last 150 ms are voiced, and SpeechStart carries, in order, at
    least preroll_ms of the audio from before the first triggering frame, then the triggering frames:
    the onset of the first word is never cut. t_ms is the stream time of the first frame handed out."""
    s = Script()
    s.feed("S" * 40)
    assert s.events == []
    s.feed("VVV")
    (at, start), = s.of(v.SpeechStart)
    assert at == 42  # the third voiced frame opens the gate
    got = indices(start.audio)
    assert got == list(range(got[0], 43)), "pre-roll frames out of order or missing"
    before_trigger_ms = (40 - got[0]) * MS
    assert before_trigger_ms >= CFG.preroll_ms, f"only {before_trigger_ms} ms of pre-roll before the speech"
    assert start.t_ms == got[0] * MS
    # and every later frame follows as SpeechAudio, none lost or repeated
    s.feed("VVVV")
    assert [index(e.audio) for _, e in s.of(v.SpeechAudio)] == [43, 44, 45, 46]


def test_pre_roll_is_whatever_there_was_at_the_start_of_the_stream():
    """Speech in the very first frames: SpeechStart holds the frames there were, from frame 0."""
    s = Script()
    s.feed("SVVV")
    (_, start), = s.of(v.SpeechStart)
    assert indices(start.audio) == [0, 1, 2, 3]
    assert start.t_ms == 0


def test_hangover_ends_the_utterance_after_exactly_hangover_ms_of_silence():
    """After the last voiced frame the gate stays open for hangover_ms of silence (the frames are still
    sent: a pause inside a sentence is kept) and closes on the frame that completes it, with
    SpeechEnd("silence"), the voiced time and the stream time where the voice ended."""
    s = Script()
    s.feed("S" * 20 + "V" * 20)
    last_voiced_end = 40 * MS
    silent = CFG.hangover_ms // MS
    s.feed("S" * (silent - 1))
    assert s.of(v.SpeechEnd) == [], "closed before the hangover ran out"
    s.feed("S")
    (at, end), = s.of(v.SpeechEnd)
    assert at == 39 + silent
    assert end.reason == "silence"
    assert end.voiced_ms == 20 * MS
    assert end.voiced_end_ms == last_voiced_end
    assert s.gate.is_open is False
    s.feed("S" * 50)
    assert len(s.of(v.SpeechStart)) == 1, "silence reopened the gate"


def test_a_click_shorter_than_min_speech_is_discarded_not_ended():
    """A burst of voiced frames that opens the gate but totals less than min_speech_ms (a click, a
    cough, a door) closes with SpeechDiscarded, never SpeechEnd: nothing is transcribed."""
    s = Script()
    s.feed("S" * 20 + "VVVV" + "S" * 40)  # 120 ms voiced < 250 ms
    assert s.kinds() == ["SpeechStart", "Pause", "SpeechDiscarded"]
    (_, gone), = s.of(v.SpeechDiscarded)
    assert gone.voiced_ms == 4 * MS


def test_speech_just_over_min_speech_is_kept():
    """The boundary of the click rule: min_speech_ms of voiced audio is an utterance."""
    s = Script()
    s.feed("S" * 20 + "V" * (CFG.min_speech_ms // MS + 1) + "S" * 40)
    assert s.kinds()[-1] == "SpeechEnd"


def test_max_utterance_length_cuts_and_the_gate_reopens_on_continuing_speech():
    """Speech that never pauses is cut at max_utterance_s (SpeechEnd("max_length")) counting all the
    audio handed out, pre-roll included; speech still going on opens a new utterance."""
    cfg = v.VadConfig(max_utterance_s=1.5)
    s = Script(cfg)
    s.feed("S" * 20 + "V" * 120)
    ends = s.of(v.SpeechEnd)
    assert ends
    assert all(e.reason == "max_length" for _, e in ends)
    first_start = s.of(v.SpeechStart)[0][1]
    audio = len(first_start.audio) + sum(len(e.audio) for i, e in s.of(v.SpeechAudio) if i <= ends[0][0])
    assert audio // 32 == 1500, f"first utterance held {audio // 32} ms"
    assert len(s.of(v.SpeechStart)) >= 2, "the gate did not reopen after the cut"


def test_pause_then_resume_then_end():
    """pause_ms of trailing silence announces Pause (once, with the stream time of the last voiced
    frame), voiced audio before the hangover runs out announces Resume, and the utterance goes on to
    end normally on the hangover."""
    s = Script()
    s.feed("S" * 10 + "V" * 15)  # voiced up to frame 24
    s.feed("S" * (CFG.pause_ms // MS))
    (at, pause), = s.of(v.Pause)
    assert at == 24 + CFG.pause_ms // MS
    assert pause.voiced_end_ms == 25 * MS
    s.feed("SS")
    assert len(s.of(v.Pause)) == 1, "Pause announced twice for one silence"
    s.feed("VVV")
    assert len(s.of(v.Resume)) == 1
    s.feed("S" * (CFG.hangover_ms // MS))
    assert s.kinds() == ["SpeechStart", "Pause", "Resume", "Pause", "SpeechEnd"]


def test_forced_open_is_never_discarded():
    """open() (push-to-talk) starts an utterance at once with the pre-roll, is not opened twice, gives
    the person listen_timeout_ms (not just the hangover) to start speaking, and is ended with SpeechEnd
    even with no voiced audio at all; the next, natural, utterance follows the usual rules again (a
    click is discarded)."""
    s = Script()
    s.feed("S" * 5)
    (start,) = s.gate.open()
    assert isinstance(start, v.SpeechStart)
    assert indices(start.audio) == [0, 1, 2, 3, 4]
    assert s.gate.open() == []
    s.feed("S" * (CFG.hangover_ms // MS))
    assert s.of(v.SpeechEnd) == [], "the hangover alone must not end a Listen before the first word"
    assert s.of(v.Pause) == [], "no speculative decode before anything was said"
    s.feed("S" * (CFG.listen_timeout_ms // MS + 1 - CFG.hangover_ms // MS))
    (_, end), = s.of(v.SpeechEnd)
    assert end.voiced_ms == 0
    assert s.of(v.SpeechDiscarded) == []
    s.feed("VVV" + "S" * 30)
    assert len(s.of(v.SpeechDiscarded)) == 1


def test_forced_open_then_speech_ends_on_the_hangover():
    """Once the person speaks after open(), the usual hangover ends the utterance."""
    s = Script()
    s.gate.open()
    s.feed("S" * 20 + "V" * 10)
    assert s.of(v.SpeechEnd) == []
    s.feed("S" * (CFG.hangover_ms // MS))
    (_, end), = s.of(v.SpeechEnd)
    assert end.voiced_ms == 10 * MS


def test_close_flushes_an_open_utterance_and_is_a_no_op_when_closed():
    """close() at the end of input ends the utterance in progress (SpeechEnd("flush")); a closed gate
    has nothing to flush."""
    s = Script()
    assert s.gate.close() == []
    s.feed("S" * 5 + "V" * 20)
    (end,) = s.gate.close()
    assert isinstance(end, v.SpeechEnd)
    assert end.reason == "flush"
    assert end.voiced_ms == 20 * MS
    assert s.gate.close() == []


@pytest.mark.parametrize("size", [0, FB - 2, FB + 2, 320])
def test_a_frame_of_the_wrong_size_raises(size: int):
    """Only whole frames of frame_ms at 16 kHz are accepted; anything else is a caller bug, not audio."""
    gate = v.VadGate(CFG, is_speech=marked)
    with pytest.raises(ValueError, match="frames must be"):
        gate.feed(b"\0" * size)


@pytest.mark.parametrize(("field", "value"), [("frame_ms", 25), ("aggressiveness", 4)])
def test_impossible_configuration_is_refused(field: str, value: int):
    """webrtcvad only does 10/20/30 ms frames and aggressiveness 0-3; VadConfig says so at once."""
    with pytest.raises(ValueError, match=field):
        v.VadConfig(**{field: value})


# ---- the real classifier ----------------------------------------------------------------------------


def frames_of(pcm: np.ndarray, frame_ms: int = 30) -> list[bytes]:
    n = 16 * frame_ms
    usable = len(pcm) - len(pcm) % n
    data = pcm[:usable].astype("<i2").tobytes()
    return [data[k:k + 2 * n] for k in range(0, len(data), 2 * n)]


def run_gate(pcm: np.ndarray, config: v.VadConfig = CFG) -> list[v.Event]:
    gate = v.VadGate(config)
    out: list[v.Event] = []
    for f in frames_of(pcm, config.frame_ms):
        out += gate.feed(f)
    return out + gate.close()


@pytest.mark.parametrize("sigma", [0, 30])
def test_silence_and_a_quiet_room_give_no_events_with_webrtcvad(sigma: int):
    """Digital silence and the noise floor of a quiet room (about -60 dBFS) for 20 s: not a single event,
    so nothing is ever decoded while nobody speaks."""
    rng = np.random.default_rng(7)
    pcm = rng.normal(0, sigma, 20 * 16000).astype(np.int16) if sigma else np.zeros(20 * 16000, np.int16)
    assert run_gate(pcm) == []


@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_real_speech_gives_one_utterance_per_sentence_covering_its_onset(tmp_path, frame_ms: int):
    """webrtcvad on three real sentences separated by 1.5 s of silence: each becomes one utterance
    (SpeechStart ... SpeechEnd("silence")), whose audio starts before the sentence's first sample (the
    pre-roll covers the onset) and whose voiced part reaches to within 300 ms of its end."""
    ids = ["LJ001-0002", "LJ001-0008", "LJ001-0004"]
    wav, spans = speech.concat(ids, tmp_path / "s.wav", gap_s=1.5)
    pcm, _ = speech.read_wav(wav)
    events = run_gate(pcm, v.VadConfig(frame_ms=frame_ms))
    starts = [e for e in events if isinstance(e, v.SpeechStart)]
    ends = [e for e in events if isinstance(e, v.SpeechEnd)]
    assert len(starts) == len(ends) == len(ids), [type(e).__name__ for e in events
                                                  if not isinstance(e, v.SpeechAudio)]
    assert all(e.reason == "silence" for e in ends)
    for (t0, t1), start, end in zip(spans, starts, ends, strict=True):
        assert start.t_ms <= t0 * 1000, f"utterance starts at {start.t_ms} ms, after the onset at {t0:.2f} s"
        assert end.voiced_end_ms >= t1 * 1000 - 300, (end.voiced_end_ms, t1)
        assert end.voiced_ms >= 0.5 * (t1 - t0) * 1000


def test_speech_from_the_first_frame_is_still_caught_whole():
    """A stream that starts mid-speech (no silence before the sentence): the classifier's warm-up does
    not lose it; the utterance's audio starts at stream time 0 and its voiced part covers the sentence."""
    pcm = np.concatenate([speech.clip("LJ001-0004"), np.zeros(16000, np.int16)])
    events = run_gate(pcm)
    starts = [e for e in events if isinstance(e, v.SpeechStart)]
    ends = [e for e in events if isinstance(e, v.SpeechEnd)]
    assert len(starts) == len(ends) == 1, [type(e).__name__ for e in events]
    assert starts[0].t_ms == 0
    assert ends[0].voiced_ms >= 0.6 * speech.duration("LJ001-0004") * 1000
