"""A minimal headless-Chromium driver over the DevTools protocol (aiohttp websockets; no extra dependency).

Used by the browser tests: open a local file, collect console errors and uncaught exceptions, evaluate
JavaScript, take screenshots. Chromium is Debian's ``chromium`` package (``/usr/bin/chromium``) or whatever
``LOADGEN_CHROMIUM`` points at.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


def find_chromium() -> str | None:
    env = os.environ.get("LOADGEN_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        p = shutil.which(name)
        if p:
            return p
    return None


class Browser:
    """One Chromium process with one page; ``async with Browser(path) as b: await b.open(url)``."""

    def __init__(self, executable: str, width: int = 1280, height: int = 900) -> None:
        self.executable = executable
        self.width, self.height = width, height
        self.proc: subprocess.Popen[bytes] | None = None
        self.profile = tempfile.mkdtemp(prefix="loadgen-chromium-")
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.errors: list[str] = []  # console errors, uncaught exceptions, failed loads
        self._reader: asyncio.Task[None] | None = None
        self._load = asyncio.Event()

    async def __aenter__(self) -> Browser:
        self.proc = subprocess.Popen(
            [
                self.executable,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={self.profile}",
                f"--window-size={self.width},{self.height}",
                "about:blank",
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        port = await asyncio.wait_for(asyncio.to_thread(self._devtools_port), 30)
        self.session = aiohttp.ClientSession()
        async with self.session.get(f"http://127.0.0.1:{port}/json/list") as r:
            targets = await r.json()
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = await self.session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        for method in ("Runtime.enable", "Log.enable", "Page.enable"):
            await self.send(method)
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=self.width,
            height=self.height,
            deviceScaleFactor=1,
            mobile=False,
        )
        return self

    def _devtools_port(self) -> int:
        assert self.proc is not None and self.proc.stderr is not None
        for raw in self.proc.stderr:
            m = re.search(rb"DevTools listening on ws://127\.0\.0\.1:(\d+)/", raw)
            if m:
                # keep draining stderr so Chromium never blocks on a full pipe
                threading.Thread(target=self._drain, daemon=True).start()
                return int(m.group(1))
        raise RuntimeError("chromium exited before opening its DevTools port")

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for _ in self.proc.stderr:
            pass

    async def __aexit__(self, *exc: object) -> None:
        if self._reader:
            self._reader.cancel()
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.profile, ignore_errors=True)

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data:
                fut = self.pending.pop(data["id"], None)
                if fut is not None and not fut.done():
                    if "error" in data:
                        fut.set_exception(RuntimeError(f"CDP error: {data['error']}"))
                    else:
                        fut.set_result(data.get("result", {}))
                continue
            self.events.append(data)
            method, params = data.get("method"), data.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                self.errors.append(f"console.{params['type']}: {args}")
            elif method == "Runtime.exceptionThrown":
                d = params.get("exceptionDetails", {})
                self.errors.append(f"uncaught: {d.get('exception', {}).get('description') or d.get('text')}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                e = params["entry"]
                self.errors.append(f"log: {e.get('text')} {e.get('url', '')}")
            elif method == "Page.loadEventFired":
                self._load.set()

    async def send(self, method: str, **params: Any) -> Any:
        assert self.ws is not None
        i = next(self.ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[i] = fut
        await self.ws.send_str(json.dumps({"id": i, "method": method, "params": params}))
        return await asyncio.wait_for(fut, 60)

    async def open(self, url: str, timeout: float = 30) -> None:
        self._load.clear()
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(self._load.wait(), timeout)
        await asyncio.sleep(0.2)  # let the page's own script finish

    async def eval(self, expression: str) -> Any:
        r = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"evaluate failed: {r['exceptionDetails']}")
        return r.get("result", {}).get("value")

    async def screenshot(
        self, path: Path, full_page: bool = True, clip: dict[str, float] | None = None
    ) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page or clip:
            if clip is None:
                size = await self.eval(
                    "({w: document.documentElement.scrollWidth, h: document.documentElement.scrollHeight})"
                )
                clip = {"x": 0, "y": 0, "width": size["w"], "height": size["h"]}
            params["clip"] = {**clip, "scale": 1}
            params["captureBeyondViewport"] = True
        r = await self.send("Page.captureScreenshot", **params)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(r["data"]))
        return path

    async def hover(self, x: float, y: float) -> None:
        await self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
