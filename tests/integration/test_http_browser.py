"""The status page and the gateway in a real browser: headless Chromium (Debian's
``chromium``, installed by scripts/test.sh) driven over the DevTools protocol.

The page is loaded, its script fills in the peer id from /api/status and the test reads
it from the rendered DOM; a screenshot is taken; a file added with ``p2pd add`` is fetched
through the gateway by the browser (its SHA-256 computed in the page) and by curl; a file
added while the page is open appears in its pins without a reload (the page polls).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest
import trio
from httpdaemon import HTTPDaemon
from trio_websocket import open_websocket_url

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CURL = shutil.which("curl")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CURL is None,
    reason="Chromium or curl is not installed (Debian packages `chromium`, `curl`; "
           "scripts/test.sh installs them when run as root)")
#: Where the screenshot is kept (P2PD_SCREENSHOT_DIR, else the test's tmp dir).
SHOT_DIR = os.environ.get("P2PD_SCREENSHOT_DIR")


class Browser:
    def __init__(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="p2pd-chromium-")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--disable-background-networking", "--mute-audio",
             "--window-size=1280,900", f"--user-data-dir={self.profile}",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        port = None
        for line in self.proc.stderr:
            if m := re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line):
                port = int(m.group(1))
                break
        if port is None:
            raise RuntimeError(f"chromium exited {self.proc.wait()} without a DevTools port")
        self.port = port

    def page_ws(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=10) as r:
            pages = [t for t in json.load(r) if t["type"] == "page"]
        return pages[0]["webSocketDebuggerUrl"]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """One DevTools connection to a page: ``call(method, **params)`` returns its result."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method: str, **params):
        n = next(self.ids)
        await self.ws.send_message(json.dumps({"id": n, "method": method, "params": params}))
        while True:
            msg = json.loads(await self.ws.get_message())
            if msg.get("id") == n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    async def evaluate(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True,
                                 returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")


async def test_the_status_page_renders_the_peer_id_and_the_gateway_serves_the_browser_and_curl(
        tmp_path):
    data = os.urandom(1_500_000) + b"the end"
    (tmp_path / "file.bin").write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    with HTTPDaemon() as daemon:
        cid = daemon.add(tmp_path / "file.bin")
        browser = Browser()
        try:
            async with open_websocket_url(browser.page_ws(), max_message_size=64 << 20) as ws:
                page = Page(ws)
                await page.call("Page.enable")
                await page.call("Page.navigate", url=daemon.http)
                rendered = ""
                with trio.fail_after(20):
                    while not rendered.startswith("12D3"):
                        await trio.sleep(0.1)
                        rendered = await page.evaluate(
                            "document.getElementById('peer-id')?.textContent || ''")
                assert rendered == daemon.peer_id
                pins = await page.evaluate("document.getElementById('pins').textContent")
                assert cid in pins
                shot = await page.call("Page.captureScreenshot", format="png")
                png = base64.b64decode(shot["data"])
                assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
                out = Path(SHOT_DIR or tmp_path) / "status-page.png"
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(png)
                got = await page.evaluate(f"""(async () => {{
                    const r = await fetch('/ipfs/{cid}');
                    const body = await r.arrayBuffer();
                    const digest = await crypto.subtle.digest('SHA-256', body);
                    return {{status: r.status, length: body.byteLength,
                             type: r.headers.get('content-type'),
                             sha: [...new Uint8Array(digest)]
                                  .map(b => b.toString(16).padStart(2, '0')).join('')}};
                }})()""")
                assert got == {"status": 200, "length": len(data),
                               "type": "application/octet-stream", "sha": want}
                # a range through the browser too
                tail = await page.evaluate(f"""(async () => {{
                    const r = await fetch('/ipfs/{cid}', {{headers: {{Range: 'bytes=-7'}}}});
                    return [r.status, await r.text()];
                }})()""")
                assert tail == [206, "the end"]
                # live: a pin added now shows up on the open page, not reloaded
                (tmp_path / "later.txt").write_bytes(b"added while the page is open\n")
                later = daemon.add(tmp_path / "later.txt")
                loaded_at = await page.evaluate("performance.timeOrigin")
                with trio.fail_after(15):
                    while later not in await page.evaluate(
                            "document.getElementById('pins').textContent"):
                        await trio.sleep(0.2)
                assert await page.evaluate("performance.timeOrigin") == loaded_at
                assert await page.evaluate("document.getElementById('state').textContent") \
                    == "live"
        finally:
            browser.close()
        fetched = subprocess.run([CURL, "-sSf", f"{daemon.http}ipfs/{cid}"],
                                 capture_output=True, timeout=60)
        assert fetched.returncode == 0, fetched.stderr
        assert hashlib.sha256(fetched.stdout).hexdigest() == want
