"""The sender as a Ray actor: a shard of the plan sent from a node of a Ray cluster.

The actor is a threaded actor (Ray runs its methods on a small thread pool) that keeps its own event loop (uvloop)
on a thread of its own, for as long as it lives: the shard's client, connections and dispatcher live on that loop,
and the methods the driver calls only hand things to it (``call_soon_threadsafe``) or read what it produced, so
the driver can poll and stop it while it sends.

``prepare`` measures the actor's clock offset to the driver (Cristian's method, ``clocksync``: round trips to a
``ClockReference`` actor placed on the driver's node, which reads the driver host's wall clock), then starts the
shard on the loop and returns once it is ready to send. ``start(S)`` gives the run's start as the driver's
wall-clock instant ``S``; the actor maps it onto its own monotonic clock (``S - offset``) and sends its shard from
there. ``take`` hands over the records finished since the last call (JSON lines, scrubbed) and, at the end, the
sender's outcome with the offset measured once more (the drift over the run).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
import time
from collections import deque
from time import perf_counter_ns
from typing import Any

from loadgen.records.record import RequestRecord, Scrubber
from loadgen.run.fleet.clocksync import DEFAULT_ROUNDS, ClockOffset, measure
from loadgen.run.fleet.shard import ShardJob, ShardRun, where

__all__ = ["BatchSink", "ClockReference", "SenderActor"]


class ClockReference:
    """Placed on the driver's node: the driver host's wall clock, for the senders' round trips."""

    def now(self) -> int:
        return time.time_ns()


class BatchSink:
    """Records as JSON lines, kept until ``take``: written on the sender's loop, taken from a Ray thread.

    A deque: ``append`` and ``popleft`` are atomic, so no line is lost between a write and a take (swapping a list
    could lose one appended to the old list after the swap)."""

    def __init__(self, scrubber: Scrubber | None) -> None:
        self._lines: deque[bytes] = deque()
        self._scrubber = scrubber if scrubber else None
        self.count = 0

    def write(self, record: RequestRecord) -> None:
        if self._scrubber is not None:
            self._scrubber.record(record)
        self._lines.append(record.to_json() + b"\n")
        self.count += 1

    def take(self) -> bytes:
        q = self._lines
        return b"".join(q.popleft() for _ in range(len(q)))


class SenderActor:
    """One sender of a run, as a Ray actor (wrapped with ``ray.remote`` by the driver)."""

    def __init__(self, job: ShardJob) -> None:
        self.job = job
        self.sink = BatchSink(job.scrubber)
        if os.environ.get("LOADGEN_NO_UVLOOP"):
            self.loop = asyncio.new_event_loop()
        else:
            import uvloop

            self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self._loop_main, name="loadgen-sender-loop", daemon=True)
        self._thread.start()
        self.offset: ClockOffset | None = None
        self.run: ShardRun | None = None
        self._ready: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        self._start: asyncio.Future[int] | None = None
        self._main_future: concurrent.futures.Future[dict[str, Any]] | None = None
        self._clock_ref: Any = None
        self._reported = False

    def _loop_main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def where(self) -> dict[str, Any]:
        import ray

        ctx = ray.get_runtime_context()
        return {**where(), "node_id": ctx.get_node_id(), "node_ip": ray.util.get_node_ip_address()}

    def _measure(self) -> ClockOffset:
        import ray

        ref = self._clock_ref
        return measure(lambda: ray.get(ref.now.remote()), DEFAULT_ROUNDS)

    def prepare(self, clock_ref: Any, timeout_s: float) -> dict[str, Any]:
        """Measure the clock offset, then check the server and warm up; returns once ready to send."""
        self._clock_ref = clock_ref
        self.offset = self._measure()
        self._main_future = asyncio.run_coroutine_threadsafe(self._main(), self.loop)
        concurrent.futures.wait(
            [self._ready, self._main_future], timeout_s, return_when=concurrent.futures.FIRST_COMPLETED
        )
        if self._ready.done():
            return {**self._ready.result(), **self.where(), "clock": self.offset.as_dict()}
        if self._main_future.done():
            exc = self._main_future.exception()
            raise RuntimeError(str(exc) if exc is not None else "the sender ended before it was ready")
        raise TimeoutError(f"not ready to send within {timeout_s:g} s")

    async def _main(self) -> dict[str, Any]:
        self._start = self.loop.create_future()
        self.run = ShardRun(self.job, self.sink)
        return await self.run.run(self._await_start)

    async def _await_start(self, info: dict[str, Any]) -> tuple[int, int]:
        self._ready.set_result(info)
        assert self._start is not None and self.offset is not None
        start_unix_ns = await self._start
        return self.offset.to_local(start_unix_ns), start_unix_ns

    def start(self, start_unix_ns: int) -> int:
        """Send from the driver's wall-clock instant ``start_unix_ns``; returns how far ahead of it this was (ns)."""
        assert self.offset is not None

        def go() -> None:
            if self._start is not None and not self._start.done():
                self._start.set_result(int(start_unix_ns))

        self.loop.call_soon_threadsafe(go)
        return self.offset.to_local(int(start_unix_ns)) - perf_counter_ns()

    def take(self) -> dict[str, Any]:
        """Records finished since the last call; at the end also the outcome (or the error that ended it)."""
        fut = self._main_future
        finished = (
            fut is not None and fut.done()
        )  # before taking: every record of a finished run is taken now
        out: dict[str, Any] = {"lines": self.sink.take(), "finished": finished, "records": self.sink.count}
        run = self.run
        out["progress"] = run.progress() if run is not None else {}
        if finished and not self._reported:
            assert fut is not None
            self._reported = True
            exc = fut.exception()
            if exc is not None:
                out["error"] = f"{type(exc).__name__}: {exc}"
            else:
                outcome = dict(fut.result())
                with contextlib.suppress(Exception):  # the drift over the run; the driver may be busy
                    end = self._measure()
                    outcome["clock_end"] = end.as_dict()
                out["outcome"] = outcome
        return out

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._stop, False)

    def cancel(self) -> None:
        self.loop.call_soon_threadsafe(self._stop, True)

    def _stop(self, cancel: bool) -> None:
        if self._start is not None and not self._start.done():
            self._start.set_exception(RuntimeError("stopped before t0"))
        if self.run is not None:
            if cancel:
                self.run.cancel_in_flight()
            else:
                self.run.request_stop()
