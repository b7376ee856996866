"""The run's side of ``--metrics-port``: starts the exporter's child process (``loadgen.report.exporter``), tells
it now and then how many requests are in flight, and tells it when every record is on disk.

The child reads the records from the files the run writes anyway, so the client's only cost is one short line to
the child's stdin every ``REPORT_S``: nothing on the stamping path, nothing on the client's GIL or CPU account.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

import loadgen
from loadgen.errors import ConfigError, LoadgenError

log = logging.getLogger(__name__)

REPORT_S = 0.5
START_TIMEOUT_S = 60.0  # a cold start imports numpy and prometheus_client; a busy machine takes seconds
FINISH_TIMEOUT_S = 30.0


class ExporterProcess:
    """The exporter's child: ``start`` (a port that cannot be had is a ConfigError), ``count`` what is in flight,
    ``finish`` once every record is on disk, ``close`` (waits out the child's linger)."""

    def __init__(self, label: str, port: int, host: str, linger_s: float, files: Sequence[Path]) -> None:
        self.args = {
            "label": label,
            "port": port,
            "host": host,
            "linger_s": linger_s,
            "files": [str(f) for f in files],
        }
        self.linger_s = linger_s
        self.port: int | None = None
        self.records: int | None = None  # how many the child had folded at finish
        self._proc: asyncio.subprocess.Process | None = None
        self._reporter: asyncio.Task[None] | None = None

    async def start(self) -> None:
        root = str(
            Path(loadgen.__file__).resolve().parents[1]
        )  # the same loadgen, however the parent found it
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
        }
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "loadgen.report.exporter", orjson.dumps(self.args).decode(),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env, start_new_session=True,
            )  # fmt: skip
            assert self._proc.stdout is not None
            line = await asyncio.wait_for(self._proc.stdout.readline(), START_TIMEOUT_S)
            msg = orjson.loads(line or b"{}")
        except (OSError, TimeoutError, orjson.JSONDecodeError) as exc:
            await self.kill()
            raise LoadgenError(
                f"--metrics-port: the exporter process did not start: {type(exc).__name__}: {exc}"
            ) from None
        if msg.get("ready") is not True:
            await self.kill()
            raise ConfigError(msg.get("error") or f"--metrics-port: the exporter process said {line[:200]!r}")
        self.port = int(msg["port"])

    def count(self, what: str, source: Callable[[], int]) -> None:
        """Send ``{what: source()}`` every REPORT_S (``in_flight``, or a fleet's ``due``) until finish."""

        async def report() -> None:
            while True:
                self._send_count(what, source)
                await asyncio.sleep(REPORT_S)

        self._reporter = asyncio.get_running_loop().create_task(report())

    def _send_count(self, what: str, source: Callable[[], int]) -> None:
        try:
            n = int(source())
        except (NameError, AttributeError):  # what it counts does not exist yet
            n = 0
        self._send({what: n})

    async def finish(self, last: tuple[str, Callable[[], int]] | None = None) -> None:
        """Every record is on disk: the child folds the rest; its figures are the run's final ones."""
        if self._reporter is not None:
            self._reporter.cancel()
            self._reporter = None
        if last is not None:
            self._send_count(*last)
        self._send({"finish": True})
        proc = self._proc
        if proc is None or proc.stdout is None:
            return
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), FINISH_TIMEOUT_S)
            self.records = orjson.loads(line).get("records") if line else None
        except (TimeoutError, orjson.JSONDecodeError, AttributeError):
            log.warning("the exporter process did not finish folding")

    async def close(self) -> None:
        """Let the child serve the final figures until scraped once (at most its linger), then make sure it is gone."""
        proc = self._proc
        if proc is None:
            return
        if self._reporter is not None:
            await self.finish()
        if proc.stdin is not None:
            proc.stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), self.linger_s + FINISH_TIMEOUT_S)
        await self.kill()

    def _send(self, msg: dict[str, Any]) -> None:
        if self._proc is not None and self._proc.stdin is not None:
            with contextlib.suppress(OSError, RuntimeError):
                self._proc.stdin.write(orjson.dumps(msg) + b"\n")

    async def kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


async def open_exporter(
    output: Any, label: str, files: Sequence[Path], stack: contextlib.AsyncExitStack
) -> ExporterProcess | None:
    """The run's exporter from its OutputConfig (``metrics_port``, ``metrics_host``, ``metrics_linger_s``),
    started and closed with ``stack``; None when ``--metrics-port`` is off."""
    if output.metrics_port is None:
        return None
    exporter = ExporterProcess(
        label, output.metrics_port, output.metrics_host, output.metrics_linger_s, files
    )
    stack.push_async_callback(exporter.close)
    await exporter.start()
    return exporter


def due_counter(offsets_ns: np.ndarray, clock: Any) -> Callable[[], int]:
    """A fleet driver's count for the child: planned sends whose time has come (the driver sees no sender's
    dispatcher; in flight = due - finished, so a request still waiting for a slot counts as in flight)."""
    return lambda: int(np.searchsorted(offsets_ns, clock.now_ns(), side="right")) if clock.started else 0
