"""The one run path: a plan, a fleet of senders, the results folder, the target, the scraper, t0, the summary.

``run(config)`` is the library entry point; the CLI is a thin layer over it. Every run is a fleet
(``loadgen.run.fleet``): one sender on this event loop (the default), N local processes (``--workers``) or N Ray actors
(``--ray``), all driven the same way. ``run_async`` plans every request (``loadgen.plan.planner``), opens what the run
needs in one exit stack (the results folder, the simulator, the record sink, the scraper's process, the senders),
starts the run clock once every sender is warm and ready, lets them send with Ctrl-C handled, merges the senders'
files where there are several, and builds the summary once, from ``requests.jsonl`` and what the run knew
(``summary.RunFacts``).

Every finished record passes through one place on its way to the run's file: ``RecordTap``. In a one-process run
the sender hands it each record as it finishes; with several senders the tap follows their files as they grow.
Its observers (the live view, an exporter) see every record once, on the event loop: they must be cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from loadgen.analysis.client_check import sender_name
from loadgen.config import RunConfig
from loadgen.errors import LoadgenError
from loadgen.plan.clock import RunClock
from loadgen.plan.planner import RequestPlan, plan_requests
from loadgen.records.files import REQUESTS, SUMMARY
from loadgen.records.record import RecordSink, RequestRecord
from loadgen.report.exporter_process import ExporterProcess, due_counter, open_exporter
from loadgen.results.folder import (
    ResultsDir,
    RunResult,
    run_header,
    secret_scrubber,
    write_run_json,
)
from loadgen.results.merge import (
    Lost,
    follow_files,
    merge_senders,
    remove_staging,
    sender_file,
    senders_section,
)
from loadgen.results.summary import RunFacts, ScrapeFacts, build_summary, read_run
from loadgen.run.fleet.choose import Sizing, choose_fleet
from loadgen.run.fleet.shard import Fleet, ShardJob, shard_jobs, wait_bound_s
from loadgen.run.stopping import Interrupt
from loadgen.run.target import start_target
from loadgen.scrape.process import PollerProcess, run_poller
from loadgen.workload.spec import RequestSpec

__all__ = ["RecordObserver", "RecordTap", "RunResult", "run", "run_async"]

log = logging.getLogger(__name__)

RecordObserver = Callable[[RequestRecord], None]


class RecordTap:
    """The one place every finished record passes on its way to ``requests.jsonl``: written, then observed."""

    def __init__(self, sink: RecordSink | None, observers: Sequence[RecordObserver] = ()) -> None:
        self.sink = sink
        self.observers: list[RecordObserver] = list(observers)

    def write(self, rec: RequestRecord) -> None:
        if self.sink is not None:
            self.sink.write(rec)  # scrubbed there: no observer sees a secret
        for observe in self.observers:
            observe(rec)

    def observe(self, rec: RequestRecord) -> None:
        """A record a sender of another process wrote (read back from its file): observed only."""
        for observe in self.observers:
            observe(rec)


@contextlib.asynccontextmanager
async def _alongside(*runs: Callable[[asyncio.Event], Awaitable[Any]]) -> AsyncIterator[None]:
    """Tasks that run beside sending (the live view, following the senders' files) until it ends; then awaited."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    tasks = [loop.create_task(r(done)) for r in runs]
    ok = False
    try:
        yield
        ok = True
    finally:
        done.set()
        if not ok:
            for t in tasks:
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _Run:
    """One run's parts, opened in order by ``open``, driven by ``send`` and closed by ``finish``."""

    def __init__(self, cfg: RunConfig, plan: RequestPlan, console: Any, observers: Sequence[RecordObserver]):
        self.cfg, self.plan, self.console = cfg, plan, console
        self.results = ResultsDir.for_run(cfg)
        self.out_dir = self.results.path
        self.clock = RunClock()
        self.tap = RecordTap(None, observers)
        self.live: Any = None
        self.poller: PollerProcess | None = None
        self.poller_ready: asyncio.Task[bool] | None = None
        self.jobs: list[ShardJob] = []
        self.infos: list[dict[str, Any]] = []
        self.header: dict[str, Any] = {}
        self.fleet: Fleet
        self.sizing: Sizing
        self.exporter: ExporterProcess | None = None
        self.last_count: tuple[str, Callable[[], int]] | None = None

    async def open(self, stack: contextlib.AsyncExitStack) -> None:
        """Everything that can be imported, resolved, started or warmed happens before t0: whatever ran after it
        delayed the first planned sends (the scrape poller's imports: 40-300 ms)."""
        cfg, plan = self.cfg, self.plan
        stack.callback(self.results.close)
        with self._discard_on_error():  # a cluster that cannot be joined, a port taken: nothing was measured
            self.fleet, self.sizing = choose_fleet(cfg, plan, self.out_dir, self.tap, stack, self.console)
            await self._open_exporter(stack)
        self.endpoint = endpoint = await start_target(cfg, self.out_dir, stack, self.console)
        scrubber = secret_scrubber(endpoint)  # once, for every sender's sink
        if self.fleet.kind == "in-process":
            self.tap.sink = stack.enter_context(RecordSink(self.out_dir / REQUESTS, scrubber))
        self._start_poller(stack)
        with self._discard_on_error():  # the server refused, a sender could not start: nothing was measured
            self.jobs = shard_jobs(cfg, endpoint, plan, self.sizing.workers, scrubber)
            self.infos = await self.fleet.start(self.jobs)
        self._say_who_sends()
        self._open_live(stack)
        model = self.infos[0].get("model") or ""
        self.header = run_header(cfg, plan.schedule, endpoint, model, self.out_dir)
        write_run_json(self.out_dir, self.header, len(plan), plan.warmup)
        if cfg.scrape.enabled:
            # imported before t0: ~40 ms of imports after it made the first sends of every run late
            import loadgen.scrape.poller  # noqa: F401
        if self.poller_ready is not None:
            await self.poller_ready  # when it failed to start, the summary's server section says why

    async def _open_exporter(self, stack: contextlib.AsyncExitStack) -> None:
        """--metrics-port: loadgen's own live figures in a process of their own, read from the files the records
        go to as they grow (requests.jsonl, or the senders' staging files)."""
        fleet = self.fleet
        in_process = fleet.kind == "in-process"
        files = (
            [self.out_dir / REQUESTS]
            if in_process
            else [sender_file(self.out_dir, k) for k in range(self.sizing.workers)]
        )
        self.exporter = await open_exporter(self.cfg.output, self.results.label, files, stack)
        if self.exporter is None:
            return
        if in_process:
            self.last_count = ("in_flight", fleet.in_flight)  # type: ignore[attr-defined]
            self.exporter.count(*self.last_count)
        else:  # the driver sees no sender's dispatcher: in flight = due - finished
            self.exporter.count("due", due_counter(self.plan.offsets_ns, self.clock))

    @contextlib.contextmanager
    def _discard_on_error(self) -> Any:
        try:
            yield
        except LoadgenError:
            self.results.discard = True
            raise

    def _start_poller(self, stack: contextlib.AsyncExitStack) -> None:
        self.poller = poller = run_poller(self.cfg, self.endpoint.base_url, self.out_dir)
        if poller is not None:
            stack.push_async_callback(poller.kill)
            # the scraper's process starts now, while the senders get ready: it must be ready before t0
            self.poller_ready = asyncio.get_running_loop().create_task(poller.start())
            stack.callback(self.poller_ready.cancel)

    def _say_who_sends(self) -> None:
        console, endpoint, infos = self.console, self.endpoint, self.infos
        if console is None:
            return
        model = infos[0].get("model") or ""
        if self.fleet.kind == "in-process":
            if not endpoint.simulated:
                console.print(f"target {endpoint.base_url} model {model}")
            return
        where = "Ray actors" if self.fleet.kind == "ray" else "local processes"
        nodes = len({i.get("node_ip") or i.get("host") for i in infos})
        console.print(
            f"[cyan]{len(infos)} senders ({where}) on {nodes} node{'s' if nodes != 1 else ''}"
            + (f", target {endpoint.base_url} model {model}" if not endpoint.simulated else "")
            + "[/]"
        )

    def _open_live(self, stack: contextlib.AsyncExitStack) -> None:
        """The live view of a one-process run on a terminal (it reads the sender's counters)."""
        console = self.console
        if not (self.cfg.output.live and console is not None and console.is_terminal):
            return
        if self.fleet.kind != "in-process":
            return
        from loadgen.report.live import LiveView

        self.live = LiveView(console, len(self.plan), self.fleet.stats)  # type: ignore[attr-defined]
        stack.callback(self.live.close)
        self.tap.observers.append(self.live.observe)

    async def send(self, install_signal_handlers: bool) -> tuple[Interrupt, list[dict[str, Any] | None]]:
        """t0 once for all, then every sender sends; returns the interruption and each sender's outcome."""
        fleet, clock, poller = self.fleet, self.clock, self.poller
        alongside: list[Callable[[asyncio.Event], Awaitable[Any]]] = []
        if self.live is not None:
            self.live.start()
            alongside.append(self.live.run)
        if fleet.files and self.tap.observers:
            alongside.append(lambda done: follow_files(fleet.files, self.tap.observe, done))
        interrupt = Interrupt(fleet, self.console, clock)
        with interrupt.installed(install_signal_handlers):
            fleet.start_clock(clock)
            if poller is not None:
                poller.begin(clock.t0_ns)
            async with _alongside(*alongside):
                await fleet.go(clock)
                outcomes = await fleet.wait(wait_bound_s(self.cfg, self.plan))
        if poller is not None:
            await poller.stop()  # one last scrape, after the last request ended
        return interrupt, outcomes

    async def records_on_disk(self) -> None:
        """Every record written (the sink closed); the exporter's figures are the run's final ones, read before the
        senders' files are merged away."""
        if self.tap.sink is not None:
            self.tap.sink.close()  # every record on disk: the summary is computed from the file
        if self.exporter is not None:
            await self.exporter.finish(self.last_count)

    def merge(self, interrupt: Interrupt, outcomes: list[dict[str, Any] | None]) -> RunFacts:
        """The senders' files merged into requests.jsonl (several senders), and what the run knew."""
        fleet, infos = self.fleet, self.infos
        lost = fleet.lost()
        for k, o in enumerate(outcomes):
            if o is None and k not in lost:
                lost[k] = "it never reported"
        senders = None
        if fleet.files:
            names = [sender_name(k, infos[k]) for k in range(len(infos))]
            merged = merge_senders(
                fleet.files,
                self.out_dir / REQUESTS,
                lost={k: Lost(self.jobs[k].plan, f"{names[k]} was lost: {why}") for k, why in lost.items()},
                api=self.endpoint.api,
                before_ns=interrupt.at_ns,
            )
            remove_staging(self.out_dir)
            for k, why in sorted(lost.items()):
                if self.console is not None:
                    self.console.print(
                        f"[bold red]{names[k]} was lost: {why}; the run went on without it, and "
                        f"{merged.worker_lost.get(k, 0):,} of its requests are recorded as worker_lost[/]",
                        soft_wrap=True,
                    )
            senders = senders_section(fleet, self.sizing.line, self.jobs, infos, outcomes, lost, merged)
        poller = self.poller
        return RunFacts(
            header=self.header,
            t0_ns=self.clock.t0_ns,
            t0_unix_ns=self.clock.t0_unix_ns,
            interrupted=interrupt.interrupted,
            simulated=self.endpoint.simulated,
            infos=tuple(infos),
            outcomes=tuple(outcomes),
            lost=lost,
            senders=senders,
            scrape=None
            if poller is None
            else ScrapeFacts(dict(poller.stats), dict(poller.info), poller.error),
        )


async def run_async(
    cfg: RunConfig,
    *,
    specs: list[RequestSpec] | None = None,
    console: Any = None,
    install_signal_handlers: bool = True,
    observers: Sequence[RecordObserver] = (),
) -> RunResult:
    """Run one measurement; records are appended as they finish, the summary is written at the end.

    ``specs`` replaces the workload's requests (the schedule still decides how many are sent). ``observers`` see
    every finished record (``RecordTap``).
    """
    run = _Run(cfg, plan_requests(cfg, specs), console, observers)
    async with contextlib.AsyncExitStack() as stack:
        await run.open(stack)
        interrupt, outcomes = await run.send(install_signal_handlers)
        await run.records_on_disk()
        facts = run.merge(interrupt, outcomes)
        # requests.jsonl is read once: the summary's columns, accuracy, engine timings and the report's reductions
        read = read_run(run.out_dir, run.plan.specs, reducers=_report_reducers() if cfg.output.report else ())
        summary = build_summary(cfg, run.out_dir, facts, read=read)
        (run.out_dir / SUMMARY).write_bytes(
            orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
        )
        if cfg.output.report:
            write_report(run.out_dir, console, read.cols)
        return RunResult(run.out_dir, summary, interrupt.interrupted, summary["outcome"]["reason"])


def _report_reducers() -> tuple[Any, ...]:
    """What the report draws from the records' chunks beyond the summary's statistics: tokens received over time."""
    try:
        from loadgen.report.run_data import TokenBins
    except ImportError:
        return ()
    return (TokenBins(),)


def write_report(out_dir: Path, console: Any, columns: Any = None) -> None:
    """report.html beside the results (from the summary's ``columns`` where given: the file is read once); a
    failure here never costs the run its data."""
    try:
        from loadgen.report.html import write_run_report
    except ImportError:
        return
    try:
        write_run_report(out_dir, columns)
    except Exception as exc:
        log.warning("report.html not written: %s", exc)
        if console is not None:
            console.print(f"[yellow]report.html not written: {exc}[/]")


def run(cfg: RunConfig, **kwargs: Any) -> RunResult:
    """Synchronous entry point: runs under uvloop when available."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
        return asyncio.run(run_async(cfg, **kwargs))
    if os.environ.get("LOADGEN_NO_UVLOOP"):
        return asyncio.run(run_async(cfg, **kwargs))
    return uvloop.run(run_async(cfg, **kwargs))
