"""Debian's headless Chromium with a fake microphone playing a WAV, driven over the DevTools protocol.

No driver and no new dependency: the browser is a child process (``Proc``), and the page is reached
through the DevTools HTTP endpoint (``/json/list``) and its WebSocket with the ``websockets`` sync
client. Chromium loops the WAV for as long as the page keeps the microphone open.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

from harness.procs import Proc
from harness.stt_client import http_get

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


class Page:
    """One page target over CDP: commands by id; events are kept for diagnostics (console, exceptions)."""

    def __init__(self, ws_url: str) -> None:
        self._stack = contextlib.ExitStack()
        self.ws: ClientConnection = self._stack.enter_context(connect(ws_url, max_size=None, proxy=None,
                                                                      open_timeout=10))
        self._next = 0
        self.console: list[str] = []

    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        self._next += 1
        ident = self._next
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if msg.get("id") == ident:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg.get("result", {})
                return result
            self._event(msg)

    def _event(self, msg: dict[str, Any]) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled":
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.console.append(f"console.{params.get('type')}: {args}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text")
            self.console.append(f"exception: {text}")
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            self.console.append(f"log.{entry.get('level')}: {entry.get('text')}")

    def evaluate(self, expression: str, *, user_gesture: bool = False) -> Any:
        """The value of a JS expression (promises awaited); a JS exception fails the caller."""
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True,
                        userGesture=user_gesture)
        if "exceptionDetails" in res:
            raise AssertionError(f"JS failed: {expression[:80]!r}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait_for(self, expression: str, timeout: float, what: str, poll: float = 0.1) -> Any:
        """Poll a JS expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {timeout} s")
            time.sleep(poll)

    def screenshot(self, path: Path, *, down_to: str | None = None, margin: int = 24) -> Path:
        """A PNG of the page; with ``down_to``, only from the top to that element's bottom edge."""
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": True}
        if down_to is not None:
            box = self.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(down_to)})"
                                ".getBoundingClientRect(); return [document.documentElement.clientWidth, "
                                "r.bottom + window.scrollY]; })()")
            params["clip"] = {"x": 0, "y": 0, "width": box[0], "height": box[1] + margin, "scale": 1}
        data = self.call("Page.captureScreenshot", **params)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        self._stack.close()


class Chromium:
    """A headless Chromium whose microphone plays ``wav`` (looped), opened on ``url``."""

    def __init__(self, url: str, wav: Path, *, window: tuple[int, int] = (800, 900)) -> None:
        exe = chromium_path()
        if exe is None:
            raise RuntimeError("chromium is not installed: run `make setup` (it installs Debian's chromium)")
        self.profile = Path(tempfile.mkdtemp(prefix="stt-chromium-"))
        # port 0 and the DevToolsActivePort file: no race for a free port with other tests on the machine
        self.proc = Proc([exe, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}",
                          f"--use-file-for-fake-audio-capture={wav}", "--remote-debugging-port=0",
                          f"--window-size={window[0]},{window[1]}", url], name="chromium")
        try:
            self.port = self._devtools_port(20)
            self.page = Page(self._page_ws_url(url, 20))
            for domain in ("Runtime", "Log", "Page"):
                self.page.call(f"{domain}.enable")
        except BaseException:
            self.proc.stop(5)
            shutil.rmtree(self.profile, ignore_errors=True)
            raise

    def _devtools_port(self, timeout: float) -> int:
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise RuntimeError(f"chromium exited early: {self.proc.output()[-2000:]}")
            lines = marker.read_text().splitlines() if marker.exists() else []
            if lines and lines[0].strip().isdigit():
                return int(lines[0])
            time.sleep(0.1)
        raise TimeoutError(f"chromium opened no DevTools port in {timeout} s: {self.proc.output()[-2000:]}")

    def _page_ws_url(self, url: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        page_url = url.split("?", maxsplit=1)[0]
        targets: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            status, _, body = http_get(self.port, "/json/list")
            targets = json.loads(body) if status == 200 else []
            for t in targets:
                if t.get("type") == "page" and t.get("url", "").startswith(page_url):
                    return str(t["webSocketDebuggerUrl"])
            time.sleep(0.1)
        raise TimeoutError(f"no page for {url} in /json/list within {timeout} s: {targets}")

    def stop(self) -> None:
        try:
            self.page.close()
        finally:
            self.proc.stop(5)
            shutil.rmtree(self.profile, ignore_errors=True)
