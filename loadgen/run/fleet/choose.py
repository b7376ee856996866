"""Which fleet sends a run's plan: one sender in this process, N local processes or N Ray actors, and how many.

``--ray`` joins the cluster first (its CPUs size ``--workers auto``); otherwise ``--workers N`` or ``auto`` from
this host's cores and the planned load (``sizing``). One sender is a fleet of one in this process
(``shard.InProcessFleet``), writing through the run's record tap straight into ``requests.jsonl``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from loadgen.config import RunConfig
from loadgen.plan.planner import RequestPlan
from loadgen.run.fleet.shard import Fleet, InProcessFleet, RecordWriter
from loadgen.run.fleet.sizing import Sizing, sizing_of

__all__ = ["choose_fleet"]


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
