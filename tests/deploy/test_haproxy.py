"""config/haproxy/stt-bridge.cfg with a real HAProxy (Debian's package, from the Makefile's
DEB_TEST_PACKAGES) in front of two real stt-servers, and a real worker whose WS_URL is HAProxy: the
server holding the worker's session is killed in the middle of a sentence, and no utterance is lost
(every sentence has its final on MQTT, in order), the ones after the kill through the other server.

The shipped file is used as it is, with only its addresses made local: the test fails if a `bind` or
`server` line was left unchanged, so it cannot pass against some other configuration."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from harness.procs import Mosquitto, Proc, free_port, start_server, wait_port
from tests.worker import helpers as h
from tests.worker.test_resilience import SPEED, clip_wer, sentence

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "haproxy" / "stt-bridge.cfg"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def localize(text: str, binds: dict[int, int], servers: dict[str, dict[int, int]]) -> str:
    """The config with ``bind :N`` on 127.0.0.1 at ``binds[N]`` and each ``server NAME NAME:PORT ...
    [port P]`` at 127.0.0.1 with ``servers[NAME]``'s ports."""
    def server_line(m: re.Match[str]) -> str:
        ports = servers[m[2]]
        rest = re.sub(r"\bport (\d+)", lambda p: f"port {ports[int(p[1])]}", m[4])
        return f"{m[1]}127.0.0.1:{ports[int(m[3])]}{rest}"

    out: list[str] = []
    for line in text.splitlines():
        if b := re.match(r"(\s*bind\s+):(\d+)(.*)$", line):
            out.append(f"{b[1]}127.0.0.1:{binds[int(b[2])]}{b[3]}")
        elif srv := re.match(r"(\s*server\s+(\S+)\s+)\S+:(\d+)(.*)$", line):
            out.append(server_line(srv))
        else:
            out.append(line)
    result = "\n".join(out) + "\n"
    left = [line for line in result.splitlines()
            if re.match(r"\s*(bind|server)\b", line) and "127.0.0.1:" not in line]
    assert not left, f"lines of the shipped config not made local: {left}"
    return result


class HaProxy:
    """HAProxy in the foreground (-db) on the shipped config, its log (stdout) in the Proc's file."""

    def __init__(self, config: str, port: int, folder: Path) -> None:
        assert Path(HAPROXY).exists(), "haproxy is not installed: run make setup (DEB_TEST_PACKAGES)"
        self.port = port
        self.cfg = folder / "haproxy.cfg"
        self.cfg.write_text(config)
        check = subprocess.run([HAPROXY, "-c", "-f", str(self.cfg)], capture_output=True, text=True,
                               check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        self.proc = Proc([HAPROXY, "-db", "-f", str(self.cfg)], name="haproxy")
        wait_port(port, 10, self.proc)

    def stop(self) -> None:
        self.proc.stop()


def session_holder(servers: dict[str, Proc], timeout: float) -> str:
    """Which server logged the worker's session_started (exactly one may)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holders = [name for name, p in servers.items()
                   if any(e.get("event") == "session_started" for e in p.json_events())]
        if holders:
            assert len(holders) == 1, f"sessions on {holders}"
            return holders[0]
        time.sleep(0.2)
    raise AssertionError("no server logged session_started")


def finals_of(server: Proc) -> int:
    return sum(1 for e in server.json_events() if e.get("event") == "final")


def test_a_server_killed_behind_haproxy_loses_no_utterance(broker: Mosquitto, tmp_path: Path):
    """Sentence 1 goes through HAProxy to whichever server it chose; that server is SIGKILLed in the
    middle of sentence 2, which gets its final from the worker's local engine (the audio it kept);
    the worker reconnects to HAProxy, which sends it to the other server, and sentences 3 and 4 are
    that server's. Four finals, in the order spoken, each with its own sentence's words."""
    clips = ["LJ001-0008", "LJ001-0004", "LJ001-0002", "LJ001-0011"]
    procs: dict[str, Proc] = {}
    ports: dict[str, dict[int, int]] = {}
    for name in ("stt1", "stt2"):
        wyoming = free_port()
        procs[name], http = start_server({"WYOMING_PORT": str(wyoming)})
        ports[name] = {9000: http, 10300: wyoming}
    lb_port = free_port()
    lb = HaProxy(localize(CONFIG.read_text(), {9000: lb_port, 10300: free_port(), 8404: free_port()}, ports),
                 lb_port, tmp_path)
    col = h.Collector(broker.port)
    w = h.start_worker(h.worker_env(broker.port, "-", STT_BACKEND="ws", WS_URL=f"ws://127.0.0.1:{lb_port}/stt",
                                    STT_FALLBACK="local", RECONNECT_MAX_S="1", WS_CONNECT_TIMEOUT_S="2",
                                    WS_FINAL_TIMEOUT_S="15"), stdin=subprocess.PIPE)
    try:
        h.wait_log(w, "worker_started", 60)
        h.feed_stdin(w, sentence(clips[0]), speed=SPEED, close=False)
        col.wait_finals(1, 30, w)
        holder = session_holder(procs, 10)
        other = next(name for name in procs if name != holder)
        assert finals_of(procs[holder]) == 1

        feeder = h.StdinFeeder(w, sentence(clips[1]), speed=SPEED, close=False)
        col.wait_for(lambda c: c.payloads("/speech").count("ON") >= 2, 30, "sentence 2 under way", w)
        time.sleep(0.5)  # well inside the sentence, which lasts 2.6 s at SPEED=2
        procs[holder].signal(signal.SIGKILL)
        feeder.join(30)
        # the worker's new session, through HAProxy, is on the other server before sentence 3 begins
        h.wait_log(w, "server_connected", 30, n=2)
        deadline = time.monotonic() + 15
        while not any(e.get("event") == "session_started" for e in procs[other].json_events()):
            assert time.monotonic() < deadline, f"no session on {other}:\n{procs[other].output()[-2000:]}"
            time.sleep(0.2)
        h.feed_stdin(w, h.speech_pcm(clips[2:], gap_s=1.3, lead_s=0.6), speed=SPEED, close=False)
        col.wait_finals(4, 60, w)
        assert w.p.stdin is not None
        w.p.stdin.close()
        assert h.wait_exit(w, 60) == 0, h.tail(w)
    finally:
        w.stop()
        col.close()
        lb.stop()
        for p in procs.values():
            p.stop()
    finals = col.finals()
    assert [(f["backend"], f["fallback"]) for f in finals] == [
        ("ws", False), ("local", True), ("ws", False), ("ws", False)], finals
    h.assert_transcribed(clips, finals)
    for clip, f in zip(clips, finals, strict=True):
        assert clip_wer(clip, f["text"]) <= 0.25, (clip, f["text"])
    assert col.errors() == []
    # sentences 3 and 4 were decoded by the server that was not killed
    assert finals_of(procs[other]) == 2, procs[other].output()[-2000:]
    assert "stt_servers" in lb.proc.output(), "HAProxy logged no session of the /stt backend"
