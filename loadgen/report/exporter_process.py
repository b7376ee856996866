"""The run's side of ``--metrics-port``: starts the exporter's child process (``loadgen.report.exporter``), tells
it now and then how many requests are in flight, and tells it when every record is on disk.

The child reads the records from the files the run writes anyway, so the client's only cost is one short line to
the child's stdin every ``REPORT_S``: nothing on the stamping path, nothing on the client's GIL or CPU account.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from loadgen.errors import ConfigError, LoadgenError
from loadgen.scrape.child import JsonLineChild

log = logging.getLogger(__name__)

REPORT_S = 0.5
START_TIMEOUT_S = 60.0  # a cold start imports numpy and prometheus_client; a busy machine takes seconds
FINISH_TIMEOUT_S = 30.0


class ExporterProcess(JsonLineChild):
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
        self._reporter: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            line = await self._spawn("loadgen.report.exporter", self.args, START_TIMEOUT_S)
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
        if self._proc is None:
            return
        try:
            line = await self._read_line(FINISH_TIMEOUT_S)
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
