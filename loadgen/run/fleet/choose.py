"""Which fleet sends a run's plan, and how many senders: one in this process, N local processes or N Ray actors.

``--ray`` joins the cluster first (its CPUs size ``--workers auto``); otherwise ``--workers N`` or ``auto`` from
this host's cores and the planned load. One sender is a fleet of one in this process (``shard.InProcessFleet``),
writing through the run's record tap straight into ``requests.jsonl``.

``--workers auto``: one sender process tops out near 100,000 token events/s (each streamed token is one read, one
timestamp, one parse share). A sender is planned at half of that, so its event loop keeps the slack that keeps
timestamps on time: the plan's token events/s is its rate times the mean output length (each spec's final
``max_tokens``; where the server decides, ``ASSUMED_OUTPUT_TOKENS``). A closed loop (``--rate inf``) has no planned
rate: it gets every core. On this host one core is left to a server on it (the built-in simulator); the count is
never above the cores.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loadgen.config import RunConfig
from loadgen.plan.planner import RequestPlan
from loadgen.run.fleet.shard import Fleet, InProcessFleet, RecordWriter

__all__ = [
    "EVENTS_PER_SENDER_S",
    "Sizing",
    "auto_workers",
    "choose_fleet",
    "planned_events_per_s",
    "sizing_of",
    "usable_cores",
]

EVENTS_PER_SENDER_S = 50_000  # half of what one process can take: its loop keeps slack for timely stamps
ASSUMED_OUTPUT_TOKENS = 256  # a request without max_tokens: the server decides; assume this many


@dataclass(frozen=True, slots=True)
class Sizing:
    workers: int
    line: str  # the one line that says why


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. under taskset or a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def planned_events_per_s(cfg: RunConfig, plan: RequestPlan) -> tuple[float | None, float, float | None]:
    """(token events/s, mean output tokens, requests/s) the plan asks for; None where the rate is unbounded."""
    budgets = plan.specs.max_tokens()  # without making every spec
    budgets = np.where(np.isnan(budgets), float(ASSUMED_OUTPUT_TOKENS), budgets)
    mean_out = float(budgets.mean()) if len(budgets) else float(ASSUMED_OUTPUT_TOKENS)
    offs = plan.offsets_ns
    if len(offs) < 2 or int(offs[-1]) <= int(offs[0]):
        return None, mean_out, None  # a burst: every request at t0 (a closed loop)
    rate = (len(offs) - 1) / ((int(offs[-1]) - int(offs[0])) / 1e9)
    if math.isfinite(cfg.schedule.rate) and cfg.schedule.arrival != "trace":
        rate = cfg.schedule.rate
    return rate * mean_out, mean_out, rate


def sizing_of(cfg: RunConfig, plan: RequestPlan, cluster_cpus: int | None = None) -> Sizing:
    """How many senders: ``--workers N`` as given, or ``auto`` from the planned load and the cores there are (a Ray
    cluster's CPUs, else this host's, less one for the built-in simulator)."""
    if cfg.senders.workers is not None:
        n = cfg.senders.workers
        return Sizing(n, f"--workers {n} as given")
    if cluster_cpus is not None:
        return auto_workers(cfg, plan, max(1, cluster_cpus), where="CPUs of the Ray cluster")
    return auto_workers(cfg, plan, usable_cores(), keep_for_server=1 if cfg.endpoint.simulated else 0)


def auto_workers(
    cfg: RunConfig, plan: RequestPlan, cores: int, *, keep_for_server: int = 0, where: str = "usable cores"
) -> Sizing:
    """The number of senders for ``--workers auto`` and the line that says why."""
    avail = max(1, cores - keep_for_server)
    kept = f" ({keep_for_server} left for the built-in simulator)" if keep_for_server else ""
    events, mean_out, rate = planned_events_per_s(cfg, plan)
    if events is None:
        n = avail
        why = "a closed loop (no planned rate) gets every core"
    else:
        need = max(1, math.ceil(events / EVENTS_PER_SENDER_S))
        n = min(need, avail)
        why = (
            f"the plan asks ~{events:,.0f} token events/s ({rate:,.4g} req/s x {mean_out:,.0f} tokens), "
            f"~{EVENTS_PER_SENDER_S:,} per sender"
        )
        if need > avail:
            why += f"; it needs {need}, more than there are"
    line = f"--workers auto: {n} sender{'s' if n != 1 else ''}: {why}; {avail} of {cores} {where}{kept}"
    return Sizing(n, line)


def choose_fleet(
    cfg: RunConfig,
    plan: RequestPlan,
    out_dir: Path,
    tap: RecordWriter,
    stack: contextlib.AsyncExitStack,
    console: Any = None,
) -> tuple[Fleet, Sizing]:
    """The run's fleet (not started; closed with ``stack``) and its size; a Ray cluster that cannot be joined
    raises here."""
    fleet: Fleet
    if cfg.senders.ray_address is not None:
        from loadgen.run.fleet.ray_fleet import RayFleet

        ray_fleet = RayFleet(cfg.senders.ray_address, out_dir)
        fleet = ray_fleet
        stack.push_async_callback(ray_fleet.close)
        sizing = sizing_of(cfg, plan, ray_fleet.connect()["cpus"])
    else:
        sizing = sizing_of(cfg, plan)
        if sizing.workers == 1:
            fleet = InProcessFleet(tap)
        else:
            from loadgen.run.fleet.local import LocalFleet

            fleet = LocalFleet(out_dir)
        stack.push_async_callback(fleet.close)
    if console is not None and cfg.senders.workers is None:
        console.print(f"[cyan]{sizing.line}[/]", soft_wrap=True)
    return fleet, sizing
