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
import platform
import re
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson

from loadgen.clock import RunClock
from loadgen.config import RunConfig
from loadgen.dispatch import quiet_gc
from loadgen.errors import LoadgenError
from loadgen.plan import plan_requests
from loadgen.records import RecordSink, RequestRecord, Scrubber, read_records
from loadgen.schedule import GammaSchedule, TraceSchedule
from loadgen.scrape.poller import default_metrics_url
from loadgen.scrape.process import PollerProcess
from loadgen.selfcheck import SelfCheck
from loadgen.sender import STOP_GRACE_S, Sender
from loadgen.summary import build_summary
from loadgen.target import SimulatorProcess
from loadgen.workload.spec import RequestSpec

log = logging.getLogger(__name__)

START_LEAD_NS = 5_000_000


class RunResult:
    """What a run returns: its folder and summary. ``records`` are read back from ``requests.jsonl`` when first
    asked for (a run keeps none in memory while it runs: its memory stays flat however long it is), then kept."""

    def __init__(
        self, output_dir: Path, summary: dict[str, Any], interrupted: bool = False, failure: str | None = None
    ) -> None:
        self.output_dir = output_dir
        self.summary = summary
        self.interrupted = interrupted
        self.failure = failure  # why the run's requests count as failed (the CLI exits 3), else None

    @cached_property
    def records(self) -> list[RequestRecord]:
        """Every finished request, in the order they finished (the file's order)."""
        path = Path(self.output_dir) / "requests.jsonl"
        return read_records(path) if path.exists() else []

    def __repr__(self) -> str:
        return (
            f"RunResult({str(self.output_dir)!r}, interrupted={self.interrupted}, failure={self.failure!r})"
        )


class AuthStop:
    """Stops a run whose first requests (``FIRST``, or all when fewer are planned) were all refused with 401/403.

    A wrong or missing key cannot be measured around: sending the rest only repeats the refusal (200 x 401 was
    seen). The verdict is taken on the first requests to finish, warm-up included.
    """

    FIRST = 10

    def __init__(self, planned: int) -> None:
        self.n = max(1, min(self.FIRST, planned))
        self.seen = 0
        self.statuses: set[int] = set()
        self.reason: str | None = None

    def observe(self, rec: RequestRecord) -> bool:
        """True once, when the run should stop."""
        if self.seen >= self.n:
            return False
        self.seen += 1
        if rec.http_status in (401, 403):
            self.statuses.add(rec.http_status)
        else:
            self.seen = self.n  # one request was not refused: never stop for this
            return False
        if self.seen == self.n:
            codes = "/".join(str(c) for c in sorted(self.statuses))
            self.reason = (
                f"stopped: the first {self.n} requests were all refused with HTTP {codes}; "
                "check --api-key / OPENAI_API_KEY and --header"
            )
            return True
        return False


def default_output_dir(label: str) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-")[:60] or "run"
    base = Path("results") / f"{stamp}-{safe}"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def _versions() -> dict[str, str]:
    import aiohttp
    import numpy

    from loadgen import __version__

    out = {
        "loadgen": __version__,
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "numpy": numpy.__version__,
        "orjson": orjson.__version__,
        "platform": platform.platform(),
    }
    with contextlib.suppress(ImportError):
        import uvloop

        out["uvloop"] = uvloop.__version__
    return out


class _ResultsDir:
    """The run's results folder. Made at the start; removed again, with the parents made for it, when the run
    measured nothing because the server could not be used (no empty folder for a mistyped URL or a bad key)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.created = [d for d in (path, *path.parents) if not d.exists()]
        path.mkdir(parents=True, exist_ok=True)
        self.discard = False

    def close(self) -> None:
        if self.discard and self.created:
            shutil.rmtree(self.path, ignore_errors=True)
            for d in self.created[1:]:  # the parents made for it (results/), while empty
                with contextlib.suppress(OSError):
                    d.rmdir()


class _Interrupt:
    """Ctrl-C / SIGTERM: the first stops sending and gives in-flight requests STOP_GRACE_S; the second cancels
    them. A stop for another reason (``stop.set()``, as AuthStop does) is not an interruption."""

    def __init__(self, stop: asyncio.Event, console: Any) -> None:
        self.stop, self.console = stop, console
        self.sender: Sender | None = None
        self.interrupted = False

    def __call__(self) -> None:
        if self.interrupted:
            if self.sender is not None:
                self.sender.cancel_in_flight()
            return
        self.interrupted = True
        self.stop.set()
        if self.console is not None and self.sender is not None:
            self.console.print(
                f"[yellow]interrupted: no new requests; waiting up to {STOP_GRACE_S:g} s for "
                f"{self.sender.stats.in_flight} in flight (Ctrl-C again to stop now)[/]"
            )

    @contextlib.contextmanager
    def installed(self, enabled: bool) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        done = False
        if enabled:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signal.SIGINT, self)
                loop.add_signal_handler(signal.SIGTERM, self)
                done = True
        try:
            yield
        finally:
            if done:
                loop.remove_signal_handler(signal.SIGINT)
                loop.remove_signal_handler(signal.SIGTERM)


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


async def _start_target(cfg: RunConfig, out_dir: Path, stack: contextlib.AsyncExitStack, console: Any) -> Any:
    """The endpoint to measure: the configured one, or the built-in simulator started now (stopped by ``stack``)."""
    if not cfg.endpoint.simulated:
        return cfg.endpoint
    sim = SimulatorProcess(
        profile=cfg.sim.profile,
        seed=cfg.schedule.seed,
        args=cfg.sim.args,
        ground_truth_path=str(out_dir / "sim_ground_truth.jsonl"),
        log_path=str(out_dir / "sim.log"),
    )
    stack.push_async_callback(sim.stop)
    base_url = await sim.start()
    if console is not None:
        console.print(f"[cyan]no endpoint given: using the built-in simulated server at {base_url}[/]")
    return replace(cfg.endpoint, base_url=base_url)


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
    results = _ResultsDir(Path(cfg.output.output_dir) if cfg.output.output_dir else default_output_dir(label))
    out_dir = results.path
    clock = RunClock()
    stop = asyncio.Event()
    interrupt = _Interrupt(stop, console)
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(results.close)
        endpoint = await _start_target(cfg, out_dir, stack, console)
        sink = stack.enter_context(RecordSink(out_dir / "requests.jsonl", secret_scrubber(endpoint)))
        poller = _poller(cfg, endpoint.base_url, out_dir)
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
            if poller is not None:
                poller.begin(clock.t0_ns)
            await sending.enter_async_context(_alongside(check.run, *([live.run] if live else [])))
            await sender.send()
        check.finish()
        if poller is not None:
            await poller.stop()  # one last scrape, after the last request ended

        sink.close()  # every record on disk: the summary is computed from the file
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
            _write_report(out_dir, console)
        return RunResult(out_dir, summary, interrupt.interrupted, summary["outcome"]["reason"])


def secret_scrubber(endpoint: Any) -> Scrubber:
    """The values no result file may hold: the API key and every --header value."""
    return Scrubber([endpoint.api_key, *(v for _, v in endpoint.headers)])


def _write_report(out_dir: Path, console: Any) -> None:
    """report.html beside the results; a failure here never costs the run its data."""
    try:
        from loadgen.report.html import write_run_report
    except ImportError:
        return
    try:
        write_run_report(out_dir)
    except Exception as exc:
        log.warning("report.html not written: %s", exc)
        if console is not None:
            console.print(f"[yellow]report.html not written: {exc}[/]")


def _poller(cfg: RunConfig, base_url: str, out_dir: Path) -> PollerProcess | None:
    if not cfg.scrape.enabled:
        return None
    urls = list(cfg.scrape.urls) or [default_metrics_url(base_url)]
    return PollerProcess(urls, cfg.scrape.interval_s, sink_path=out_dir / "server_metrics.jsonl")


RUN_JSON = "run.json"


def run_header(
    cfg: RunConfig, sched: GammaSchedule | TraceSchedule, endpoint: Any, model: str, out_dir: Path
) -> dict[str, Any]:
    """What a run is, known before its first request: written to run.json at the start and into summary.json."""
    return {
        "output_dir": str(out_dir),
        "label": cfg.output.label,
        "target": {
            "kind": "simulated" if endpoint.simulated else "endpoint",
            "base_url": endpoint.base_url,
            "model": model,
            "api": endpoint.api,
        },
        "config": cfg.public_dict(),
        "schedule": sched.describe(),
        "versions": _versions(),
        "argv": list(cfg.output.command) or _safe_argv(),
    }


def write_run_json(out_dir: Path, header: dict[str, Any], planned: int, warmup: int) -> None:
    """run.json, before the first request: a run killed before its summary (kill -9, OOM) can still be rebuilt
    with its configuration (``python -m loadgen report DIR``). Written before t0, so its disk time delays nothing."""
    doc = {
        "loadgen_run_version": 1,
        "note": "written when the run started; summary.json is written when it ends. Without a summary.json, "
        "`python -m loadgen report DIR` rebuilds one from this file and requests.jsonl",
        **header,
        "planned_requests": planned,
        "warmup_requests": warmup,
        "started_unix_ns": time.time_ns(),
    }
    tmp = out_dir / (RUN_JSON + ".tmp")
    tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    tmp.replace(out_dir / RUN_JSON)


_SECRET_FLAGS = {"--api-key", "--header"}


def _safe_argv() -> list[str]:
    out, hide = [], False
    for a in sys.argv:
        if hide:
            out.append("***")
            hide = False
        elif a in _SECRET_FLAGS:
            out.append(a)
            hide = True
        elif any(a.startswith(f + "=") for f in _SECRET_FLAGS):
            out.append(a.split("=", 1)[0] + "=***")
        else:
            out.append(a)
    return out


def run(cfg: RunConfig, **kwargs: Any) -> RunResult:
    """Synchronous entry point: runs under uvloop when available."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
        return asyncio.run(run_async(cfg, **kwargs))
    if os.environ.get("LOADGEN_NO_UVLOOP"):
        return asyncio.run(run_async(cfg, **kwargs))
    return uvloop.run(run_async(cfg, **kwargs))
