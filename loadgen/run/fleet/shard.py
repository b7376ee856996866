"""What one sender does, wherever it runs (this process, a local worker process or a Ray actor), the one interface
(``Fleet``) every kind of fleet offers the run, and the fleet of one (``InProcessFleet``).

A fleet of one is the plain run (``--workers 1``, the default): the sender runs on this process's event loop, its
records straight into ``requests.jsonl`` through the run's record tap. ``start`` runs its shard (the whole plan) as
a task that checks the server, warms up and waits for t0; ``go`` gives it t0; ``wait`` returns its outcome. Nothing
is staged and nothing merged.

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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from loadgen.analysis.selfcheck import SelfCheck
from loadgen.config import EndpointConfig, RunConfig
from loadgen.errors import ConfigError
from loadgen.plan.clock import RunClock
from loadgen.plan.planner import RequestPlan
from loadgen.records.record import RequestRecord, Scrubber
from loadgen.run.dispatch import DispatchStats
from loadgen.run.sender import STOP_GRACE_S, Sender, run_shard
from loadgen.run.stopping import AuthStop

__all__ = [
    "START_LEAD_NS",
    "Fleet",
    "InProcessFleet",
    "RecordWriter",
    "ShardJob",
    "ShardRun",
    "shard_jobs",
    "split_cap",
    "wait_bound_s",
    "where",
]


class RecordWriter(Protocol):
    def write(self, record: RequestRecord) -> None: ...


class Fleet(Protocol):
    """The senders of a run, whatever they are: one in this process (``InProcessFleet``), N local
    processes (``local.LocalFleet``) or N Ray actors (``ray_fleet.RayFleet``). The run (``loadgen.run.runner``) drives
    every kind the same way: ``start`` (each sender ready, infos back), ``start_clock`` (t0, once for all), ``go``,
    ``wait`` (each sender's outcome, None when lost), ``lost``; ``stop`` / ``cancel`` on Ctrl-C; ``close``."""

    kind: str  # "in-process", "local" or "ray": summary.json's senders.mode
    files: list[Path]  # the senders' staging files, merged into requests.jsonl at the end ([]: written there)

    async def start(self, jobs: list[ShardJob]) -> list[dict[str, Any]]: ...
    def start_clock(self, clock: RunClock) -> None: ...
    async def go(self, clock: RunClock) -> None: ...
    async def wait(self, bound_s: float | None = None) -> list[dict[str, Any] | None]: ...
    def lost(self) -> dict[int, str]: ...
    def stop(self) -> None: ...
    def cancel(self) -> None: ...
    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ShardJob:
    """Sender ``k`` of ``n``: its configuration (its share of ``--max-concurrency``), the endpoint, its shard, and
    the secrets its record sink masks (made once, by the driver, from the endpoint: ``results.folder.secret_scrubber``).
    """

    k: int
    n: int
    cfg: RunConfig
    endpoint: EndpointConfig
    plan: RequestPlan
    scrubber: Scrubber


def split_cap(cap: int | None, n: int) -> list[int | None]:
    """``--max-concurrency`` shared out over ``n`` senders so that the run's total stays ``cap``."""
    if cap is None:
        return [None] * n
    if cap < n:
        raise ConfigError(
            f"--max-concurrency {cap} cannot be shared by {n} senders (each needs a slot): use --workers {cap} "
            "or fewer"
        )
    return [cap // n + (1 if k < cap % n else 0) for k in range(n)]


def shard_jobs(
    cfg: RunConfig, endpoint: EndpointConfig, plan: RequestPlan, n: int, scrubber: Scrubber
) -> list[ShardJob]:
    """The plan cut into ``n`` shards (sender ``k`` takes requests ``i % n == k``), each with its share of
    ``--max-concurrency``."""
    caps = split_cap(cfg.schedule.max_concurrency, n)
    jobs = []
    for k in range(n):
        cfg_k = cfg if n == 1 else replace(cfg, schedule=replace(cfg.schedule, max_concurrency=caps[k]))
        jobs.append(ShardJob(k, n, cfg_k, endpoint, plan if n == 1 else plan.shard(k, n), scrubber))
    return jobs


def wait_bound_s(cfg: RunConfig, plan: RequestPlan) -> float | None:
    """How long after t0 a sender may still be sending: its last planned request plus its whole timeout, the stop
    grace and a minute. None where requests may queue (under --max-concurrency, or a closed loop): then each
    request is bounded by its own timeout and their number, not by a time after t0."""
    if cfg.schedule.max_concurrency is not None or not len(plan) or int(plan.offsets_ns[-1]) == 0:
        return None
    if plan.sessions is not None:  # conversations: a session's turns follow one another
        from loadgen.plan.sessions import last_turn_bound_s

        return last_turn_bound_s(plan, cfg.endpoint.timeout_s) + STOP_GRACE_S + 60.0
    return int(plan.offsets_ns[-1]) / 1e9 + cfg.endpoint.timeout_s + STOP_GRACE_S + 60.0


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
            "connection_note": self.sender.client.connection_note if self.sender is not None else None,
        }


START_LEAD_NS = (
    5_000_000  # t0 lies this far ahead, so the first planned send (offset 0) is not late by our setup
)


class InProcessFleet:
    """One sender on the running event loop."""

    kind = "in-process"

    def __init__(self, sink: RecordWriter) -> None:
        self.sink = sink
        self.files: list[Path] = []
        self.run: ShardRun | None = None
        self._task: asyncio.Task[dict[str, Any]] | None = None
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._t0: asyncio.Future[tuple[int, int]] | None = None

    async def start(self, jobs: list[ShardJob]) -> list[dict[str, Any]]:
        """The sender checks the server (a refusal raises here) and warms up; its info once ready to send."""
        (job,) = jobs
        loop = asyncio.get_running_loop()
        ready, t0 = loop.create_future(), loop.create_future()
        self._ready, self._t0 = ready, t0
        self.run = ShardRun(job, self.sink)

        async def before_t0(info: dict[str, Any]) -> tuple[int, int]:
            ready.set_result(info)
            return await t0

        self._task = loop.create_task(self.run.run(before_t0))
        await asyncio.wait({ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            self._task.result()  # the sender's own error (a LoadgenError: the server refused, ...)
        return [ready.result()]

    @property
    def stats(self) -> DispatchStats:
        """The sender's live counters (the live view reads them)."""
        assert self.run is not None and self.run.sender is not None, "start() first"
        return self.run.sender.stats

    def start_clock(self, clock: RunClock) -> None:
        clock.start(START_LEAD_NS)

    async def go(self, clock: RunClock) -> None:
        assert self._t0 is not None, "start() first"
        if not self._t0.done():
            self._t0.set_result((clock.t0_ns, clock.t0_unix_ns))

    async def wait(self, bound_s: float | None = None) -> list[dict[str, Any] | None]:
        """Until the sender has sent its plan and every request ended (each bounded by its own timeout)."""
        assert self._task is not None, "start() first"
        return [await self._task]

    def lost(self) -> dict[int, str]:
        return {}

    def in_flight(self) -> int:
        run = self.run
        return run.sender.stats.in_flight if run is not None and run.sender is not None else 0

    def stop(self) -> None:
        if self.run is not None:
            self.run.request_stop()  # before t0 too: go() follows, and the sender finds nothing to send

    def cancel(self) -> None:
        self.stop()
        if self.run is not None:
            self.run.cancel_in_flight()

    async def close(self) -> None:
        """The sender's task ended: cancelled where the run ends early (an error, a cancelled run)."""
        task = self._task
        if task is None:
            return
        if not task.done():
            self.cancel()
            task.cancel()
            await asyncio.wait({task})
        if not task.cancelled():
            task.exception()  # seen: an error the run already raised is not reported again at exit
