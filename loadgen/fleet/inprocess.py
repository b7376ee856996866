"""A fleet of one: the sender runs on this process's event loop, its records straight into ``requests.jsonl``.

The plain run (``--workers 1``, the default) behind the same interface as the local-process and Ray fleets
(``shard.Fleet``): ``start`` runs the sender's shard (the whole plan) as a task that checks the server, warms up and
waits for t0; ``go`` gives it t0; ``wait`` returns its outcome. Nothing is staged and nothing merged: the sink the
run hands it writes the run's own file, so a record reaches disk as it finishes, as before the fleet existed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from loadgen.clock import RunClock
from loadgen.dispatch import DispatchStats
from loadgen.fleet.shard import RecordWriter, ShardJob, ShardRun

__all__ = ["START_LEAD_NS", "InProcessFleet"]

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
