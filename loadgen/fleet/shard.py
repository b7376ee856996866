"""What one sender of a multi-sender run does, wherever it runs (a local worker process or a Ray actor).

``ShardRun.run`` sends the sender's shard of the plan with ``run_shard`` on the running event loop (its own loop
and its own connection pool), a self-check beside it, and the stop rule of a one-process run (the first requests
all refused with 401/403 stop it). Before t0 it reports ready through the ``ready`` callback, which returns t0 on
*this host's* monotonic clock (the driver's t0 itself on the same host; the driver's wall-clock start mapped
through the measured offset on another one). It returns one plain dict, the sender's outcome: its counters, its
self-check's raw samples (the verdict is the driver's, with the same limits for every sender), where it ran.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from loadgen.clock import RunClock
from loadgen.config import EndpointConfig, RunConfig
from loadgen.plan import RequestPlan
from loadgen.records import RequestRecord
from loadgen.selfcheck import SelfCheck
from loadgen.sender import Sender, run_shard
from loadgen.stopping import AuthStop


class RecordWriter(Protocol):
    def write(self, record: RequestRecord) -> None: ...


@dataclass(frozen=True, slots=True)
class ShardJob:
    """Sender ``k`` of ``n``: its configuration (its share of ``--max-concurrency``), the endpoint, its shard."""

    k: int
    n: int
    cfg: RunConfig
    endpoint: EndpointConfig
    plan: RequestPlan


def where() -> dict[str, Any]:
    """The host and process a sender runs in."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


class ShardRun:
    """One sender's shard, sent on the running loop; ``request_stop`` / ``cancel_in_flight`` from the same loop."""

    def __init__(self, job: ShardJob, sink: RecordWriter) -> None:
        self.job = job
        self.sink = sink
        self.clock = RunClock()
        self.stop = asyncio.Event()
        self.check = SelfCheck()
        self.auth = AuthStop(len(job.plan))
        self.sender: Sender | None = None

    def write(self, rec: RequestRecord) -> None:
        """Every finished record: to the sink (which scrubs and serialises it), then the stop rule."""
        self.sink.write(rec)
        if self.auth.observe(rec):
            self.stop.set()

    def _started(self, sender: Sender) -> None:
        self.sender = sender

    def request_stop(self) -> None:
        self.stop.set()

    def cancel_in_flight(self) -> None:
        self.stop.set()
        if self.sender is not None:
            self.sender.cancel_in_flight()

    def progress(self) -> dict[str, int]:
        d = self.sender.dispatcher if self.sender is not None else None
        if d is None:
            return {"sent": 0, "done": 0, "errors": 0, "in_flight": 0}
        s = d.stats
        return {"sent": s.sent, "done": s.done, "errors": s.errors, "in_flight": s.in_flight}

    async def run(self, ready: Callable[[dict[str, Any]], Awaitable[tuple[int, int]]]) -> dict[str, Any]:
        """Send the shard; ``ready(info)`` is awaited before t0 and returns (t0_ns, t0_unix_ns) on this host."""
        loop = asyncio.get_running_loop()
        check_stop = asyncio.Event()
        check_task: asyncio.Task[None] | None = None

        async def before_t0() -> None:
            nonlocal check_task
            assert self.sender is not None
            info = {
                **where(),
                "model": self.sender.client.model,
                "read_stamps": getattr(self.sender.client, "stamp_source", None),
            }
            t0_ns, t0_unix_ns = await ready(info)
            self.clock.start_at(t0_ns, t0_unix_ns)
            self.check.t0_ns, self.check.phase = t0_ns, self.sender.phase
            check_task = loop.create_task(self.check.run(check_stop))

        job = self.job
        try:
            stats = await run_shard(
                job.cfg,
                job.plan,
                self.clock,
                self,  # type: ignore[arg-type]  # a sink: write(record)
                endpoint=job.endpoint,
                stop=self.stop,
                before_t0=before_t0,
                started=self._started,
            )
        finally:
            check_stop.set()
            if check_task is not None:
                await check_task
        c = self.check
        return {
            "k": job.k,
            **where(),
            "planned": len(job.plan),
            "sent": stats.sent,
            "done": stats.done,
            "errors": stats.errors,
            "stopped_early": stats.stopped_early,
            "spin_s": stats.spin_ns / 1e9,
            "stopped": self.auth.reason,
            "selfcheck": c.to_dict(),
        }
