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
import math
import os
import platform
import re
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from loadgen.clock import RunClock
from loadgen.config import RunConfig
from loadgen.dispatch import quiet_gc
from loadgen.errors import LoadgenError
from loadgen.metrics import group_latencies, summarize
from loadgen.plan import plan_requests
from loadgen.records import RecordSink, RequestRecord, Scrubber
from loadgen.schedule import GammaSchedule, TraceSchedule
from loadgen.scrape.poller import default_metrics_url
from loadgen.scrape.process import PollerProcess
from loadgen.selfcheck import SelfCheck
from loadgen.sender import STOP_GRACE_S, Sender
from loadgen.target import SimulatorProcess
from loadgen.workload.spec import RequestSpec

log = logging.getLogger(__name__)

START_LEAD_NS = 5_000_000


@dataclass
class RunResult:
    output_dir: Path
    summary: dict[str, Any]
    records: list[RequestRecord] = field(default_factory=list)
    interrupted: bool = False
    failure: str | None = None  # why the run's requests count as failed (the CLI exits 3), else None


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


def requests_outcome(
    requests: dict[str, Any], max_error_share: float | None, stopped: str | None, interrupted: bool
) -> dict[str, Any]:
    """Whether the run's requests failed (exit 3): stopped on refusals, all failed, or above --max-error-share."""
    reason = stopped
    measured, failed = requests["measured"], requests["failed"]
    kinds = ", ".join(f"{v} {k}" for k, v in requests["errors_by_kind"].items())
    if reason is None and not interrupted and measured:
        if failed == measured:
            reason = f"every measured request failed ({kinds})"
        elif max_error_share is not None and failed / measured > max_error_share:
            reason = (
                f"{failed / measured:.1%} of measured requests failed ({kinds}), "
                f"more than --max-error-share {max_error_share:g}"
            )
    return {
        "failed": reason is not None,
        "reason": reason,
        "stopped_early": stopped,
        "max_error_share": max_error_share,
    }


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
    records: list[RequestRecord] = []
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
            sink.write(rec)
            records.append(rec)
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

        summary = build_summary(
            cfg,
            plan.schedule,
            records,
            check,
            sender.stats.spin_ns / 1e9,
            endpoint=endpoint,
            model=model,
            t0_ns=clock.t0_ns,
            t0_unix_ns=clock.t0_unix_ns,
            out_dir=out_dir,
            interrupted=interrupt.interrupted,
            poller=poller,
            specs=plan.specs,
            read_stamps=getattr(sender.client, "stamp_source", None),
            connection_note=getattr(sender.client, "connection_note", None),
            stopped=auth_stop.reason,
            header=header,
        )
        (out_dir / "summary.json").write_bytes(
            orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
        )
        if cfg.output.report:
            _write_report(out_dir, console)
        return RunResult(out_dir, summary, records, interrupt.interrupted, summary["outcome"]["reason"])


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


def target_rate_of(rate: Any, arrival: str | None) -> float | None:
    """The rate the achieved send rate is held to: none for --rate inf and for traces."""
    if not isinstance(rate, (int, float)) or math.isinf(rate) or arrival == "trace":
        return None
    return float(rate)


def rate_check(metrics: dict[str, Any], target_rate: float | None, client_check: dict[str, Any]) -> None:
    """Marks the run untrustworthy when the achieved send rate misses the planned one by more than 5 %."""
    rate = metrics["rate"]
    if target_rate and rate["achieved_send"] and metrics["requests"]["measured"] >= 50:
        miss = abs(rate["achieved_send"] - (rate["planned"] or target_rate)) / (
            rate["planned"] or target_rate
        )
        if miss > 0.05:
            client_check["trustworthy"] = False
            client_check["reasons"].append(
                f"achieved send rate {rate['achieved_send']:.2f}/s is {miss:.0%} off the planned "
                f"{rate['planned']:.2f}/s"
            )


def groups_of(records: list[RequestRecord]) -> dict[str, Any]:
    return {key: group_latencies(records, key) for key in ("dataset", "budget") if _has_tag(records, key)}


def build_summary(
    cfg: RunConfig,
    sched: GammaSchedule | TraceSchedule,
    records: list[RequestRecord],
    check: SelfCheck,
    spin_s: float,
    *,
    endpoint: Any,
    model: str,
    t0_ns: int,
    t0_unix_ns: int,
    out_dir: Path,
    interrupted: bool,
    poller: Any = None,
    specs: list[RequestSpec] | None = None,
    read_stamps: str | None = None,
    connection_note: str | None = None,
    stopped: str | None = None,
    header: dict[str, Any] | None = None,
) -> dict[str, Any]:
    records = sorted(records, key=lambda r: r.index)
    target_rate = target_rate_of(cfg.schedule.rate, cfg.schedule.arrival)
    metrics = summarize(
        records,
        slo_ms=cfg.analysis.slo.as_dict(),
        straggler_k=cfg.analysis.straggler_iqr_k,
        target_rate=target_rate,
    )
    client_check = check.report(
        metrics["latency_ms"]["send_lag"],
        spin_s,
        cfg.analysis.send_lag_p99_limit_ms,
        cfg.analysis.client_cpu_limit,
        loop_lag_p99_limit_ms=cfg.analysis.loop_lag_p99_limit_ms,
        loop_lag_max_limit_ms=cfg.analysis.loop_lag_max_limit_ms,
    )
    rate_check(metrics, target_rate, client_check)
    if connection_note and isinstance(metrics.get("connections"), dict):
        metrics["connections"]["note"] = connection_note
    summary: dict[str, Any] = {
        "loadgen_summary_version": 1,
        **(header or run_header(cfg, sched, endpoint, model, out_dir)),
        "interrupted": interrupted,
        "clock": {
            "read_stamps": read_stamps,
            "t0_ns": t0_ns,
            "t0_unix_ns": t0_unix_ns,
            "note": "record and server-metric times are ns since t0 on the monotonic perf_counter clock",
        },
        "metrics": metrics,
        "client_check": client_check,
        "outcome": requests_outcome(metrics["requests"], cfg.analysis.max_error_share, stopped, interrupted),
    }
    summary["groups"] = groups_of(records)
    if specs is not None and any(sp.reference is not None for sp in specs):
        from loadgen.accuracy import accuracy_table

        summary["accuracy"] = accuracy_table(records, specs)
        if endpoint.simulated:
            summary["accuracy"]["note"] = "simulated answers: the simulator is not a model"
    if poller is not None:
        if getattr(poller, "error", None) and not poller.stats:  # the scraper process never started
            summary["server"] = {"error": poller.error}
        else:
            summary.update(server_sections(out_dir, metrics, dict(poller.stats), poller.info))
    return summary


def _has_tag(records: list[RequestRecord], key: str) -> bool:
    return len({str(r.tags.get(key)) for r in records if key in r.tags}) > 1 or (
        key == "budget" and any(key in r.tags for r in records)
    )


def server_sections(
    out_dir: Path, metrics: dict[str, Any], scrape_stats: dict[str, Any] | None, info: dict[str, Any]
) -> dict[str, Any]:
    """The `server` section and straggler explanations from the scraped series; never fails the run."""
    try:
        from loadgen.scrape.explain import explain_requests
        from loadgen.scrape.series import load_samples
        from loadgen.scrape.summary import server_summary

        samples = load_samples(out_dir / "server_metrics.jsonl")
        w = metrics["window"]
        server = server_summary(samples, (w["start_ns"], w["end_ns"]))
        if scrape_stats is not None:
            server["scrape"] = scrape_stats
        engine = info.get(server.get("url"))
        if engine:
            server["engine"] = engine
        strag = metrics["stragglers"]["requests"]
        explained = explain_requests(samples, [(s["index"], s["start_ns"], s["end_ns"]) for s in strag])
        by_index = {s["index"]: s for s in strag}
        for e in explained:
            own = by_index.get(e.get("index"), {})
            e.setdefault(
                "detail",
                f"e2e {own.get('e2e_ms', 0):,.0f} ms, {own.get('reasoning_tokens', 0)} reasoning / "
                f"{own.get('completion_tokens', 0)} output tokens, client queue {own.get('queue_wait_ms', 0):,.0f} ms",
            )
        return {"server": server, "straggler_explanations": explained}
    except Exception as exc:  # the scrape is auxiliary: report it, keep the run
        log.warning("server metrics summary failed: %s", exc)
        return {"server": {"error": f"{type(exc).__name__}: {exc}"}}


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
