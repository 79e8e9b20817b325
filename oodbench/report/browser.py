"""Open a report in headless Chromium over the DevTools protocol: console messages, network
requests, and a full-page screenshot.

Used by the browser test (the report must render with no console errors and no network
requests) and by ``oodbench report --screenshot``. Needs a Chromium binary (Debian's
``chromium`` package) and the ``websocket-client`` package (the ``browser`` extra).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from oodbench.errors import ConfigError
from oodbench.extras import require_extra

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
#: flags that keep a headless Chromium from reaching out on its own (updates, sync, field trials)
QUIET_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-default-apps", "--hide-scrollbars", "--mute-audio")


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageVisit:
    """What loading one page produced."""

    console: list[dict] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    screenshot: bytes | None = None

    @property
    def errors(self) -> list[str]:
        found = [m["text"] for m in self.console if m.get("level") in {"error", "warning"}]
        return found + self.exceptions

    @property
    def network_requests(self) -> list[str]:
        """Requests that would leave the machine (anything but file: and data: URLs)."""
        return [url for url in self.requests if not url.startswith(("file:", "data:", "about:"))]


class _DevTools:
    def __init__(self, url: str) -> None:
        import websocket

        self.socket = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"DevTools {method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def drain(self, seconds: float) -> None:
        self.socket.settimeout(0.2)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.events.append(json.loads(self.socket.recv()))
            except Exception:  # a receive timeout: no event pending
                continue
        self.socket.settimeout(60)


class Tab:
    """A page open in headless Chromium: run script in it, read what it logged and requested, take a screenshot."""

    def __init__(self, devtools: _DevTools, width: int) -> None:
        self.devtools, self.width = devtools, width

    def evaluate(self, expression: str, settle: float = 0.0):
        """The value of a JavaScript expression in the page (JSON-able values); ``settle``: seconds to keep
        collecting the page's events afterwards (a click that navigates)."""
        result = self.devtools.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"script failed in the page: {result['exceptionDetails'].get('text')} ({expression[:80]})")
        if settle:
            self.devtools.drain(settle)
        return result.get("result", {}).get("value")

    def record(self) -> PageVisit:
        """Console messages, exceptions and requests since the page was opened."""
        result = PageVisit()
        for event in self.devtools.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                result.console.append({"level": params.get("type"), "text": text})
            elif method == "Log.entryAdded":
                entry = params.get("entry", {})
                result.console.append({"level": entry.get("level"), "text": entry.get("text", "")})
            elif method == "Runtime.exceptionThrown":
                result.exceptions.append(params.get("exceptionDetails", {}).get("text", "exception"))
            elif method == "Network.requestWillBeSent":
                result.requests.append(params.get("request", {}).get("url", ""))
        return result

    def screenshot(self) -> bytes:
        """A PNG of the whole page."""
        size = self.devtools.call("Page.getLayoutMetrics")["cssContentSize"]
        self.devtools.call("Emulation.setDeviceMetricsOverride", width=self.width, height=int(size["height"]) + 1,
                           deviceScaleFactor=1, mobile=False)
        shot = self.devtools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        return base64.b64decode(shot["data"])


@contextmanager
def browse(page: Path, width: int = 1400) -> Iterator[Tab]:
    """``page`` loaded in headless Chromium (its events collected for 3 s), closed on exit."""
    require_extra("websocket", "browser", "opening a report in Chromium (--screenshot)")
    chromium = find_chromium()
    if chromium is None:
        raise ConfigError("no Chromium found", "install it (Debian: apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="oodbench-chromium-")
    process = subprocess.Popen([chromium, *QUIET_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                                f"--window-size={width},900", "about:blank"], stderr=subprocess.PIPE, text=True)
    try:
        browser_url = None
        for line in process.stderr:
            if "DevTools listening on" in line:
                browser_url = line.split("DevTools listening on", 1)[1].strip()
                break
        if browser_url is None:
            raise RuntimeError("Chromium did not start its DevTools endpoint")
        browser = _DevTools(browser_url)
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        port_and_host = browser_url.split("/devtools/")[0]
        tab = _DevTools(f"{port_and_host}/devtools/page/{target}")
        for domain in ("Page", "Runtime", "Log", "Network"):
            tab.call(f"{domain}.enable")
        tab.call("Page.navigate", url=page.resolve().as_uri())
        tab.drain(3.0)
        yield Tab(tab, width)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(profile, ignore_errors=True)


def visit(page: Path, screenshot: bool = True, width: int = 1400) -> PageVisit:
    """Load ``page`` in headless Chromium and record console output, requests and a screenshot."""
    with browse(page, width) as tab:
        result = tab.record()
        if screenshot:
            result.screenshot = tab.screenshot()
        return result
