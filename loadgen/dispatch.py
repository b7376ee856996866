"""Pacing: send each request at its planned absolute time, whatever is in flight (open loop).

uvloop's timers tick in whole milliseconds, so a plain ``sleep`` until the deadline lands up to ~1 ms late.
The dispatcher sleeps until ~1.5 ms before a deadline, then yields to the event loop (``sleep(0)``) until the
deadline passes: stream reads keep being served while it waits, and the send is sub-millisecond accurate. Time
spent in that short spin is measured and reported so that the client's CPU figure can be read honestly.
Requests due at the same instant go out in one pass. A request that must wait for a concurrency slot keeps its
intended start; the wait is its queue time, not send lag.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from time import perf_counter_ns

import numpy as np

from loadgen.client import StreamingClient
from loadgen.records import RequestRecord
from loadgen.workload.spec import RequestSpec

_SPIN_NS = 1_500_000


@dataclass(slots=True)
class DispatchStats:
    sent: int = 0
    done: int = 0
    errors: int = 0
    in_flight: int = 0
    waiting_for_slot: int = 0
    spin_ns: int = 0
    stopped_early: bool = False


async def wait_until(deadline_ns: int, stats: DispatchStats) -> None:
    """Return at or just after ``deadline_ns`` (absolute perf_counter_ns), yielding to other tasks meanwhile."""
    remaining = deadline_ns - perf_counter_ns()
    if remaining > _SPIN_NS:
        await asyncio.sleep((remaining - _SPIN_NS) / 1e9)
    start = perf_counter_ns()
    if start >= deadline_ns:
        return
    while perf_counter_ns() < deadline_ns:
        await asyncio.sleep(0)
    stats.spin_ns += perf_counter_ns() - start


class Dispatcher:
    """Owns pacing and the concurrency cap, nothing else."""

    def __init__(
        self,
        client: StreamingClient,
        t0_ns: int,
        offsets_ns: np.ndarray,
        specs: Sequence[RequestSpec],
        warmup: int,
        max_concurrency: int | None,
        on_done: Callable[[RequestRecord], None],
        stop: asyncio.Event,
        api: str = "chat",
    ) -> None:
        if len(specs) < len(offsets_ns):
            raise ValueError("fewer request specs than planned arrivals")
        self.client = client
        self.t0_ns = t0_ns
        self.offsets = [int(x) for x in offsets_ns]
        self.specs = specs
        self.warmup = warmup
        self.cap = max_concurrency
        self.on_done = on_done
        self.stop = stop
        self.api = api
        self.stats = DispatchStats()
        self.tasks: set[asyncio.Task[None]] = set()
        self._sem = asyncio.Semaphore(max_concurrency) if max_concurrency else None
        # A burst (every arrival at t=0) under a cap is a closed loop: the dispatcher itself waits for slots
        # instead of parking every request as a task.
        self._closed_loop = bool(max_concurrency) and len(self.offsets) > 1 and self.offsets[-1] == 0

    def _record(self, i: int) -> RequestRecord:
        spec = self.specs[i]
        return RequestRecord(
            index=i,
            warmup=i < self.warmup,
            api=self.api,
            tags=dict(spec.tags),
            max_tokens=spec.max_tokens if spec.max_tokens is not None else self.client.sampling.max_tokens,
            intended_ns=self.offsets[i],
        )

    async def _run_one(self, rec: RequestRecord, spec: RequestSpec, holds_slot: bool) -> None:
        stats = self.stats
        sem = self._sem
        try:
            if sem is not None and not holds_slot:
                stats.waiting_for_slot += 1
                try:
                    await sem.acquire()
                finally:
                    stats.waiting_for_slot -= 1
                rec.slot_ns = perf_counter_ns() - self.t0_ns
            stats.in_flight += 1
            try:
                await self.client.execute(spec, rec)
            finally:
                stats.in_flight -= 1
                if sem is not None:
                    sem.release()
        except asyncio.CancelledError:
            if rec.status == "ok":
                rec.status = "cancelled"
                rec.error_kind = "cancelled"
                rec.error_message = "run interrupted before the request was sent"
            self._finish(rec)
            raise
        self._finish(rec)

    def _finish(self, rec: RequestRecord) -> None:
        self.stats.done += 1
        if rec.status != "ok":
            self.stats.errors += 1
        self.on_done(rec)

    async def run(self) -> None:
        """Dispatch every planned request (or until ``stop`` is set); returns once all are sent, not finished."""
        t0 = self.t0_ns
        stats = self.stats
        loop = asyncio.get_running_loop()
        for i, off in enumerate(self.offsets):
            if self.stop.is_set():
                stats.stopped_early = True
                break
            deadline = t0 + off
            if perf_counter_ns() < deadline:
                await wait_until(deadline, stats)
                if self.stop.is_set():
                    stats.stopped_early = True
                    break
            rec = self._record(i)
            holds_slot = False
            if self._closed_loop:
                assert self._sem is not None
                await self._sem.acquire()
                holds_slot = True
                if self.stop.is_set():
                    self._sem.release()
                    stats.stopped_early = True
                    break
            rec.dispatched_ns = perf_counter_ns() - t0
            if holds_slot:
                rec.slot_ns = rec.dispatched_ns
            stats.sent += 1
            task = loop.create_task(self._run_one(rec, self.specs[i], holds_slot))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def drain(self, grace_s: float = math.inf) -> int:
        """Wait for in-flight requests; after ``grace_s`` cancel the rest (they are recorded as cancelled)."""
        if not self.tasks:
            return 0
        pending = set(self.tasks)
        timeout = None if math.isinf(grace_s) else grace_s
        done, pending = await asyncio.wait(pending, timeout=timeout)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        return len(pending)
