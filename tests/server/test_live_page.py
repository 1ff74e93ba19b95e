"""The live page at ``/``, in a real headless Chromium whose microphone plays a WAV of speech.

The page, not the test, decides where utterances end (its energy end-pointer sends ``end`` after a
pause), so one final per utterance proves the automatic segmentation; pressing Stop mid-utterance
proves the manual ``end``. The server requires a token, so every transcript also proves that the
page passes its ``?token=`` on. Set ``STT_SCREENSHOT_DIR`` to keep the screenshot
(scripts/screenshot-live-page.sh writes docs/live-page.png that way).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import speech
from harness.procs import start_server
from harness.stt_client import http_get
from tests.support.browser import Chromium, chromium_path

TOKEN = "page-test-token"

# the DOM as the user sees it, oldest final first
READ_PAGE = """(() => {
  const q = (s) => document.querySelector(s);
  return {
    model: q("#model").textContent, status: q("#status").textContent, error: q("#error").textContent,
    partial: q("#partial").textContent, button: q("#toggle").textContent,
    capture: document.body.dataset.capture || null,
    finals: [...document.querySelectorAll("#finals li")].reverse().map((li) => ({
      text: li.querySelector(".text").textContent, meta: li.querySelector(".meta").textContent,
      latency_ms: li.dataset.latencyMs ? Number(li.dataset.latencyMs) : null })),
    partials_seen: window.__partials || [],
  };
})()"""

# every text the grey partial line showed, recorded as the DOM changes (a poll could miss a short one)
WATCH_PARTIALS = """(() => {
  window.__partials = [];
  const el = document.querySelector("#partial");
  new MutationObserver(() => { if (el.textContent) window.__partials.push(el.textContent); })
    .observe(el, { childList: true, characterData: true, subtree: true });
  return true;
})()"""

# /health answered: the model (with the token), or only that the server is up (without it)
PAGE_LOADED = ("document.readyState === 'complete' && !!document.querySelector('#model') && "
               "document.querySelector('#model').textContent !== 'connecting…'")
CLICK = "document.querySelector('#toggle').click(), true"


def n_finals(n: int) -> str:
    return f"document.querySelectorAll('#finals li').length >= {n}"


@pytest.fixture(scope="module")
def token_server() -> Iterator[tuple[int, str]]:
    """A real stt-server that refuses /stt without the token; its port and model name."""
    proc, port = start_server({"STT_TOKEN": TOKEN})
    try:
        yield port, str(json.loads(http_get(port, f"/health?token={TOKEN}")[2])["model"])
    finally:
        proc.stop()
        if os.environ.get("STT_SHOW_SERVER_LOG"):
            print(proc.output()[-3000:])


@pytest.fixture
def browser_for(tmp_path: Path) -> Iterator[Any]:
    """``browser_for(url, wav)``: a headless Chromium on ``url`` with ``wav`` as its microphone; on a
    failure the page's state and console are printed."""
    if chromium_path() is None:
        pytest.fail("chromium is not installed: run `make setup` (it installs Debian's chromium)")
    started: list[Chromium] = []

    def launch(url: str, wav: Path) -> Chromium:
        browser = Chromium(url, wav)
        started.append(browser)
        browser.page.wait_for(PAGE_LOADED, 10, "the page with /health's answer")
        return browser

    yield launch
    for browser in started:
        try:
            print("page:", browser.page.evaluate(READ_PAGE), "\nconsole:", *browser.page.console, sep="\n")
        finally:
            browser.stop()


def test_page_is_served_static_and_public(token_server: tuple[int, str]) -> None:
    """``/`` and ``/index.html`` serve the one self-contained HTML page without a token (only /stt
    needs one), with nothing loaded from elsewhere and a CSP that keeps it talking to this server."""
    port, _ = token_server
    for path in ("/", "/index.html", "/?token=whatever"):
        status, ctype, body = http_get(port, path)
        assert status == 200, (path, body[:200])
        assert ctype == "text/html; charset=utf-8"
        for needed in ("<title>", "getUserMedia", "AudioWorklet"):
            assert needed in body, needed
        for external in ('src="http', 'href="http', "@import"):
            assert external not in body, external


@pytest.mark.timeout(90)
def test_live_page_transcribes_the_browser_microphone(token_server: tuple[int, str], browser_for: Any,
                                                      tmp_path: Path) -> None:
    """The page shows the model, streams the microphone (AudioWorklet) to /stt with the page's
    ?token=, shows partials while speech goes on, commits one final per utterance by itself with its
    latency, and Stop ends the utterance in progress with a final too."""
    port, model = token_server
    first, second = speech.pick(2, 4.0, 6.0)
    wav, _ = speech.concat([first, second], tmp_path / "mic.wav", gap_s=2.0, lead_s=1.0)
    page = browser_for(f"http://127.0.0.1:{port}/?token={TOKEN}", wav).page
    page.evaluate(WATCH_PARTIALS)
    page.evaluate(CLICK, user_gesture=True)

    # 1 s of silence, the first utterance, a 2 s pause (the page sends `end` after 0.7 s), the second
    page.wait_for(n_finals(2), 40, "a final for each utterance")
    # the file loops: once the first utterance is heard again, take the picture and press Stop
    page.wait_for("document.querySelector('#partial').textContent.split(' ').length >= 4", 15,
                  "a partial of the looped file")
    shot = page.screenshot(tmp_path / "live-page.png", down_to="details")
    if out := os.environ.get("STT_SCREENSHOT_DIR"):
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(out) / "live-page.png")
    page.evaluate(CLICK, user_gesture=True)
    page.wait_for(f"document.querySelector('#toggle').textContent === 'Start microphone' && {n_finals(3)}",
                  20, "Stop's final")
    state = page.evaluate(READ_PAGE)

    assert state["error"] == "", state
    assert model in state["model"], state
    assert state["capture"] == "AudioWorklet", state
    assert any(len(p.split()) >= 3 for p in state["partials_seen"]), state["partials_seen"]
    finals = state["finals"]
    refs = speech.refs()
    pairs = [(refs[first], finals[0]["text"]), (refs[second], finals[1]["text"])]
    assert speech.wer(pairs) <= 0.25, pairs
    for final in finals[:3]:  # each final says how long after its `end` it came; Stop's included
        assert final["latency_ms"] is not None, final
        assert 0 < final["latency_ms"] < 10_000, final
        assert "ms after end" in final["meta"], final
    # Stop cut the loop's first utterance short: what was heard of it, from its beginning
    heard, said = speech.normalise(finals[2]["text"]).split(), speech.normalise(refs[first]).split()
    assert len(heard) >= 2, finals[2]
    assert heard[0] == said[0], finals[2]
    assert state["status"].startswith("Stopped."), state


@pytest.mark.timeout(120)
def test_live_page_fallback_capture_and_resampling(token_server: tuple[int, str], browser_for: Any,
                                                   tmp_path: Path) -> None:
    """Without AudioWorklet the page captures with a ScriptProcessor, and an AudioContext above the
    server's 48 kHz is resampled in the page: the transcript is as good."""
    port, _ = token_server
    (clip,) = speech.pick(1, 4.0, 6.0)
    wav, _ = speech.concat([clip], tmp_path / "mic.wav", gap_s=2.0, lead_s=1.0)
    page = browser_for(f"http://127.0.0.1:{port}/?token={TOKEN}&capture=scriptprocessor&rate=96000", wav).page
    page.evaluate(CLICK, user_gesture=True)
    page.wait_for(n_finals(1), 30, "a final")
    state = page.evaluate(READ_PAGE)
    page.evaluate(CLICK, user_gesture=True)

    assert state["capture"] == "ScriptProcessor", state
    assert "48 kHz, resampled from 96 kHz" in state["status"], state
    assert speech.wer([(speech.refs()[clip], state["finals"][0]["text"])]) <= 0.25, state


@pytest.mark.timeout(90)
def test_live_page_without_the_token_says_how_to_pass_it(token_server: tuple[int, str], browser_for: Any,
                                                         tmp_path: Path) -> None:
    """Opened without ?token= on a server that needs one, the page says the server is up (the bare
    /health: the model is the token holder's to know) and, when the session is refused, says how to
    pass the token instead of failing silently."""
    port, model = token_server
    wav = speech.write_wav(tmp_path / "mic.wav", speech.clip(speech.pick(1, 1.0, 3.0)[0]))
    page = browser_for(f"http://127.0.0.1:{port}/", wav).page
    page.evaluate(CLICK, user_gesture=True)
    error = page.wait_for("document.querySelector('#error').textContent", 10, "the refusal shown")
    assert "?token=" in error, error
    shown = page.evaluate("document.querySelector('#model').textContent")
    assert "up" in shown, shown
    assert "?token=" in shown, shown
    assert model not in shown, shown
    page.wait_for("document.querySelector('#toggle').textContent === 'Start microphone'", 5, "button")
