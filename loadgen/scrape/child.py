"""A helper process spoken to one JSON line each way: the scraper's poller (``loadgen.scrape.process``) and the
report's Prometheus exporter (``loadgen.report.exporter_process``) both run in one, so neither shares the client's
GIL, event loop or CPU account.

The child is ``python -m MODULE ARGS`` (ARGS: one JSON object) on the same loadgen as the parent, in a session of
its own, so Ctrl-C in the terminal reaches only the parent, which ends it. Each subclass speaks its own
conversation over the child's stdin and stdout; this class only spawns, reads a line, sends a line and kills.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import orjson

__all__ = ["JsonLineChild"]


class JsonLineChild:
    """Spawns ``python -m MODULE ARGS`` and speaks to it in JSON lines; ``kill`` makes sure it is gone."""

    _proc: asyncio.subprocess.Process | None = None

    async def _spawn(self, module: str, args: dict[str, Any], timeout_s: float) -> bytes:
        """Start the child and return its first line (b"" when it exited first); OSError or TimeoutError when not."""
        root = str(Path(__file__).resolve().parents[2])  # the same loadgen, however the parent found it
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
        }
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, orjson.dumps(args).decode(),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env, start_new_session=True,
        )  # fmt: skip
        return await self._read_line(timeout_s)

    async def _read_line(self, timeout_s: float) -> bytes:
        """The child's next line (b"" once it closed its stdout); TimeoutError after ``timeout_s``."""
        assert self._proc is not None and self._proc.stdout is not None
        return await asyncio.wait_for(self._proc.stdout.readline(), timeout_s)

    def _send(self, msg: dict[str, Any]) -> None:
        if self._proc is not None and self._proc.stdin is not None:
            with contextlib.suppress(OSError, RuntimeError):
                self._proc.stdin.write(orjson.dumps(msg) + b"\n")

    async def kill(self) -> None:
        """Make sure the child is gone (idempotent; the subclass's own ending first, for the child's last words)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
