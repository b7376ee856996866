"""Pacing: send each request at its planned absolute time, whatever is in flight (open loop).

uvloop's timers tick in whole milliseconds (a ``sleep`` lands up to ~1 ms early or late), so on Linux the
dispatcher arms a ``timerfd`` (CLOCK_MONOTONIC, the clock ``perf_counter_ns`` reads, absolute expiry in ns) that the
event loop watches like any socket: the loop wakes within microseconds of the deadline, keeps serving stream reads
meanwhile, and burns no CPU waiting. It is armed ~100 µs early and the rest is a few ``sleep(0)`` passes. Where no
timerfd is available it sleeps until ~1.5 ms before a deadline and then yields with ``sleep(0)`` until it passes.
Time spent in those short spins is measured and reported so that the client's CPU figure can be read honestly.
While requests are in flight the garbage collector is kept out of the way: objects that exist when dispatch starts,
and every 1,000 sent and every 1,000 finished requests what has survived since (the streams in flight, the run's
records), are frozen out of collections (``gc.freeze()``, O(1)), the young-generation threshold is raised from 700
to 10,000, and no full (gen-2) pass runs, so the collector neither rescans the workload, setup, streams and records
on old-generation passes nor runs every 700 container allocations (a stream's decode makes ~5 per token); both
stalled the loop for tens of ms at 360 req/s, and a full pass over 10,000 open streams ~1 s once per sender.
``quiet_gc()`` is the context manager that does this and puts everything back in its ``finally``, so a dispatch that
raises cannot leave the collector frozen for the next run in the same process (a sweep). Requests due at the same
instant go out in one pass. A request that must wait for a concurrency slot keeps its intended start; the wait is
its queue time, not send lag, in both modes: under a cap with a finite rate the request is dispatched on time and
then waits in its own task (``slot_ns > dispatched_ns``); in a closed loop (``--rate inf`` with a cap) the
dispatcher itself waits for the slot before dispatching (``slot_ns <= dispatched_ns``), and the request has been
waiting since its intended start.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import sys
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from time import perf_counter_ns

import numpy as np

from loadgen.plan.clock import RunClock
from loadgen.records.record import RequestRecord
from loadgen.wire.client import StreamingClient
from loadgen.workload.spec import RequestSpec

__all__ = [
    "SPIN_NS",
    "TIMERFD_LEAD_NS",
    "DispatchStats",
    "Dispatcher",
    "TimerFd",
    "quiet_gc",
    "spin_until",
    "wait_until",
]

SPIN_NS = 1_500_000  # without a timerfd: sleep until this close to a deadline, then yield with sleep(0)
_GC_GEN0_THRESHOLD = 10_000  # while dispatching (CPython's default is 700); a gen-0 pass stays ~1 ms
# sent (and finished) requests between two gc.freeze(): O(1), and it resets the collector's counts, so the young
# generations never grow to every stream in flight (10,000 streams open before the first 1,000 had finished made
# the gen-1 and gen-2 passes that stalled each sender once per run)
_GC_FREEZE_EVERY = 1_000
_GC_NO_FULL_PASS = 1 << 30  # the gen-2 threshold while sending: gen-1 passes before a full one
TIMERFD_LEAD_NS = 100_000  # with a timerfd: wake this much early (its wake-up takes ~20-60 µs here), then sleep(0) to the deadline


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
    if remaining > SPIN_NS:
        await asyncio.sleep((remaining - SPIN_NS) / 1e9)
    await spin_until(deadline_ns, stats)


async def spin_until(deadline_ns: int, stats: DispatchStats) -> None:
    start = perf_counter_ns()
    if start >= deadline_ns:
        return
    while perf_counter_ns() < deadline_ns:
        await asyncio.sleep(0)
    stats.spin_ns += perf_counter_ns() - start


class TimerFd:
    """A CLOCK_MONOTONIC timerfd watched by the event loop: nanosecond-armed wake-ups without spinning (Linux)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        import ctypes

        class _Timespec(ctypes.Structure):
            _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

        class _Itimerspec(ctypes.Structure):
            _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]

        libc = ctypes.CDLL(None, use_errno=True)
        self._settime = libc.timerfd_settime
        self._settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.c_void_p]
        # CLOCK_MONOTONIC = 1, TFD_NONBLOCK | TFD_CLOEXEC = 0o4000 | 0o2000000
        fd = libc.timerfd_create(1, 0o4000 | 0o2000000)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self.fd = fd
        self._spec = _Itimerspec()
        self._ref = ctypes.byref(self._spec)
        self._loop = loop
        self._waiter: asyncio.Future[None] | None = None
        loop.add_reader(fd, self._fired)

    def _fired(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self.fd, 8)
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def sleep_until(self, deadline_ns: int) -> None:
        v = self._spec.it_value
        v.tv_sec, v.tv_nsec = divmod(deadline_ns, 1_000_000_000)
        # TFD_TIMER_ABSTIME = 1; an expiry already in the past fires at once
        self._waiter = w = self._loop.create_future()
        if self._settime(self.fd, 1, self._ref, None) != 0:
            self._waiter = None
            raise OSError("timerfd_settime failed")
        try:
            await w
        finally:
            self._waiter = None

    def wake(self) -> None:
        """End a ``sleep_until`` now (a nearer deadline came up: ``loadgen.run.conversation``)."""
        self._fired()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self.fd)
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _make_timerfd(loop: asyncio.AbstractEventLoop) -> TimerFd | None:
    if not sys.platform.startswith("linux") or os.environ.get("LOADGEN_NO_TIMERFD"):
        return None
    try:
        return TimerFd(loop)
    except (OSError, AttributeError, NotImplementedError):
        return None


_gc_quiet = (
    False  # True inside quiet_gc(): the dispatcher then freezes survivors every _GC_FREEZE_EVERY requests
)


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """Keep the garbage collector out of the way while requests are in flight; always restored on exit.

    Re-entrant: an inner use (a nested run) changes nothing and restores nothing.
    """
    global _gc_quiet
    if _gc_quiet:
        yield
        return
    saved = gc.get_threshold()
    gc.freeze()
    # no automatic full (gen-2) pass while sending: it would scan every stream in flight (10,000 streams: ~1 s in
    # one sender, once per run), and what it could free the next freeze keeps anyway
    gc.set_threshold(_GC_GEN0_THRESHOLD, saved[1], _GC_NO_FULL_PASS)
    _gc_quiet = True
    try:
        yield
    finally:
        _gc_quiet = False
        gc.set_threshold(*saved)
        gc.unfreeze()


class Dispatcher:
    """Owns pacing and the concurrency cap, nothing else.

    Sends ``specs[j]`` at ``clock.t0_ns + offsets_ns[j]`` as request ``indices[j]`` (default ``j``: a shard of a
    plan keeps its requests' global indices); requests with an index below ``warmup`` are warm-up. ``clock`` is
    the run's :class:`RunClock` (read when sending starts), or a t0 in ``perf_counter_ns``.
    """

    def __init__(
        self,
        client: StreamingClient,
        clock: RunClock | int,
        offsets_ns: np.ndarray,
        specs: Sequence[RequestSpec],
        warmup: int,
        max_concurrency: int | None,
        on_done: Callable[[RequestRecord], None],
        stop: asyncio.Event,
        api: str = "chat",
        indices: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        if len(specs) < len(offsets_ns):
            raise ValueError("fewer request specs than planned arrivals")
        self.client = client
        self.clock = RunClock.of(clock)
        # int64 arrays (8 bytes a request; a list of ints was 40): indexing one gives a Python int
        self.offsets = array("q", np.ascontiguousarray(offsets_ns, dtype=np.int64).tobytes())
        self.indices = array(
            "q",
            np.ascontiguousarray(
                np.arange(len(self.offsets)) if indices is None else indices, np.int64
            ).tobytes(),
        )
        self.specs = specs
        self.warmup = warmup
        self.cap = max_concurrency
        self.on_done = on_done
        self.stop = stop
        self.api = api
        self.stats = DispatchStats()
        self.tasks: set[asyncio.Task[None]] = set()
        self._tfd: TimerFd | None = None
        self._prepared = False
        self._sending_over = False
        self._sem = asyncio.Semaphore(max_concurrency) if max_concurrency else None
        # A burst (every arrival at t=0) under a cap is a closed loop: the dispatcher itself waits for slots
        # instead of parking every request as a task.
        self._closed_loop = bool(max_concurrency) and len(self.offsets) > 1 and self.offsets[-1] == 0

    @property
    def t0_ns(self) -> int:
        return self.clock.t0_ns

    def _record(self, i: int) -> RequestRecord:
        spec = self.specs[i]
        index = self.indices[i]
        return RequestRecord(
            index=index,
            warmup=index < self.warmup,
            api=self.api,
            tags=dict(spec.tags),
            max_tokens=spec.max_tokens,  # final in the plan (its own budget, else --max-tokens)
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
                # granted after dispatch (slot_ns > dispatched_ns): an open-loop request queued behind the cap
                rec.slot_ns = max(perf_counter_ns() - self.t0_ns, (rec.dispatched_ns or 0) + 1)
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
        stats = self.stats
        stats.done += 1
        if rec.status != "ok":
            stats.errors += 1
        self.on_done(rec)
        if _gc_quiet and stats.done % _GC_FREEZE_EVERY == 0:
            gc.freeze()  # O(1): what has survived so far is never scanned again during the run

    def prepare(self) -> None:
        """Set up the wake-up timer (a timerfd through ctypes) now, so none of it happens after t0."""
        if not self._prepared:
            self._prepared = True
            if len(self.offsets) and max(self.offsets) > 0:
                self._tfd = _make_timerfd(asyncio.get_running_loop())

    async def run(self) -> None:
        """Dispatch every planned request (or until ``stop`` is set); returns once all are sent, not finished.

        Call ``prepare()`` and start the clock first, and run it inside ``quiet_gc()`` (``loadgen.run.runner`` does both).
        """
        self.prepare()
        try:
            await self._dispatch_all(self._tfd)
        finally:
            self._sending_over = True
            self.close()

    def phase(self) -> str:
        """Where the run is (the self-check names the phase of its longest stall)."""
        stats = self.stats
        if not self._sending_over:
            return "sending" if stats.sent else "before first send"
        return "draining" if stats.done < stats.sent else "after last end"

    def close(self) -> None:
        """Release the wake-up timer (idempotent)."""
        if self._tfd is not None:
            self._tfd.close()
            self._tfd = None

    async def _dispatch_all(self, tfd: TimerFd | None) -> None:
        t0 = self.clock.t0_ns
        stats = self.stats
        loop = asyncio.get_running_loop()
        for i, off in enumerate(self.offsets):
            if self.stop.is_set():
                stats.stopped_early = True
                break
            deadline = t0 + off
            if perf_counter_ns() < deadline:
                if tfd is None:
                    await wait_until(deadline, stats)
                else:
                    if deadline - perf_counter_ns() > TIMERFD_LEAD_NS:
                        await tfd.sleep_until(deadline - TIMERFD_LEAD_NS)
                    await spin_until(deadline, stats)
                if self.stop.is_set():
                    stats.stopped_early = True
                    break
            rec = self._record(i)
            holds_slot = False
            if self._closed_loop:
                assert self._sem is not None
                # every request is planned at t=0 and only `cap` slots exist: from the (cap+1)th on, each one
                # queues from its intended start until the dispatcher gets it a slot here. That wait is queue
                # time; slot_ns <= dispatched_ns tells metrics so (see metrics.client_delays)
                await self._sem.acquire()
                holds_slot = True
                if self.cap is not None and i >= self.cap:
                    rec.slot_ns = perf_counter_ns() - t0
                if self.stop.is_set():
                    self._sem.release()
                    stats.stopped_early = True
                    break
            rec.dispatched_ns = perf_counter_ns() - t0
            stats.sent += 1
            if _gc_quiet and stats.sent % _GC_FREEZE_EVERY == 0:
                gc.freeze()  # O(1): the objects of the streams in flight are never rescanned during the run
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
