"""``--workers N``: N sender processes on this host, spawned (never forked), one pipe each to the driver.

Each worker is a fresh interpreter (multiprocessing's "spawn" context: a fork of a process that already runs an
event loop, the record writer's thread and the simulator's pipe threads would copy them half-way), with its own
uvloop event loop, its own connection pool and its own record file (``.senders/sender-K.jsonl``, written by a
thread as in a one-process run). The conversation over its pipe, one pickled tuple each way::

    worker -> ("ready", info)            imported, server checked, everything warmed: ready to send
    driver -> ("start", t0_ns, t0_unix)  the run's t0 on CLOCK_MONOTONIC, one for all (the same clock on this host)
    driver -> ("stop",)                  Ctrl-C: no new requests, in-flight ones get the grace period
    driver -> ("cancel",)                Ctrl-C again: cancel what is in flight now
    worker -> ("done", outcome)          every record is on disk (its file closed); then it exits
    worker -> ("error", message)         a setup failure (the server refused, ...): one line

Workers ignore SIGINT (it reaches the whole process group from a terminal): the driver alone decides, and tells
them. A driver that dies closes the pipes, and a worker that reads the end stops and cancels what it has in flight.
A worker that ends without "done" (killed, crashed) is lost: its file keeps what it had written.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import signal
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from loadgen.errors import EndpointError, LoadgenError
from loadgen.plan.clock import RunClock
from loadgen.records.record import RecordSink
from loadgen.results.merge import staging_files
from loadgen.run.fleet.shard import ShardJob, ShardRun

START_TIMEOUT_S = (
    120.0  # a spawned interpreter imports loadgen, checks the server and warms up: seconds when busy
)
EXIT_TIMEOUT_S = 10.0
START_LEAD_NS = 20_000_000  # t0 this far ahead of the "start" messages, plus PER_WORKER_LEAD_NS each
PER_WORKER_LEAD_NS = 5_000_000

__all__ = ["LocalFleet", "worker_process"]


class _NotStarted(Exception):
    """The driver stopped the run (or went away) before t0."""


def worker_process(conn: Connection, job: ShardJob, records_path: str) -> None:
    """A sender process's entry point (spawned): send the shard, report over ``conn``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if os.environ.get("LOADGEN_NO_UVLOOP"):
            asyncio.run(_worker(conn, job, records_path))
        else:
            import uvloop

            uvloop.run(_worker(conn, job, records_path))
    except (
        BaseException
    ) as exc:  # reported, then the process ends: the driver counts the sender lost otherwise
        with contextlib.suppress(OSError, ValueError):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


async def _worker(conn: Connection, job: ShardJob, records_path: str) -> None:
    loop = asyncio.get_running_loop()
    start: asyncio.Future[tuple[int, int]] = loop.create_future()
    fd = conn.fileno()
    with RecordSink(records_path, job.scrubber) as sink:
        run = ShardRun(job, sink)

        def not_started(why: str) -> None:
            if not start.done():
                start.set_exception(_NotStarted(why))

        def on_message() -> None:
            try:
                while conn.poll():
                    msg = conn.recv()
                    if msg[0] == "start" and not start.done():
                        start.set_result((int(msg[1]), int(msg[2])))
                    elif msg[0] == "stop":
                        run.request_stop()
                        not_started("stopped before t0")
                    elif msg[0] == "cancel":
                        run.cancel_in_flight()
                        not_started("stopped before t0")
            except (EOFError, OSError):  # the driver is gone: stop, cancel what is in flight
                loop.remove_reader(fd)
                run.cancel_in_flight()
                not_started("the driver went away before t0")

        async def ready(info: dict[str, Any]) -> tuple[int, int]:
            conn.send(("ready", info))
            return await start

        loop.add_reader(fd, on_message)
        try:
            try:
                outcome = await run.run(ready)
            except LoadgenError as exc:
                conn.send(("error", str(exc)))
                return
            except _NotStarted as exc:
                conn.send(("error", str(exc)))
                return
        finally:
            with contextlib.suppress(Exception):
                loop.remove_reader(fd)
    conn.send(("done", outcome))  # after the sink closed: every record is in the file


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """A child started meanwhile inherits SIGINT ignored (through exec), so a Ctrl-C while it imports cannot kill
    it before it ignores SIGINT itself."""
    try:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: the child ignores it itself, first thing
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


class _Worker:
    def __init__(self, k: int, proc: Any, conn: Connection, loop: asyncio.AbstractEventLoop) -> None:
        self.k, self.proc, self.conn = k, proc, conn
        self.ready: asyncio.Future[dict[str, Any]] = loop.create_future()
        self.done: asyncio.Future[dict[str, Any] | None] = loop.create_future()  # outcome, or None when lost
        self.lost: str | None = None
        self.error: str | None = None
        self.info: dict[str, Any] = {}


class LocalFleet:
    """N spawned sender processes on this host, all on the driver's CLOCK_MONOTONIC t0."""

    kind = "local"

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.files: list[Path] = []
        self.workers: list[_Worker] = []

    # -- setup ------------------------------------------------------------------------------------------------
    async def start(self, jobs: list[ShardJob], timeout_s: float = START_TIMEOUT_S) -> list[dict[str, Any]]:
        """Spawn every worker and wait until all are ready to send; their infos (host, pid, model)."""
        loop = asyncio.get_running_loop()
        ctx = mp.get_context("spawn")
        self.files = staging_files(self.out_dir, len(jobs))
        for job, path in zip(jobs, self.files, strict=True):
            parent, child = ctx.Pipe(duplex=True)
            proc = ctx.Process(
                target=worker_process,
                args=(child, job, str(path)),
                name=f"loadgen-sender-{job.k}",
                daemon=True,
            )
            with _sigint_ignored():
                proc.start()
            child.close()
            w = _Worker(job.k, proc, parent, loop)
            self.workers.append(w)
            loop.add_reader(parent.fileno(), self._on_message, w)
        pending = [w.ready for w in self.workers]
        try:
            await asyncio.wait_for(asyncio.gather(*pending), timeout_s)
        except TimeoutError:
            slow = [w.k for w in self.workers if not w.ready.done()]
            raise EndpointError(f"sender(s) {slow} were not ready within {timeout_s:g} s") from None
        for w in self.workers:
            w.info = {
                **w.ready.result(),
                "clock": {"offset_ns": 0, "uncertainty_ns": 0, "rtt_ns": 0, "rounds": 0},
            }
        return [w.info for w in self.workers]

    def _on_message(self, w: _Worker) -> None:
        try:
            while w.conn.poll():
                msg = w.conn.recv()
                kind = msg[0]
                if kind == "ready" and not w.ready.done():
                    w.ready.set_result(msg[1])
                elif kind == "done" and not w.done.done():
                    w.done.set_result(msg[1])
                elif kind == "error":
                    w.error = str(msg[1])
                    if not w.ready.done():
                        w.ready.set_exception(EndpointError(w.error))
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(w.conn.fileno())
            asyncio.get_running_loop().create_task(self._ended(w))

    async def _ended(self, w: _Worker) -> None:
        """The worker's end of the pipe closed: it exited, after "done" or not."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, w.proc.join, EXIT_TIMEOUT_S)
        if w.done.done():
            return
        code = w.proc.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        w.lost = f"its process ended without reporting ({how})" + (f": {w.error}" if w.error else "")
        if not w.ready.done():
            w.ready.set_exception(EndpointError(w.error or w.lost))
        w.done.set_result(None)

    # -- the run ------------------------------------------------------------------------------------------------
    def start_clock(self, clock: RunClock) -> None:
        """t0 a little ahead of the "start" messages (each worker's takes a moment): the same CLOCK_MONOTONIC."""
        clock.start(START_LEAD_NS + PER_WORKER_LEAD_NS * len(self.workers))

    async def go(self, clock: RunClock) -> None:
        for w in self.workers:
            self._send(w, ("start", clock.t0_ns, clock.t0_unix_ns))

    async def wait(self, bound_s: float | None = None) -> list[dict[str, Any] | None]:
        """Until every sender reported (its outcome) or was lost (None); one still running after ``bound_s`` is
        ended and lost."""
        futures = [w.done for w in self.workers]
        await asyncio.wait(futures, timeout=bound_s)
        for w in self.workers:
            if not w.done.done():
                w.lost = (
                    f"it had not finished {bound_s:,.0f} s after t0, past its last planned request's timeout"
                )
                w.done.set_result(None)
                w.proc.kill()
        return [w.done.result() for w in self.workers]

    def lost(self) -> dict[int, str]:
        return {w.k: w.lost for w in self.workers if w.lost}

    def stop(self) -> None:
        for w in self.workers:
            self._send(w, ("stop",))

    def cancel(self) -> None:
        for w in self.workers:
            self._send(w, ("cancel",))

    def _send(self, w: _Worker, msg: tuple[Any, ...]) -> None:
        if not w.done.done():
            with contextlib.suppress(OSError, ValueError):
                w.conn.send(msg)

    async def close(self) -> None:
        """Every worker gone: asked to stop, then terminated, then killed; pipes closed."""
        loop = asyncio.get_running_loop()
        for w in self.workers:
            with contextlib.suppress(Exception):
                loop.remove_reader(w.conn.fileno())
        for w in self.workers:
            if w.proc.is_alive():
                self._send(w, ("cancel",))
        for w in self.workers:
            await loop.run_in_executor(None, w.proc.join, EXIT_TIMEOUT_S)
            if w.proc.is_alive():
                w.proc.terminate()
                await loop.run_in_executor(None, w.proc.join, EXIT_TIMEOUT_S)
            if w.proc.is_alive():
                w.proc.kill()
                await loop.run_in_executor(None, w.proc.join)
            with contextlib.suppress(OSError):
                w.conn.close()
