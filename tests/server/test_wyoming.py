"""stt-server's Wyoming listener against the real ``wyoming`` client, driven as Home Assistant's
wyoming integration drives it: ``describe``; then ``transcribe``, ``audio-start``, audio in 20 ms
chunks in real time, ``audio-stop``, and a wait for the ``transcript``. Real server, real model, real
speech, real sockets; the hostile cases write raw bytes to the port."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStop
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event, async_read_event
from wyoming.info import Describe, Info

from harness.speech import clip, duration, pick, refs, wer

CLIPS = pick(3, 3.0, 7.0)  # long enough that chunks must come while they play


@dataclass
class Heard:
    types: list[str] = field(default_factory=list)  # every event type, in order
    chunks: list[str] = field(default_factory=list)
    chunks_before_stop: int = 0
    text: str = ""
    language: str | None = None
    confidence: float | None = None
    stop_to_transcript_s: float = 0.0


async def transcribe(port: int, pcm: np.ndarray, rate: int = 16000, channels: int = 1, *,
                     realtime: bool = True, chunk_ms: int = 20, **request: object) -> Heard:
    heard = Heard()
    async with AsyncTcpClient("127.0.0.1", port) as c:
        await c.write_event(Transcribe(language="en", **request).event())  # type: ignore[arg-type]
        await c.write_event(AudioStart(rate=rate, width=2, channels=channels).event())
        done = asyncio.get_running_loop().create_future()

        async def read() -> None:
            while (ev := await c.read_event()) is not None:
                heard.types.append(ev.type)
                if TranscriptChunk.is_type(ev.type):
                    heard.chunks.append(TranscriptChunk.from_event(ev).text)
                elif Transcript.is_type(ev.type):
                    t = Transcript.from_event(ev)
                    heard.text, heard.language = t.text, t.language
                    heard.confidence = ev.data.get("confidence")
                    done.set_result(time.monotonic())
                    if "transcript-start" not in heard.types:
                        return  # no stream was started: no transcript-stop follows
                elif TranscriptStop.is_type(ev.type):
                    return

        reader = asyncio.get_running_loop().create_task(read())
        step = rate * chunk_ms // 1000 * channels
        t0 = time.monotonic()
        for k, i in enumerate(range(0, len(pcm), step)):
            await c.write_event(AudioChunk(rate=rate, width=2, channels=channels,
                                           audio=pcm[i:i + step].astype("<i2").tobytes()).event())
            if realtime:
                await asyncio.sleep(max(0.0, t0 + (k + 1) * chunk_ms / 1000 - time.monotonic()))
        heard.chunks_before_stop = len(heard.chunks)
        stopped = time.monotonic()
        await c.write_event(AudioStop().event())
        heard.stop_to_transcript_s = await asyncio.wait_for(done, 60) - stopped
        await asyncio.wait_for(reader, 10)
    return heard


async def describe(port: int) -> Info:
    async with AsyncTcpClient("127.0.0.1", port) as c:
        await c.write_event(Describe().event())
        while (ev := await asyncio.wait_for(c.read_event(), 10)) is not None:
            if Info.is_type(ev.type):
                return Info.from_event(ev)
    raise AssertionError("no info")


async def test_describe_answers_one_streaming_asr_program_with_the_models_real_languages(wyoming_port):
    """info: one installed ASR program that streams, the loaded model with the languages it can do
    (tiny.en: English only), and the truth about VAD (Home Assistant's pipeline ends utterances)."""
    info = await describe(wyoming_port)
    assert len(info.asr) == 1
    asr = info.asr[0]
    assert asr.name == "stt-bridge"
    assert asr.installed
    assert asr.supports_transcript_streaming
    assert asr.requires_external_vad is True
    assert asr.attribution.name
    assert asr.version
    assert asr.description
    (model,) = asr.models
    assert model.installed
    assert model.name == "tiny.en (embedded)"
    assert model.languages == ["en"]


async def test_home_assistant_style_requests_stream_chunks_then_the_transcript(wyoming_port):
    """Each clip streamed in real time: transcript-start and chunks while it plays, then after
    audio-stop the transcript, then transcript-stop; the chunks join into words of the transcript;
    the finals are accurate (WER within 10% over the clips, confidence in 0-1)."""
    pairs = []
    for name in CLIPS:
        heard = await transcribe(wyoming_port, clip(name))
        assert duration(name) >= 3
        assert heard.chunks_before_stop >= 1, f"no transcript-chunk while {name} was streamed"
        assert heard.types[0] == "transcript-start", heard.types
        assert heard.types[-2:] == ["transcript", "transcript-stop"], heard.types
        joined = "".join(heard.chunks).split()
        final = heard.text.split()
        assert len(joined) <= len(final) + 2, (joined, final)
        assert heard.language == "en"
        assert heard.confidence is not None
        assert 0 < heard.confidence <= 1
        pairs.append((refs()[name], heard.text))
    assert wer(pairs) <= 0.10, pairs


async def test_any_rate_and_channel_count_is_converted_once(wyoming_port):
    """48 kHz stereo in: the same words come out (the engine's resampler, not dropped samples)."""
    mono = clip("LJ001-0002").astype(np.float32)
    up = np.interp(np.arange(0, len(mono), 1 / 3), np.arange(len(mono)), mono).astype(np.int16)
    stereo = np.stack([up, up], axis=1).reshape(-1)
    heard = await transcribe(wyoming_port, stereo, rate=48000, channels=2, realtime=False, chunk_ms=100)
    assert wer([(refs()["LJ001-0002"], heard.text)]) <= 0.15, heard.text


async def test_audio_stop_without_audio_is_an_empty_transcript(wyoming_port):
    """As wyoming-faster-whisper answers it: nothing heard, nothing said."""
    async with AsyncTcpClient("127.0.0.1", wyoming_port) as c:
        await c.write_event(AudioStop().event())
        ev = await asyncio.wait_for(c.read_event(), 10)
    assert ev is not None
    assert Transcript.is_type(ev.type)
    assert Transcript.from_event(ev).text == ""


async def test_transcript_names_bias_the_transcription(wyoming_port, tmp_path):
    """Home Assistant's transcript_names reach the decoder: made-up names spoken by espeak-ng that the
    bare model misspells come out right when they are named (at least 2 of 3, against at most 1 of 3
    without)."""
    from tests.support.espeak import say

    names = ["Zorvathy", "Siobhan", "Saoirse"]
    bare = named = 0
    for name in names:
        pcm = say(f"Turn on the lights in {name}'s room.", tmp_path)
        plain = await transcribe(wyoming_port, pcm, realtime=False, chunk_ms=100)
        biased = await transcribe(wyoming_port, pcm, realtime=False, chunk_ms=100, transcript_names=names)
        bare += name.lower() in plain.text.lower()
        named += name.lower() in biased.text.lower()
    assert named >= 2, (named, bare)
    assert bare <= 1, (named, bare)


# ---- hostile input ----------------------------------------------------------------------------


def header(event_type: str, **extra: object) -> bytes:
    return json.dumps({"type": event_type, **extra}).encode() + b"\n"


MONO16 = {"rate": 16000, "width": 2, "channels": 1}
HOSTILE = [pytest.param(data, code, id=name) for name, data, code in [
    ("garbage line", b"this is not json\n", "bad_event"),
    ("a header that is not an object", b"[1, 2, 3]\n", "bad_event"),
    ("a line over the limit", b"{" * 100_000 + b"\n", "bad_event"),
    ("nesting too deep", b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"\n", "bad_event"),
    ("data_length too big", header("audio-chunk", data_length=10_000_000), "payload_too_large"),
    ("payload_length too big", header("audio-chunk", payload_length=10_000_000), "payload_too_large"),
    ("a data_length that lies", header("describe", data_length=50) + b'{"x": 1}', "truncated"),
    ("audio before audio-start",
     header("audio-chunk", data=MONO16, payload_length=640) + b"\0" * 640, "audio_before_start"),
    ("rate 0", header("audio-start", data={**MONO16, "rate": 0}), "bad_rate"),
    ("width 3", header("audio-start", data={**MONO16, "width": 3}), "bad_width"),
    ("audio-start without a rate", header("audio-start", data={"width": 2}), "bad_event"),
    ("a language the model lacks", header("transcribe", data={"language": "xx"}), "bad_option"),
]]


def send_raw(port: int, data: bytes) -> list[Event]:
    """Write ``data``, half-close, and read every event until the server closes the connection."""

    async def go() -> list[Event]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(data)
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        out = []
        while (ev := await asyncio.wait_for(async_read_event(reader), 20)) is not None:
            out.append(ev)
        writer.close()
        return out

    return asyncio.run(go())


@pytest.mark.parametrize(("data", "code"), HOSTILE)
def test_bad_input_gets_an_error_event_and_a_closed_connection(wyoming_port, data, code):
    """Every malformed or impossible input is answered with one Wyoming ``error`` naming what is wrong,
    then the connection is closed by the server; the server stays up for the next client."""
    events = send_raw(wyoming_port, data)
    assert [e.type for e in events] == ["error"], events
    err = Error.from_event(events[0])
    assert err.code == code, err
    assert err.text


def test_a_hostile_client_leaves_a_session_beside_it_untouched(wyoming_port):
    """While one client streams a sentence in real time, others send every hostile input above: the
    first still gets its transcript, and the server still answers describe afterwards."""

    async def go() -> Heard:
        good = asyncio.get_running_loop().create_task(transcribe(wyoming_port, clip("LJ001-0002")))
        for case in HOSTILE:
            await asyncio.to_thread(send_raw, wyoming_port, case.values[0])
        return await good

    heard = asyncio.run(go())
    assert wer([(refs()["LJ001-0002"], heard.text)]) <= 0.15, heard.text
    info = asyncio.run(describe(wyoming_port))
    assert info.asr


def test_metrics_count_wyoming_sessions_and_errors_by_dialect(server, wyoming_port):
    from tests.support.server_http import metrics

    _, port = server
    before = metrics(port)
    send_raw(wyoming_port, b"garbage\n")
    after = metrics(port)
    key = 'stt_errors_total{dialect="wyoming",code="bad_event"}'
    assert after[key] == before.get(key, 0) + 1
    sessions = 'stt_sessions_total{dialect="wyoming"}'
    assert after[sessions] >= before.get(sessions, 0) + 1


def test_the_listener_is_off_with_wyoming_port_0_and_a_taken_port_asked_for_exits_78():
    """WYOMING_PORT=0: nothing listens; a port asked for that is taken: one line naming the variable,
    exit 78 (the default port merely warns: /stt users are not stopped by it)."""
    import subprocess

    from harness.procs import VENV_BIN, free_port

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"PATH": "/usr/bin:/bin", "HOST": "127.0.0.1", "PORT": str(free_port()), "DEVICE": "cpu",
               "WYOMING_PORT": str(port)}
        r = subprocess.run([str(VENV_BIN / "stt-server")], capture_output=True, text=True, timeout=120,
                           check=False, env=env)
    assert r.returncode == 78, r
    assert "WYOMING_PORT" in r.stderr.strip().splitlines()[-1], r.stderr


def test_zeroconf_advertises_the_listener_to_a_browser_and_withdraws_it_at_shutdown():
    """WYOMING_ZEROCONF=1: a zeroconf browser (what Home Assistant runs) finds ``_wyoming._tcp`` under
    WYOMING_ZEROCONF_NAME with the listener's port and address; at SIGTERM the record is withdrawn.
    Checked against a local browser over this machine's own multicast."""
    from zeroconf import ServiceStateChange
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

    from harness.procs import free_port, start_server

    wport = free_port()
    name = f"stt-bridge-test-{wport}"  # its own name: no record of an earlier run can answer for it
    proc, _ = start_server({"WYOMING_PORT": str(wport), "WYOMING_ZEROCONF": "1",
                            "WYOMING_ZEROCONF_NAME": name})
    service = "_wyoming._tcp.local."

    async def go() -> tuple[AsyncServiceInfo, list[ServiceStateChange]]:
        ours = f"{name}.{service}"
        changes: list[ServiceStateChange] = []
        added, removed = asyncio.Event(), asyncio.Event()

        def on_change(zeroconf: object, service_type: str, name: str,
                      state_change: ServiceStateChange) -> None:
            if name == ours:
                changes.append(state_change)
                (added if state_change == ServiceStateChange.Added else removed).set()

        azc = AsyncZeroconf()
        browser = AsyncServiceBrowser(azc.zeroconf, service, handlers=[on_change])
        try:
            await asyncio.wait_for(added.wait(), 20)
            info = AsyncServiceInfo(service, ours)
            assert await info.async_request(azc.zeroconf, 3000)
            await asyncio.to_thread(proc.stop)
            await asyncio.wait_for(removed.wait(), 20)
            return info, changes
        finally:
            await browser.async_cancel()
            await azc.async_close()

    try:
        info, changes = asyncio.run(go())
    finally:
        proc.stop()
    assert info.port == wport
    assert info.parsed_addresses() == ["127.0.0.1"]
    assert changes[0] == ServiceStateChange.Added
    assert changes[-1] == ServiceStateChange.Removed
