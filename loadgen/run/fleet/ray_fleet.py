"""``--ray auto|ADDRESS``: the senders as Ray actors spread over a cluster's nodes (optional extra ``loadgen[ray]``).

The driver connects to the cluster (namespace ``loadgen``), reserves one CPU per sender in a placement group with
the SPREAD strategy (the senders land on as many nodes as the cluster offers), places a ``ClockReference`` actor on
its own node, and creates the ``SenderActor`` s (one per bundle, never restarted: a sender that dies is reported,
not silently re-run). Each actor measures its clock offset to the driver and gets ready; the driver then fixes the
start as a wall-clock instant a little ahead (``START_LEAD_NS``) and tells every actor, which starts at that
instant on its own monotonic clock.

While they send, the driver polls every actor every ``POLL_S`` for the records finished since (JSON lines it
appends to the sender's staging file, merged by index at the end as for local workers). An actor that dies (killed,
its node lost) fails the poll with ``RayActorError``; one that does not answer for ``TAKE_TIMEOUT_S`` is killed.
Either way it is lost, and its requests without a record become ``worker_lost`` records; the others finish.

Every node needs the same Ray version and loadgen installed (the KubeRay example runs loadgen's image).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from pathlib import Path
from time import perf_counter_ns
from typing import Any

from loadgen.errors import ConfigError, EndpointError
from loadgen.plan.clock import RunClock
from loadgen.records.record import LineSink
from loadgen.results.merge import staging_files
from loadgen.run.fleet.ray_actor import ClockReference, SenderActor
from loadgen.run.fleet.shard import ShardJob

__all__ = ["RayFleet", "import_ray"]

log = logging.getLogger(__name__)

NAMESPACE = "loadgen"
PLACEMENT_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 120.0
START_LEAD_NS = 1_000_000_000  # the start instant lies this far ahead: every actor hears of it in time
POLL_S = 0.5
TAKE_TIMEOUT_S = 30.0


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--ray needs Ray: pip install 'loadgen[ray]' here and on every node (the same Ray version everywhere)"
        ) from None
    return ray


def _aw(ref: Any) -> asyncio.Future[Any]:
    return asyncio.wrap_future(ref.future())


def _why(exc: BaseException) -> str:
    """One line from a Ray error: the remote exception's own message where there is one."""
    cause = getattr(exc, "cause", None)
    if cause is not None:
        return str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def _probe(address: str, timeout_s: float = 5.0) -> None:
    """A cluster address (given, or ``RAY_ADDRESS`` for ``auto``) that nothing answers at is one line now: Ray
    itself retries for minutes before it gives up."""
    target = os.environ.get("RAY_ADDRESS", "") if address == "auto" else address
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or "://" in target:
        return  # auto without RAY_ADDRESS: Ray looks for a cluster started on this machine, and says when none is
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise EndpointError(
            f"--ray {address}: no Ray cluster answers at {target} ({why}); start one with `ray start --head` "
            "or give its address"
        ) from None


class RayFleet:
    """Sender actors on a Ray cluster; the driver polls them for records."""

    kind = "ray"

    def __init__(self, address: str, out_dir: Path) -> None:
        self.address = address
        self.out_dir = out_dir
        self.run_name = f"{out_dir.name}-{os.urandom(3).hex()}"
        self.files: list[Path] = []
        self.ray: Any = None
        self.actors: list[Any] = []
        self.names: list[str] = []
        self.pg: Any = None
        self.clock_ref: Any = None
        self.lost_reasons: dict[int, str] = {}
        self.progress: dict[int, dict[str, int]] = {}
        self.margins_ns: list[int] = []
        self.cluster: dict[str, Any] = {}

    # -- setup ------------------------------------------------------------------------------------------------
    def connect(self) -> dict[str, Any]:
        """Join the cluster; what it offers (CPUs, nodes) and where the driver is."""
        ray = self.ray = import_ray()
        _probe(self.address)
        try:
            ray.init(
                address=self.address,
                namespace=NAMESPACE,
                log_to_driver=False,
                logging_level=logging.WARNING,
                configure_logging=False,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise EndpointError(f"--ray {self.address}: cannot join the Ray cluster: {_why(exc)}") from None
        ctx = ray.get_runtime_context()
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        self.cluster = {
            "address": self.address,
            "cpus": int(ray.cluster_resources().get("CPU", 0)),
            "nodes": len(nodes),
            "node_ips": sorted({n.get("NodeManagerAddress") for n in nodes}),
            "driver_node_id": ctx.get_node_id(),
            "driver_node_ip": ray.util.get_node_ip_address(),
            "ray_version": ray.__version__,
        }
        return self.cluster

    async def start(self, jobs: list[ShardJob]) -> list[dict[str, Any]]:
        ray = self.ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import (
            NodeAffinitySchedulingStrategy,
            PlacementGroupSchedulingStrategy,
        )

        n = len(jobs)
        self.files = staging_files(self.out_dir, n)
        if jobs[0].endpoint.simulated and len(self.cluster["node_ips"]) > 1:
            raise ConfigError(
                "--ray with the built-in simulator: it listens on 127.0.0.1 of this host, which senders on the "
                "cluster's other nodes cannot reach; measure a server with --base-url"
            )
        self.pg = placement_group([{"CPU": 1}] * n, strategy="SPREAD", name=f"{self.run_name}-senders")
        try:
            await asyncio.wait_for(_aw(self.pg.ready()), PLACEMENT_TIMEOUT_S)
        except TimeoutError:
            free = int(ray.available_resources().get("CPU", 0))
            raise ConfigError(
                f"the Ray cluster has no room for {n} senders of one CPU each within {PLACEMENT_TIMEOUT_S:g} s "
                f"({self.cluster['cpus']} CPUs, {free} free): lower --workers or add nodes"
            ) from None
        self.clock_ref = (
            ray.remote(ClockReference)
            .options(
                num_cpus=0,
                name=f"{self.run_name}-clock",
                scheduling_strategy=NodeAffinitySchedulingStrategy(
                    self.cluster["driver_node_id"], soft=False
                ),
            )
            .remote()
        )
        remote_actor = ray.remote(SenderActor)
        for job in jobs:
            name = f"{self.run_name}-sender-{job.k}"
            self.names.append(name)
            self.actors.append(
                remote_actor.options(
                    name=name,
                    num_cpus=1,
                    max_restarts=0,
                    max_task_retries=0,
                    max_concurrency=4,
                    scheduling_strategy=PlacementGroupSchedulingStrategy(
                        placement_group=self.pg, placement_group_bundle_index=job.k
                    ),
                ).remote(job)
            )
        try:
            infos = await asyncio.gather(
                *(_aw(a.prepare.remote(self.clock_ref, READY_TIMEOUT_S)) for a in self.actors)
            )
        except ray.exceptions.RayError as exc:
            raise EndpointError(f"a Ray sender could not get ready: {_why(exc)}") from None
        for info, name in zip(infos, self.names, strict=True):
            info["actor"] = name
        return list(infos)

    # -- the run ------------------------------------------------------------------------------------------------
    @staticmethod
    def start_clock(clock: RunClock, lead_ns: int = START_LEAD_NS) -> None:
        """The driver's t0: a wall-clock instant ``lead_ns`` ahead, and the same instant on its monotonic clock."""
        mono, wall = perf_counter_ns(), time.time_ns()
        clock.start_at(mono + lead_ns, wall + lead_ns)

    async def go(self, clock: RunClock) -> None:
        try:
            self.margins_ns = list(
                await asyncio.gather(*(_aw(a.start.remote(clock.t0_unix_ns)) for a in self.actors))
            )
        except self.ray.exceptions.RayError as exc:  # one died already: the poll says which
            log.warning("a sender did not take the start: %s", _why(exc))
        for k, m in enumerate(self.margins_ns):
            if m < 0:
                log.warning(
                    "sender %d heard of the start %.1f ms after it: its first sends are late", k, -m / 1e6
                )

    async def wait(self, bound_s: float | None = None) -> list[dict[str, Any] | None]:
        """Poll every actor for records until each has finished or is lost; its outcome (None when lost). One still
        sending ``bound_s`` from now is killed and lost."""
        n = len(self.actors)
        outcomes: list[dict[str, Any] | None] = [None] * n
        sinks = [LineSink(f, thread_name=f"loadgen-sender-{k}") for k, f in enumerate(self.files)]
        active = set(range(n))
        loop = asyncio.get_running_loop()
        end = None if bound_s is None else loop.time() + bound_s
        try:
            while active:
                t = loop.time()
                if end is not None and t > end:
                    for k in sorted(active):
                        self._lose(k, f"it had not finished {bound_s:,.0f} s after t0, past its last planned "
                                   "request's timeout")  # fmt: skip
                    break
                ks = sorted(active)
                answers = await asyncio.gather(*(self._take(k) for k in ks))
                for k, ans in zip(ks, answers, strict=True):
                    if isinstance(ans, str):
                        self._lose(k, ans)
                        active.discard(k)
                        continue
                    if ans["lines"]:
                        sinks[k].write_line(ans["lines"])
                    self.progress[k] = ans.get("progress") or {}
                    if ans["finished"]:
                        active.discard(k)
                        if "error" in ans:
                            self._lose(k, f"it failed: {ans['error']}")
                        else:
                            outcomes[k] = ans.get("outcome")
                if active:
                    await asyncio.sleep(max(0.0, POLL_S - (loop.time() - t)))
        finally:
            for s in sinks:
                s.close()
        return outcomes

    async def _take(self, k: int) -> dict[str, Any] | str:
        ray = self.ray
        try:
            return await asyncio.wait_for(_aw(self.actors[k].take.remote()), TAKE_TIMEOUT_S)
        except TimeoutError:
            return f"its actor {self.names[k]} did not answer for {TAKE_TIMEOUT_S:g} s"
        except ray.exceptions.RayActorError as exc:
            return f"its actor {self.names[k]} died: {_why(exc)}"
        except ray.exceptions.RayError as exc:
            return f"its actor {self.names[k]} failed: {_why(exc)}"

    def _lose(self, k: int, reason: str) -> None:
        self.lost_reasons[k] = reason
        log.info("sender %d lost: %s", k, reason)
        with contextlib.suppress(Exception):
            self.ray.kill(self.actors[k], no_restart=True)

    def lost(self) -> dict[int, str]:
        return dict(self.lost_reasons)

    def stop(self) -> None:
        for k, a in enumerate(self.actors):
            if k not in self.lost_reasons:
                with contextlib.suppress(Exception):
                    a.stop.remote()

    def cancel(self) -> None:
        for k, a in enumerate(self.actors):
            if k not in self.lost_reasons:
                with contextlib.suppress(Exception):
                    a.cancel.remote()

    async def close(self) -> None:
        ray = self.ray
        if ray is None:
            return
        from ray.util.placement_group import remove_placement_group

        for a in [*self.actors, *([self.clock_ref] if self.clock_ref is not None else [])]:
            with contextlib.suppress(Exception):
                ray.kill(a, no_restart=True)
        if self.pg is not None:
            with contextlib.suppress(Exception):
                remove_placement_group(self.pg)
        with contextlib.suppress(Exception):
            ray.shutdown()
        self.ray = None
