"""A small Chrome DevTools Protocol client for the browser test: the system ``chromium`` in headless
mode, driven over its DevTools websocket with the ``websockets`` package (already a dependency of the
environment). No driver binaries and no browser downloads, unlike Selenium Manager or Playwright.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """``$SECLAKE_CHROMIUM``, else the first of :data:`CANDIDATES` on ``PATH``."""
    explicit = os.environ.get("SECLAKE_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


class CdpError(RuntimeError):
    pass


class Browser:
    """One headless Chromium and one page (a flat-session target) in its own profile folder."""

    def __init__(self, binary: str, profile: Path, width: int = 1400, height: int = 900) -> None:
        from websockets.sync.client import connect

        self.proc = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
             "--remote-debugging-port=0", f"--user-data-dir={profile}", f"--window-size={width},{height}",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        url = None
        deadline = time.monotonic() + 60
        assert self.proc.stderr is not None
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                break
            if m := re.search(r"DevTools listening on (ws://\S+)", line):
                url = m.group(1)
                break
        if url is not None:  # keep draining stderr so chromium never blocks on a full pipe
            import threading

            threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()
        if url is None:
            self.close()
            raise CdpError("chromium did not report its DevTools websocket")
        self.ws = connect(url, max_size=64 * 1024 * 1024, open_timeout=30)
        self._ids = itertools.count(1)
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.page("Page.enable")
        self.page("Runtime.enable")
        self.page("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    # -- protocol
    def call(self, method: str, session: str | None = None, timeout: float = 60, **params: Any) -> dict:
        msg_id = next(self._ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CdpError(f"{method}: no answer in {timeout}s")
            reply = json.loads(self.ws.recv(timeout=left))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise CdpError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def page(self, method: str, **params: Any) -> dict:
        return self.call(method, session=self.session, **params)

    # -- helpers
    def goto(self, url: str) -> None:
        self.page("Page.navigate", url=url)
        self.wait("document.readyState === 'complete' && location.href !== 'about:blank'")

    def js(self, expression: str) -> Any:
        res = self.page("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise CdpError(f"script failed: {res['exceptionDetails'].get('exception', {}).get('description')}")
        return res.get("result", {}).get("value")

    def wait(self, expression: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = self.js(f"(function(){{try{{var v=({expression}); return (v instanceof Node) ? true : v;}}"
                               "catch(e){return null;}})()")
            except CdpError:
                last = None
            if last:
                return last
            time.sleep(0.2)
        raise CdpError(f"timed out waiting for {expression!r} (last {last!r}) at {self.js('location.href')}")

    def click(self, selector: str) -> None:
        """A real mouse click (press and release) at the middle of the element."""
        box = self.wait(
            f"(function(){{var e=document.querySelector({json.dumps(selector)}); if(!e) return null;"
            "e.scrollIntoView({block:'center'}); var r=e.getBoundingClientRect();"
            "return r.width>0 ? {x:r.left+r.width/2, y:r.top+r.height/2} : null;})()"
        )
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.page("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"], button="left", clickCount=1)

    def type(self, selector: str, text: str, clear: bool = True) -> None:
        """Focus the field and type ``text`` as keyboard input (React and plain forms both see it)."""
        self.wait(f"document.querySelector({json.dumps(selector)})")
        self.js(f"(function(){{var e=document.querySelector({json.dumps(selector)}); e.focus();"
                f"{'e.select && e.select();' if clear else ''} return true;}})()")
        if clear:
            self.page("Input.dispatchKeyEvent", type="keyDown", key="Backspace", code="Backspace",
                      windowsVirtualKeyCode=8)
            self.page("Input.dispatchKeyEvent", type="keyUp", key="Backspace", code="Backspace",
                      windowsVirtualKeyCode=8)
        self.page("Input.insertText", text=text)

    def screenshot(self, path: Path) -> Path:
        data = self.page("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def clear_cookies(self) -> None:
        self.page("Network.enable")
        self.page("Network.clearBrowserCookies")

    def close(self) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                try:
                    self.call("Browser.close", timeout=5)
                except Exception:  # noqa: BLE001 - the process is ended below anyway
                    pass
                self.ws.close()
        finally:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
