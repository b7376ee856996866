"""The driver of a run with several senders: one plan, one t0, one scrape poller, one results folder.

``run_fleet_async`` is ``run.run_async``'s counterpart when ``--workers`` or ``--ray`` asks for more than this
process: it starts the target (the built-in simulator) and the scraper as a one-process run does, splits the plan
(``RequestPlan.shard``: sender ``k`` of ``n`` takes requests ``i % n == k``, with their global indices and
offsets), starts the senders (``LocalFleet`` processes or ``RayFleet`` actors) and waits until every one is ready,
then chooses t0 once for all, lets them send, and merges their records by index into the one ``requests.jsonl``
and the one summary. Ctrl-C stops every sender (in-flight requests get the grace period; again: cancelled), and
what finished is kept. A sender that is lost costs its unfinished requests (``worker_lost`` records); the run
finishes and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from loadgen.clock import RunClock
from loadgen.columns import read_requests
from loadgen.config import RunConfig
from loadgen.errors import LoadgenError
from loadgen.fleet.merge import Lost, merge_senders, remove_staging, sender_file, staging_dir
from loadgen.fleet.shard import ShardJob
from loadgen.fleet.sizing import Sizing, auto_workers, split_cap, usable_cores
from loadgen.fleet.verdict import pooled_check, schedule_error, sender_name, senders_check
from loadgen.plan import RequestPlan
from loadgen.report.exporter_process import due_counter, open_exporter
from loadgen.results_dir import (
    ResultsDir,
    RunResult,
    default_output_dir,
    run_header,
    write_report,
    write_run_json,
)
from loadgen.scrape.process import run_poller
from loadgen.sender import STOP_GRACE_S
from loadgen.stopping import Interrupt
from loadgen.summary import REQUESTS, build_summary, rate_check, target_rate_of
from loadgen.target import start_target

log = logging.getLogger(__name__)

LOCAL_START_LEAD_NS = 20_000_000  # t0 this far ahead of the "start" messages, plus PER_WORKER_LEAD_NS each
PER_WORKER_LEAD_NS = 5_000_000


def local_sizing(cfg: RunConfig, plan: RequestPlan) -> Sizing:
    """How many local senders: ``--workers N``, or ``auto`` from the cores and the planned load."""
    if cfg.senders.workers is not None:
        n = cfg.senders.workers
        return Sizing(n, f"--workers {n} as given")
    keep = 1 if cfg.endpoint.simulated else 0
    return auto_workers(cfg, plan, usable_cores(), keep_for_server=keep)


def one_process(cfg: RunConfig, plan: RequestPlan, console: Any = None) -> bool:
    """Whether this process alone sends the plan (``--workers auto`` found one sender enough, without Ray)."""
    if cfg.senders.ray_address is not None:
        return False
    sizing = local_sizing(cfg, plan)
    if sizing.workers == 1 and cfg.senders.workers is None and console is not None:
        console.print(f"[cyan]{sizing.line}[/]", soft_wrap=True)
    return sizing.workers == 1


class _FleetInterrupt(Interrupt):
    """Ctrl-C / SIGTERM, as in a one-process run (installed only while sending): the first stops every sender
    (in-flight requests get STOP_GRACE_S), the second cancels what is in flight."""

    def __init__(self, fleet: Any, console: Any, clock: RunClock) -> None:
        super().__init__(asyncio.Event(), console)
        self.fleet, self.clock = fleet, clock
        self.at_ns: int | None = None  # when (ns since t0): requests planned later were never to be sent

    def __call__(self) -> None:
        if self.interrupted:
            self.fleet.cancel()
            return
        self.interrupted = True
        self.at_ns = self.clock.now_ns() if self.clock.started else 0
        self.fleet.stop()
        if self.console is not None:
            self.console.print(
                f"[yellow]interrupted: every sender stops sending; in-flight requests get up to {STOP_GRACE_S:g} s "
                "(Ctrl-C again to stop now)[/]"
            )


def wait_bound_s(cfg: RunConfig, plan: RequestPlan) -> float | None:
    """How long after t0 a sender may still be sending: its last planned request plus its whole timeout, the stop
    grace and a minute. None where requests may queue (under --max-concurrency, or a closed loop): then each
    request is bounded by its own timeout and their number, not by a time after t0."""
    if cfg.schedule.max_concurrency is not None or not len(plan) or int(plan.offsets_ns[-1]) == 0:
        return None
    if plan.sessions is not None:  # conversations: a session's turns follow one another
        from loadgen.plan_sessions import last_turn_bound_s

        return last_turn_bound_s(plan, cfg.endpoint.timeout_s) + STOP_GRACE_S + 60.0
    return int(plan.offsets_ns[-1]) / 1e9 + cfg.endpoint.timeout_s + STOP_GRACE_S + 60.0


def _jobs(cfg: RunConfig, endpoint: Any, plan: RequestPlan, n: int) -> list[ShardJob]:
    caps = split_cap(cfg.schedule.max_concurrency, n)
    jobs = []
    for k in range(n):
        cfg_k = replace(cfg, schedule=replace(cfg.schedule, max_concurrency=caps[k]))
        jobs.append(ShardJob(k, n, cfg_k, endpoint, plan.shard(k, n)))
    return jobs


async def run_fleet_async(
    cfg: RunConfig,
    plan: RequestPlan,
    *,
    console: Any = None,
    install_signal_handlers: bool = True,
) -> RunResult:
    """A run whose plan is sent by several senders (local processes or Ray actors); same files as one sender's."""
    label = cfg.output.label or (
        "sim" if cfg.endpoint.simulated else re.sub(r"^https?://", "", cfg.endpoint.base_url)
    )
    results = ResultsDir(Path(cfg.output.output_dir) if cfg.output.output_dir else default_output_dir(label))
    out_dir = results.path
    clock = RunClock()
    ray_address = cfg.senders.ray_address
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(results.close)
        fleet: Any
        if ray_address is not None:
            from loadgen.fleet.ray_fleet import RayFleet

            fleet = RayFleet(ray_address, f"{out_dir.name}-{_short_id()}")
            stack.push_async_callback(fleet.close)
            try:
                cluster = fleet.connect()
            except LoadgenError:
                results.discard = True
                raise
            if cfg.senders.workers is not None:
                sizing = Sizing(cfg.senders.workers, f"--workers {cfg.senders.workers} as given")
            else:
                sizing = auto_workers(cfg, plan, max(1, cluster["cpus"]), where="CPUs of the Ray cluster")
        else:
            sizing = local_sizing(cfg, plan)
        n = sizing.workers
        if console is not None and cfg.senders.workers is None:
            console.print(f"[cyan]{sizing.line}[/]", soft_wrap=True)
        endpoint = await start_target(cfg, out_dir, stack, console)
        poller = run_poller(cfg, endpoint.base_url, out_dir)
        if poller is not None:
            stack.push_async_callback(poller.kill)
            poller_ready = asyncio.get_running_loop().create_task(poller.start())
            stack.callback(poller_ready.cancel)
        try:
            jobs = _jobs(cfg, endpoint, plan, n)
        except LoadgenError:
            results.discard = True
            raise
        staging_dir(out_dir).mkdir(parents=True, exist_ok=True)
        files = [sender_file(out_dir, k) for k in range(n)]
        try:  # --metrics-port: the whole run's figures, read from the senders' files as they grow
            exporter = await open_exporter(cfg.output, label, files, stack)
        except LoadgenError:
            results.discard = True
            raise
        if exporter is not None:
            exporter.count("due", due_counter(plan.offsets_ns, clock))
        try:
            if ray_address is not None:
                infos = await fleet.start(jobs, files, endpoint.simulated)
            else:
                from loadgen.fleet.local import LocalFleet

                fleet = LocalFleet(jobs, files)
                stack.push_async_callback(fleet.close)
                infos = await fleet.start()
        except LoadgenError:
            results.discard = True  # nothing was measured
            raise
        model = infos[0].get("model") or ""
        if console is not None:
            where = "Ray actors" if fleet.kind == "ray" else "local processes"
            nodes = len({i.get("node_ip") or i.get("host") for i in infos})
            console.print(
                f"[cyan]{n} senders ({where}) on {nodes} node{'s' if nodes != 1 else ''}"
                + (f", target {endpoint.base_url} model {model}" if not endpoint.simulated else "")
                + "[/]"
            )
        header = run_header(cfg, plan.schedule, endpoint, model, out_dir)
        write_run_json(out_dir, header, len(plan), plan.warmup)
        if cfg.scrape.enabled:
            import loadgen.scrape.poller  # noqa: F401  # imported before t0, as in a one-process run
        if poller is not None:
            await poller_ready

        interrupt = _FleetInterrupt(fleet, console, clock)
        with interrupt.installed(install_signal_handlers):
            if fleet.kind == "ray":
                fleet.start_clock(clock)
            else:
                clock.start(LOCAL_START_LEAD_NS + PER_WORKER_LEAD_NS * n)
            if poller is not None:
                poller.begin(clock.t0_ns)
            await fleet.go(clock)
            outcomes = await fleet.wait(wait_bound_s(cfg, plan))
        if exporter is not None:
            await exporter.finish()  # before the senders' files are merged away
        if poller is not None:
            await poller.stop()

        lost = fleet.lost()
        for k, o in enumerate(outcomes):
            if o is None and k not in lost:
                lost[k] = "it never reported"
        merged = merge_senders(
            files,
            out_dir / "requests.jsonl",
            lost={
                k: Lost(jobs[k].plan, f"{sender_name(k, infos[k])} was lost: {why}")
                for k, why in lost.items()
            },
            api=endpoint.api,
            before_ns=interrupt.at_ns,
        )
        remove_staging(out_dir)
        if console is not None:
            for k, why in sorted(lost.items()):
                console.print(
                    f"[bold red]{sender_name(k, infos[k])} was lost: {why}; the run went on without it, and "
                    f"{merged.worker_lost.get(k, 0):,} of its requests are recorded as worker_lost[/]",
                    soft_wrap=True,
                )
        done = [o for o in outcomes if o is not None]
        stopped = next((o["stopped"] for o in done if o.get("stopped")), None)
        summary = build_summary(
            cfg,
            out_dir,
            header=header,
            check=pooled_check(outcomes),
            spin_s=sum(float(o.get("spin_s") or 0.0) for o in done),
            endpoint=endpoint,
            t0_ns=clock.t0_ns,
            t0_unix_ns=clock.t0_unix_ns,
            interrupted=interrupt.interrupted,
            poller=poller,
            specs=plan.specs,
            read_stamps=infos[0].get("read_stamps"),
            stopped=stopped,
        )
        # each sender's send lag from the merged file's columns (request i was sent by sender i % n)
        check = senders_check(cfg, read_requests(out_dir / REQUESTS, chunks=False), infos, outcomes, lost)
        rate_check(summary["metrics"], target_rate_of(cfg.schedule.rate, cfg.schedule.arrival), check)
        summary["client_check"] = check
        summary["senders"] = senders_section(fleet, sizing, infos, outcomes, lost, jobs, merged)
        if lost:
            summary["outcome"]["senders_lost"] = [
                f"{sender_name(k, infos[k])} was lost: {why} ({merged.worker_lost.get(k, 0):,} worker_lost records)"
                for k, why in sorted(lost.items())
            ]
        (out_dir / "summary.json").write_bytes(
            orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
        )
        if cfg.output.report:
            write_report(out_dir, console)
        return RunResult(out_dir, summary, interrupt.interrupted, summary["outcome"]["reason"])


def senders_section(
    fleet: Any,
    sizing: Sizing,
    infos: list[dict[str, Any]],
    outcomes: list[dict[str, Any] | None],
    lost: dict[int, str],
    jobs: list[ShardJob],
    merged: Any,
) -> dict[str, Any]:
    """summary.json's ``senders``: how many, where, each one's clock and counts, and who was lost."""
    rows = []
    for k, info in enumerate(infos):
        o = outcomes[k]
        clock = dict(info.get("clock") or {})
        if o is not None and o.get("clock_end") and clock:
            clock["drift_ns"] = int(o["clock_end"]["offset_ns"]) - int(clock["offset_ns"])
            clock["end"] = o["clock_end"]
        rows.append(
            {
                "sender": k,
                "host": info.get("host"),
                "node_ip": info.get("node_ip"),
                "node_id": info.get("node_id"),
                "actor": info.get("actor"),
                "pid": info.get("pid"),
                "clock": clock,
                "planned": len(jobs[k].plan),
                "max_concurrency": jobs[k].cfg.schedule.max_concurrency,
                "sent": o.get("sent") if o else None,
                "records": merged.per_sender[k] if k < len(merged.per_sender) else 0,
                "worker_lost": merged.worker_lost.get(k, 0),
                "stopped_early": o.get("stopped_early") if o else None,
                "lost": lost.get(k),
            }
        )
    out: dict[str, Any] = {
        "mode": fleet.kind,
        "count": len(infos),
        "sizing": sizing.line,
        "nodes": len({r["node_ip"] or r["host"] for r in rows}),
        "lost": sorted(lost),
        "schedule_error": schedule_error(infos),
        "list": rows,
        "merge": {"duplicates": merged.duplicates, "torn_lines": merged.torn},
    }
    if fleet.kind == "ray":
        out["ray"] = {k: v for k, v in fleet.cluster.items() if k != "driver_node_id"}
    return out


def _short_id() -> str:
    import os

    return os.urandom(3).hex()
