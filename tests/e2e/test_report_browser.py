"""The report's page in a real browser: headless Chromium opens ``index.html`` from the file
system, every image loads, nothing is fetched from the network, the console stays free of
errors, and a full-page screenshot is taken.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: file
descriptors 3 and 4, JSON messages ending in NUL), with the standard library only. The test
runs when ``chromium`` is on PATH (Debian's package) and is skipped, saying so, otherwise.

Run as a script, it makes the README's screenshots of a report:
``python tests/e2e/test_report_browser.py demo/out/report/index.html docs/report-overview.png
0 1500`` (the page from y 0, 1500 pixels tall, 1280 wide).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
WIDTH = 1280


class Browser:
    """A headless Chromium on a DevTools pipe, with one page; every error it reports kept."""

    def __init__(self, executable: str, timeout: float = 60.0) -> None:
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        to_chrome, self._write = os.pipe()
        self._read, from_chrome = os.pipe()
        # Chrome reads fd 3 and writes fd 4; bash puts the pipe's ends there and execs it (no
        # preexec_fn in a process that may run threads). Copies above 9 first, so that
        # "3<&N 4>&M" cannot overwrite one end with the other (bash, not sh: dash takes
        # single-digit descriptors only).
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_chrome, from_chrome)]
        for fd in (to_chrome, from_chrome):
            os.close(fd)
        to_chrome, from_chrome = ends
        moved = f"3<&{to_chrome} 4>&{from_chrome} {to_chrome}<&- {from_chrome}>&-"
        args = [*FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-pipe"]
        self.process = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" {moved}', executable, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(to_chrome, from_chrome),
        )
        os.close(to_chrome)
        os.close(from_chrome)
        self.deadline = time.monotonic() + timeout
        self.errors: list[str] = []
        self.requests: list[str] = []
        self._buffer = b""
        self._next = 0
        self._session: str | None = None
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        self._session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        )

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a command; wait for its answer, taking note of the events on the way."""
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if self._session is not None:
            message["sessionId"] = self._session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            self._note(reply)

    def wait(self, event: str) -> None:
        while True:
            message = self._receive()
            self._note(message)
            if message.get("method") == event:
                return

    def _receive(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = self.deadline - time.monotonic()
            ready, _, _ = select.select([self._read], [], [], max(left, 0))
            if not ready:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium ended (exit status {self.process.poll()})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(line)
        return message

    def _note(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            texts = [str(a.get("value", a.get("description", ""))) for a in params["args"]]
            self.errors.append(f"console.{params['type']}: {' '.join(texts)}")
        elif method == "Runtime.exceptionThrown":
            self.errors.append(f"exception: {params['exceptionDetails'].get('text')}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            self.errors.append(f"{entry['source']}: {entry['text']} {entry.get('url', '')}")
        elif method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])

    def open(self, url: str) -> None:
        self.call("Page.navigate", {"url": url})
        self.wait("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        answer = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return answer["result"].get("value")

    def screenshot(self, top: int = 0, height: int | None = None) -> bytes:
        """A PNG of the page from ``top``, ``height`` pixels tall (default: to its end)."""
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        height = height or int(size["height"]) - top
        clip = {"x": 0, "y": top, "width": WIDTH, "height": height, "scale": 1}
        shot = self.call(
            "Page.captureScreenshot",
            {"format": "png", "clip": clip, "captureBeyondViewport": True},
        )
        return base64.b64decode(shot["data"])

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._write)
        os.close(self._read)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


IMAGES = "[...document.images].map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])"


@pytest.fixture(scope="module")
def report_page(small_download: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from imagenet_prep import BuildConfig, build
    from imagenet_prep.cli import main

    out = tmp_path_factory.mktemp("browser") / "out"
    config = BuildConfig(
        source=small_download,
        output=out,
        formats=("imagefolder",),
        train_shards=2,
        validation_shards=1,
        workers=1,
    )
    build(config)
    assert main(["report", str(out), "--workers", "1", "--contact-sheets", "2", "--quiet"]) == 0
    return out / "report" / "index.html"


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not on PATH (Debian: apt-get install chromium)"
)
def test_chromium_shows_the_page_with_no_errors(report_page: Path, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    with Browser(CHROMIUM) as browser:
        browser.open(report_page.as_uri())
        images = browser.evaluate(IMAGES)
        title = browser.evaluate("document.title")
        shot = browser.screenshot()
        errors, requests = browser.errors, browser.requests
    assert errors == []
    assert all(url.startswith("file://") for url in requests), requests
    assert len(images) >= 12
    assert [src for src, complete, width in images if not complete or width == 0] == []
    assert title.startswith("imagenet-prep report")
    (tmp_path / "page.png").write_bytes(shot)
    from PIL import Image

    with Image.open(tmp_path / "page.png") as picture:
        assert picture.width == WIDTH and picture.height > 3000
        low, high = picture.convert("L").getextrema()
        assert high - low > 100  # drawn, not blank


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not on PATH (Debian: apt-get install chromium)"
)
def test_the_check_sees_a_missing_image_and_a_console_error(tmp_path: Path) -> None:
    """The errors above would be seen: a page with both is caught."""
    assert CHROMIUM is not None
    page = tmp_path / "index.html"
    page.write_text('<!DOCTYPE html><img src="gone.png"><script>console.error("broken")</script>')
    with Browser(CHROMIUM) as browser:
        browser.open(page.as_uri())
        errors = browser.errors
    assert any("console.error: broken" in e for e in errors), errors
    assert any("gone.png" in e for e in errors), errors


if __name__ == "__main__":  # python tests/e2e/test_report_browser.py PAGE PNG [TOP HEIGHT]
    page, png = Path(sys.argv[1]), Path(sys.argv[2])
    top, tall = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (0, None)
    with Browser(CHROMIUM or "chromium") as browser:
        browser.open(page.resolve().as_uri())
        png.write_bytes(browser.screenshot(top, tall))
        if browser.errors:
            sys.exit("\n".join(browser.errors))
