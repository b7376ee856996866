"""The /metrics poller in a child process, so scraping shares nothing with the client that stamps streams.

In a worker thread the parse still held the client's GIL: a 5 MB /metrics text took 1.7 s of Python per scrape
(its C calls, ``splitlines`` and regular-expression scans, run tens of ms without a switch), and every time the
event loop woke up it waited for the GIL; stream stamps were 37 ms late at p99 (62 ms per token) instead of 1-3
ms. A child process has its own GIL, its own event loop, its own CPU account (the client's self-check measures
the client alone) and a lower scheduling priority (nice +10: on a busy machine the client wins the CPU).
Samples are stamped on the same clock as the requests: ``perf_counter_ns`` is CLOCK_MONOTONIC, shared by every
process, minus the run's ``t0_ns``.

The conversation, one JSON line each way over the child's stdin and stdout::

    child  -> {"ready": true}                  imported, ready to poll (the parent waits for this before t0)
    parent -> {"t0_ns": N}                     start polling on the run's grid
    parent -> {"stop": true}                   (or stdin closing: the parent died) one last scrape, then
    child  -> {"stats": {...}, "info": {...}}  and the child exits

The child starts in a session of its own, so Ctrl-C in the terminal reaches only the parent, which ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

import orjson

from loadgen.records.files import SERVER_METRICS
from loadgen.scrape.child import JsonLineChild

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0  # a cold start imports aiohttp and prometheus_client; a busy machine takes seconds
STOP_TIMEOUT_S = 30.0  # the last scrape has its own timeout (at most 5 s); this only guards a hung child
NICE = 10


class PollerProcess(JsonLineChild):
    """Runs a ``MetricsPoller`` in a child process; ``stats`` and ``info`` are filled in by ``stop()``."""

    def __init__(
        self,
        urls: list[str],
        interval_s: float,
        *,
        sink_path: Path,
        dialect: str | None = None,
        timeout_s: float | None = None,
        gpu_metrics: str = "off",
    ) -> None:
        self.args = {
            "gpu_metrics": gpu_metrics,
            "urls": list(urls),
            "interval_s": interval_s,
            "sink_path": str(sink_path),
            "dialect": dialect,
            "timeout_s": timeout_s,
            "log_level": logging.getLogger().getEffectiveLevel(),
        }
        self.stats: dict[str, Any] = {}
        self.info: dict[str, dict[str, Any]] = {}
        self.error: str | None = None

    async def start(self) -> bool:
        """Start the child and wait until it is ready to poll; False (and ``error`` set) when it cannot."""
        try:
            line = await self._spawn("loadgen.scrape.process", self.args, START_TIMEOUT_S)
            if orjson.loads(line or b"{}").get("ready") is not True:
                raise RuntimeError(f"it said {line[:200]!r}")
        except (OSError, RuntimeError, TimeoutError, orjson.JSONDecodeError) as exc:
            self.error = f"the scraper process did not start: {type(exc).__name__}: {exc}"
            log.warning("%s; no server metrics for this run", self.error)
            await self.kill()
            return False
        return True

    def begin(self, t0_ns: int) -> None:
        """Start polling on the grid ``t0_ns + k * interval``."""
        self._send({"t0_ns": t0_ns})

    async def stop(self) -> None:
        """Let the child scrape once more and exit; collect its stats."""
        proc = self._proc
        if proc is None:
            return
        self._send({"stop": True})
        try:
            line = await self._read_line(STOP_TIMEOUT_S)
            result = orjson.loads(line) if line else None
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
        except (TimeoutError, orjson.JSONDecodeError) as exc:
            result = None
            self.error = f"the scraper process did not finish: {type(exc).__name__}"
        finally:
            await self.kill()
        if isinstance(result, dict):
            self.stats = result.get("stats") or {}
            self.info = result.get("info") or {}
        elif self.error is None:
            self.error = f"the scraper process exited with code {proc.returncode} before reporting"
        if self.error:
            log.warning("%s", self.error)
            self.stats.setdefault("error", self.error)


async def _child(args: dict[str, Any]) -> None:
    from loadgen.scrape.poller import MetricsPoller  # imported before "ready": nothing to import after t0

    with contextlib.suppress(OSError):
        os.nice(NICE)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    poller = MetricsPoller(
        args["urls"],
        args["interval_s"],
        sink_path=Path(args["sink_path"]),
        t0_ns=0,
        dialect=args["dialect"],
        timeout_s=args["timeout_s"],
        gpu_metrics=args.get("gpu_metrics", "off"),
    )
    out = sys.stdout.buffer
    out.write(b'{"ready":true}\n')
    out.flush()
    first = await reader.readline()
    msg = orjson.loads(first) if first.strip() else {}
    if "t0_ns" not in msg:
        return  # stopped before the run began
    poller.t0_ns = int(msg["t0_ns"])
    stop = asyncio.Event()
    task = asyncio.create_task(poller.run(stop))
    await reader.readline()  # {"stop": true}, or b"" when the parent is gone
    stop.set()
    await task
    out.write(orjson.dumps({"stats": poller.stats, "info": poller.info}) + b"\n")
    out.flush()


def main() -> None:
    args = orjson.loads(sys.argv[1])
    logging.basicConfig(level=args["log_level"], format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(_child(args))


def run_poller(cfg: Any, base_url: str, out_dir: Path) -> PollerProcess | None:
    """The scraper of a run (``cfg``: its RunConfig), or None under --no-scrape."""
    if not cfg.scrape.enabled:
        return None
    from loadgen.scrape.poller import default_metrics_url

    urls = list(cfg.scrape.urls) or [default_metrics_url(base_url)]
    return PollerProcess(urls, cfg.scrape.interval_s, sink_path=out_dir / SERVER_METRICS,
                         gpu_metrics=cfg.scrape.gpu_metrics)  # fmt: skip


if __name__ == "__main__":
    main()
