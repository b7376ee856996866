"""The session driver: sends a plan of conversations, each turn at its absolute deadline.

A session's first turn is due at its planned start (the run's arrival process); turn k+1 is due at turn k's end
+ its think time, known only once turn k has ended. One pacer keeps a heap of due turns (deadline, position) and
sleeps until the nearest one on the dispatcher's timer (``loadgen.run.dispatch``: a timerfd, or a sleep and a short
spin), woken early when a turn ends and its successor is due sooner. Every turn is a request like any other:
its record keeps its intended start (the session start, or the previous turn's end + think time), when it was
dispatched (send lag), when it was sent, and its session and turn; latencies are measured from send and from the
intended start, per turn (coordinated omission stays visible within a session too).

The next turn resends the history with the server's actual answer: the answer (and, under ``keep-reasoning``, the
reasoning) is the text the stream parser assembled once the stream closed (``loadgen.wire.stream``; nothing is
parsed per chunk while reading). A turn that failed ends its session: each of its remaining turns gets a record
``session_aborted`` naming the session and the failed turn, so the planned turns and the records agree. A run
that is stopped (Ctrl-C) sends no further turn; those turns get no record, as unsent requests of any run.
"""

from __future__ import annotations

import asyncio
import heapq
from time import perf_counter_ns
from typing import Any

from loadgen.errors import ErrorKind
from loadgen.plan.planner import SessionTable
from loadgen.records.record import STATUS_ERROR, STATUS_OK, RequestRecord
from loadgen.run.dispatch import SPIN_NS, TIMERFD_LEAD_NS, Dispatcher, TimerFd, spin_until
from loadgen.wire.client import StreamingClient
from loadgen.wire.stream import KEEP_REASONING
from loadgen.workload.conversations import KEEP, History
from loadgen.workload.spec import RequestSpec


class _KeepText:
    """The client, asked to keep the text a session's next turn resends (the reasoning too under keep)."""

    def __init__(self, client: StreamingClient, keep: bool | str) -> None:
        self.client, self.keep = client, keep

    async def execute(self, spec: RequestSpec, rec: RequestRecord, keep_text: bool | str = True) -> None:
        await self.client.execute(spec, rec, self.keep)


class SessionDispatcher(Dispatcher):
    """A :class:`Dispatcher` for a plan of conversations (``plan.sessions``); see the module docstring."""

    def __init__(self, sessions: SessionTable, *pacing: Any, **options: Any) -> None:
        """``sessions``, then :class:`Dispatcher`'s own arguments (its ``warmup`` goes unused: a turn's record never
        counts as warm-up)."""
        super().__init__(*pacing, **options)
        self._closed_loop = False  # a session's turns wait for each other, never for the dispatcher
        self.client = _KeepText(self.client, KEEP_REASONING if sessions.history == KEEP else True)  # type: ignore[assignment]
        self.session = sessions.session.tolist()
        self.turn = sessions.turn.tolist()
        self.think = sessions.think_ns.tolist()
        self.history = sessions.history
        self._heap: list[tuple[int, int, int]] = []  # (deadline perf ns, position, intended ns since t0)
        self._histories: dict[int, History] = {}
        self._live: dict[int, tuple[int, RequestSpec]] = {}  # request index -> (position, spec as sent)
        self._left = len(self.session)  # turns neither dispatched nor aborted
        self._until: int | None = None  # the deadline the pacer sleeps until (None: awake)
        self._poke: asyncio.Future[None] | None = None
        self._tfd_sleeping = False
        self.aborted = 0

    # -- pacing ----------------------------------------------------------------------------------------------
    async def _dispatch_all(self, tfd: TimerFd | None) -> None:
        t0 = self.clock.t0_ns
        self._tfd = tfd
        heap = self._heap
        for j, k in enumerate(self.turn):
            if k == 0:
                heap.append((t0 + self.offsets[j], j, self.offsets[j]))
        heapq.heapify(heap)
        stats = self.stats
        while self._left > 0:
            if self.stop.is_set():
                stats.stopped_early = True
                break
            if not heap:
                await self._wait(None, tfd)
                continue
            deadline, j, intended = heap[0]
            if perf_counter_ns() < deadline:
                await self._wait(deadline, tfd)
                continue  # a nearer deadline may have come up meanwhile
            heapq.heappop(heap)
            self._start(j, intended)

    async def _wait(self, deadline: int | None, tfd: TimerFd | None) -> None:
        """Until ``deadline`` (perf ns) or until a turn ends whose successor is due sooner, whichever first."""
        self._until = deadline if deadline is not None else 1 << 62
        poked = False
        try:
            if deadline is not None and tfd is not None and deadline - perf_counter_ns() > TIMERFD_LEAD_NS:
                self._tfd_sleeping = True
                await tfd.sleep_until(deadline - TIMERFD_LEAD_NS)
                poked = self._until is None
            else:
                loop = asyncio.get_running_loop()
                self._poke = fut = loop.create_future()
                handle = None
                if deadline is not None:
                    delay = (deadline - SPIN_NS - perf_counter_ns()) / 1e9
                    if delay > 0:
                        handle = loop.call_later(delay, _resolve, fut)
                    else:
                        fut.set_result(None)
                stopping = loop.create_task(self.stop.wait()) if deadline is None else None
                try:
                    await asyncio.wait(
                        {fut, *([stopping] if stopping else [])}, return_when="FIRST_COMPLETED"
                    )
                finally:
                    if handle is not None:
                        handle.cancel()
                    if stopping is not None:
                        stopping.cancel()
                poked = self._until is None
            if deadline is not None and not poked:
                await spin_until(deadline, self.stats)
        finally:
            self._until = None
            self._poke = None
            self._tfd_sleeping = False

    def _due(self, deadline: int, j: int, intended: int) -> None:
        """Turn ``j`` is due at ``deadline``: queued, and the pacer woken if it sleeps until later."""
        heapq.heappush(self._heap, (deadline, j, intended))
        if self._until is not None and deadline < self._until:
            self._until = None  # poked
            if self._tfd_sleeping and self._tfd is not None:
                self._tfd.wake()
            elif self._poke is not None:
                _resolve(self._poke)

    # -- turns -----------------------------------------------------------------------------------------------
    def _start(self, j: int, intended: int) -> None:
        sess = self.session[j]
        hist = self._histories.get(sess)
        if hist is None:
            hist = self._histories[sess] = History(self.api == "chat", self.history)
        user = self.specs[j]
        spec = hist.turn_spec(user)
        rec = self._turn_record(j, intended, user.tags, spec.max_tokens)
        rec.dispatched_ns = perf_counter_ns() - self.clock.t0_ns
        self._live[rec.index] = (j, spec)
        self._left -= 1
        self.stats.sent += 1
        task = asyncio.get_running_loop().create_task(self._run_one(rec, spec, False))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _turn_record(self, j: int, intended: int, tags: Any, max_tokens: int | None) -> RequestRecord:
        return RequestRecord(
            index=self.indices[j], api=self.api, tags=dict(tags), max_tokens=max_tokens, intended_ns=intended,
            session_id=self.session[j], turn=self.turn[j],
        )  # fmt: skip

    def _finish(self, rec: RequestRecord) -> None:
        j, spec = self._live.pop(rec.index, (-1, None))
        super()._finish(rec)
        if j < 0:
            return
        sess = self.session[j]
        nxt = j + 1
        if nxt >= len(self.session) or self.session[nxt] != sess:
            self._histories.pop(sess, None)  # the session's last turn
            return
        if rec.status == STATUS_OK:
            assert spec is not None
            self._histories[sess].answered(spec, rec.output_text or "", rec.reasoning_text)
            intended = (rec.end_ns or 0) + self.think[nxt]
            self._due(self.clock.t0_ns + intended, nxt, intended)
        elif rec.status == STATUS_ERROR:
            self._abort_rest(nxt, rec)
        else:  # cancelled: the run is stopping; its remaining turns are not sent (as any unsent request)
            self._histories.pop(sess, None)

    def _abort_rest(self, nxt: int, failed: RequestRecord) -> None:
        """One ``session_aborted`` record for each remaining turn of the failed turn's session."""
        sess = self.session[nxt]
        self._histories.pop(sess, None)
        end = failed.end_ns or 0
        j = nxt
        while j < len(self.session) and self.session[j] == sess:
            user = self.specs[j]
            rec = self._turn_record(j, end + (self.think[j] if j == nxt else 0), user.tags, user.max_tokens)
            rec.status = STATUS_ERROR
            rec.error_kind = ErrorKind.SESSION_ABORTED.value
            rec.error_message = f"turn {self.turn[j]} of session {sess} not sent: turn {failed.turn} failed ({failed.error_kind})"
            self._left -= 1
            self.aborted += 1
            super()._finish(rec)
            j += 1
        if self._left == 0 and self._until is not None:  # the pacer waits for turns that will never come
            self._until = None
            if self._poke is not None:
                _resolve(self._poke)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
