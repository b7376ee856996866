"""The built-in simulated server as a child process: the default target when no endpoint is given.

A separate process keeps the simulator's CPU off the client's event loop, so the client's own measurements and
self-check mean the same thing against the simulator as against a real server.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from dataclasses import dataclass

from loadgen.errors import EndpointError

_READY = re.compile(r"listening on (http://\S+)")


@dataclass
class SimulatorProcess:
    profile: str | None = None
    seed: int = 0
    args: tuple[str, ...] = ()
    ground_truth_path: str | None = None
    startup_timeout_s: float = 30.0
    base_url: str = ""
    _proc: asyncio.subprocess.Process | None = None

    async def start(self) -> str:
        cmd = [
            sys.executable,
            "-m",
            "loadgen.sim",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--seed",
            str(self.seed),
        ]
        if self.profile:
            cmd += ["--profile", self.profile]
        if self.ground_truth_path:
            cmd += ["--ground-truth", self.ground_truth_path]
        cmd += list(self.args)
        self._proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self._proc.stdout is not None
        try:
            line = await asyncio.wait_for(self._proc.stdout.readline(), self.startup_timeout_s)
        except TimeoutError:
            await self.stop()
            raise EndpointError(
                f"the built-in simulator did not start within {self.startup_timeout_s:g} s"
            ) from None
        m = _READY.search(line.decode(errors="replace"))
        if not m:
            err = b""
            if self._proc.stderr is not None:
                try:
                    err = await asyncio.wait_for(self._proc.stderr.read(), 5)
                except TimeoutError:
                    err = b""
            await self.stop()
            last = err.decode(errors="replace").strip().splitlines()[-1:] or [
                line.decode(errors="replace").strip()
            ]
            raise EndpointError(f"the built-in simulator failed to start: {last[0]}")
        self.base_url = m.group(1)
        return self.base_url

    async def stop(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
