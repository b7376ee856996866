"""One sender: a client and a dispatcher that send a plan, or one shard of it, on the run's clock.

A single-process run has one sender (``loadgen.run.runner`` composes it with the simulator, the record sink, the scraper
and the summary); a run spread over processes has one per process, each with its shard of the plan
(``RequestPlan.shard``) and the same clock, chosen once for all (``run_shard``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from loadgen.config import EndpointConfig, RunConfig
from loadgen.plan.clock import RunClock
from loadgen.plan.planner import RequestPlan
from loadgen.records.record import RecordSink, RequestRecord
from loadgen.run.dispatch import Dispatcher, DispatchStats, quiet_gc
from loadgen.wire.client import StreamingClient

STOP_GRACE_S = 5.0  # after a stop (Ctrl-C), how long requests in flight may take to finish


class Sender:
    """One sender: a client and a dispatcher sending a plan (or one shard of it) on the run's clock.

    ``async with Sender(...)`` opens the client; ``resolve_model()`` checks the server; ``ready()`` builds the
    dispatcher and warms what can be warmed (all before t0); ``send()``, once the clock has started, sends every
    request at its planned time and waits for the last to end. ``stop`` ends sending at once (in-flight requests
    get STOP_GRACE_S to finish).
    """

    def __init__(
        self,
        cfg: RunConfig,
        endpoint: EndpointConfig,
        plan: RequestPlan,
        clock: RunClock,
        on_done: Callable[[RequestRecord], None],
        stop: asyncio.Event,
    ) -> None:
        self.cfg, self.endpoint, self.plan, self.clock = cfg, endpoint, plan, clock
        self.on_done, self.stop = on_done, stop
        self.client = StreamingClient(endpoint, cfg.sampling, clock=clock)
        self.dispatcher: Dispatcher | None = None

    async def __aenter__(self) -> Sender:
        await self.client.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.dispatcher is not None:
            self.dispatcher.close()
        await self.client.close()

    async def resolve_model(self) -> str:
        return await self.client.resolve_model()

    async def ready(self) -> None:
        """Built here, after every import the run needs: nothing may be imported while requests are sent."""
        plan = self.plan
        pacing = (self.client, self.clock, plan.offsets_ns, plan.specs, plan.warmup,
                  self.cfg.schedule.max_concurrency, self.on_done, self.stop)  # fmt: skip
        if plan.sessions is None:
            self.dispatcher = Dispatcher(*pacing, api=self.endpoint.api, indices=plan.indices)
        else:  # conversations: each turn due when its predecessor has ended
            from loadgen.run.conversation import SessionDispatcher

            self.dispatcher = SessionDispatcher(
                plan.sessions, *pacing, api=self.endpoint.api, indices=plan.indices
            )
        await self.client.warm()
        self.dispatcher.prepare()

    @property
    def stats(self) -> DispatchStats:
        assert self.dispatcher is not None, "ready() first"
        return self.dispatcher.stats

    def phase(self) -> str:
        """The run's phase (``Dispatcher.phase``): before first send, sending, draining, after last end."""
        return self.dispatcher.phase() if self.dispatcher is not None else "before first send"

    async def send(self) -> None:
        assert self.dispatcher is not None, "ready() first"
        await _dispatch_and_drain(self.dispatcher, self.stop)

    def cancel_in_flight(self) -> None:
        if self.dispatcher is not None:
            for t in list(self.dispatcher.tasks):
                t.cancel()


async def run_shard(
    cfg: RunConfig,
    plan: RequestPlan,
    clock: RunClock,
    sink: RecordSink,
    *,
    endpoint: EndpointConfig | None = None,
    stop: asyncio.Event | None = None,
    before_t0: Callable[[], Awaitable[None]] | None = None,
    started: Callable[[Sender], None] | None = None,
) -> DispatchStats:
    """Send one shard of a plan (or a whole plan) on a shared clock, each record written to ``sink``.

    The unit a sender process of a multi-process run runs: the server is checked and everything warmed, then
    ``before_t0`` is awaited (a sender reports that it is ready and learns t0 there), and the clock must have
    started by then. ``started`` is handed the sender once it exists (a worker reads its counters and cancels its
    requests in flight through it). Returns the dispatcher's counters; the summary is built by whoever merges the
    shards.
    """
    stop = stop if stop is not None else asyncio.Event()
    async with Sender(cfg, endpoint or cfg.endpoint, plan, clock, sink.write, stop) as sender:
        if started is not None:
            started(sender)
        await sender.resolve_model()
        await sender.ready()
        if before_t0 is not None:
            await before_t0()
        with quiet_gc():
            await sender.send()
        return sender.stats


async def _dispatch_and_drain(dispatcher: Dispatcher, stop: asyncio.Event) -> None:
    """Send everything, then wait for what is in flight; Ctrl-C (``stop``) ends sending at once."""
    loop = asyncio.get_running_loop()
    # Ctrl-C must stop sending at once, even while the dispatcher waits minutes for the next planned send
    sending = loop.create_task(dispatcher.run())
    stop_wait = loop.create_task(stop.wait())
    try:
        await asyncio.wait({sending, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if not sending.done():
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sending
            dispatcher.stats.stopped_early = True
        else:
            sending.result()  # a bug in dispatch surfaces here rather than being swallowed
        if stop.is_set():
            await dispatcher.drain(STOP_GRACE_S)
        else:
            drain = loop.create_task(dispatcher.drain())
            await asyncio.wait({drain, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if not drain.done():
                await dispatcher.drain(STOP_GRACE_S)
                drain.cancel()
    finally:
        stop_wait.cancel()
