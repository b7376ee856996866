"""The composition root of one run: plan, target, sender, scraper, record sink, summary.

``run(config)`` is the library entry point; the CLI is a thin layer over it. ``run_async`` plans every request
(``loadgen.plan``), opens what the run needs in one exit stack (the simulator, the record sink, the scraper's
process, the sender's client), starts the run clock once everything is warm, sends (``loadgen.sender``) with the
collector quiet and Ctrl-C handled, and writes the summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from loadgen.clock import RunClock
from loadgen.config import RunConfig
from loadgen.dispatch import quiet_gc
from loadgen.errors import LoadgenError
from loadgen.plan import plan_requests
from loadgen.records import RecordSink, RequestRecord
from loadgen.report.exporter_process import open_exporter
from loadgen.results_dir import (
    ResultsDir,
    RunResult,
    default_output_dir,
    run_header,
    secret_scrubber,
    write_report,
    write_run_json,
)
from loadgen.scrape.process import run_poller
from loadgen.selfcheck import SelfCheck
from loadgen.sender import Sender
from loadgen.stopping import AuthStop, Interrupt
from loadgen.summary import build_summary
from loadgen.target import start_target
from loadgen.workload.spec import RequestSpec

log = logging.getLogger(__name__)

START_LEAD_NS = 5_000_000


@contextlib.asynccontextmanager
async def _alongside(*runs: Callable[[asyncio.Event], Awaitable[Any]]) -> AsyncIterator[None]:
    """Tasks that run beside sending (the self-check, the live view) until it ends; told to stop, then awaited."""
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


async def run_async(
    cfg: RunConfig,
    *,
    specs: list[RequestSpec] | None = None,
    console: Any = None,
    install_signal_handlers: bool = True,
) -> RunResult:
    """Run one measurement; records are appended as they finish, the summary is written at the end.

    ``specs`` replaces the workload's requests (the schedule still decides how many are sent).
    """
    plan = plan_requests(cfg, specs)
    if cfg.senders.distributed:  # --workers / --ray: the plan is shared by several senders (loadgen.fleet)
        from loadgen.fleet.driver import one_process, run_fleet_async

        if not one_process(cfg, plan, console):
            return await run_fleet_async(
                cfg, plan, console=console, install_signal_handlers=install_signal_handlers
            )
    label = cfg.output.label or (
        "sim" if cfg.endpoint.simulated else re.sub(r"^https?://", "", cfg.endpoint.base_url)
    )
    results = ResultsDir(Path(cfg.output.output_dir) if cfg.output.output_dir else default_output_dir(label))
    out_dir = results.path
    clock = RunClock()
    stop = asyncio.Event()
    interrupt = Interrupt(stop, console)
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(results.close)
        try:  # --metrics-port: loadgen's own live figures, from requests.jsonl, in a process of their own
            exporter = await open_exporter(cfg.output, label, [out_dir / "requests.jsonl"], stack)
        except LoadgenError:
            results.discard = True
            raise
        if exporter is not None:
            exporter.count("in_flight", lambda: sender.stats.in_flight)
        endpoint = await start_target(cfg, out_dir, stack, console)
        sink = stack.enter_context(RecordSink(out_dir / "requests.jsonl", secret_scrubber(endpoint)))
        poller = run_poller(cfg, endpoint.base_url, out_dir)
        if poller is not None:
            stack.push_async_callback(poller.kill)
            # the scraper's process starts now, while the server is checked: it must be ready before t0
            poller_ready = asyncio.get_running_loop().create_task(poller.start())
            stack.callback(poller_ready.cancel)
        live = None
        auth_stop = AuthStop(len(plan))

        def on_done(rec: RequestRecord) -> None:
            # the record goes to the file and is dropped: the summary reads the file back (loadgen.summary)
            sink.write(rec)
            if live is not None:
                live.observe(rec)
            if auth_stop.observe(rec):
                stop.set()  # as Ctrl-C does, without counting as an interruption

        sender = interrupt.sender = await stack.enter_async_context(
            Sender(cfg, endpoint, plan, clock, on_done, stop)
        )
        try:
            model = await sender.resolve_model()
        except LoadgenError:
            results.discard = True  # nothing was measured
            raise
        if console is not None and not endpoint.simulated:
            console.print(f"target {endpoint.base_url} model {model}")
        if cfg.output.live and console is not None and console.is_terminal:
            from loadgen.report.live import LiveView

            live = LiveView(console, len(plan))
            stack.callback(live.close)
        header = run_header(cfg, plan.schedule, endpoint, model, out_dir)
        write_run_json(out_dir, header, len(plan), plan.warmup)
        if cfg.scrape.enabled:
            # imported before t0: ~40 ms of imports after it made the first sends of every run late
            import loadgen.scrape.poller  # noqa: F401

        # Everything that can be imported, resolved, started or warmed happens before t0: whatever ran after it
        # delayed the first planned sends (the scrape poller's imports: 40-300 ms).
        await sender.ready()
        check = SelfCheck()
        if live is not None:
            live.stats = sender.stats
            live.start()
        if poller is not None:
            await poller_ready  # when it failed to start, the summary's server section says why

        async with contextlib.AsyncExitStack() as sending:
            sending.enter_context(interrupt.installed(install_signal_handlers))
            sending.enter_context(quiet_gc())  # restored on the way out, even if dispatch raises
            # t0 lies a little ahead so the first planned send (offset 0) is not late by our own setup
            clock.start(START_LEAD_NS)
            check.t0_ns, check.phase = clock.t0_ns, sender.phase
            if poller is not None:
                poller.begin(clock.t0_ns)
            await sending.enter_async_context(_alongside(check.run, *([live.run] if live else [])))
            await sender.send()
        check.finish()
        if poller is not None:
            await poller.stop()  # one last scrape, after the last request ended

        sink.close()  # every record on disk: the summary is computed from the file
        if exporter is not None:
            await exporter.finish(("in_flight", lambda: sender.stats.in_flight))
        summary = build_summary(
            cfg,
            out_dir,
            header=header,
            check=check,
            spin_s=sender.stats.spin_ns / 1e9,
            endpoint=endpoint,
            t0_ns=clock.t0_ns,
            t0_unix_ns=clock.t0_unix_ns,
            interrupted=interrupt.interrupted,
            poller=poller,
            specs=plan.specs,
            read_stamps=getattr(sender.client, "stamp_source", None),
            connection_note=getattr(sender.client, "connection_note", None),
            stopped=auth_stop.reason,
        )
        (out_dir / "summary.json").write_bytes(
            orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
        )
        if cfg.output.report:
            write_report(out_dir, console)
        return RunResult(out_dir, summary, interrupt.interrupted, summary["outcome"]["reason"])


def run(cfg: RunConfig, **kwargs: Any) -> RunResult:
    """Synchronous entry point: runs under uvloop when available."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
        return asyncio.run(run_async(cfg, **kwargs))
    if os.environ.get("LOADGEN_NO_UVLOOP"):
        return asyncio.run(run_async(cfg, **kwargs))
    return uvloop.run(run_async(cfg, **kwargs))
