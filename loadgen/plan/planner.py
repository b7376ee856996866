"""The request plan: every request a run will send, when, and exactly what, decided before the run starts.

``plan_requests(cfg)`` reads the workload (synthetic lengths, a prompts file, datasets, a trace's lengths), the
arrival process and the budgets, and returns a :class:`RequestPlan`: a frozen value holding the absolute send
offsets (int64 ns since t0), one final :class:`RequestSpec` per planned request (warm-up first) and the seed. Each
spec's ``max_tokens`` is final here (its own budget, else ``--max-tokens``), so neither the dispatcher nor the
client decides it again; against the built-in simulator each spec also carries its reference as a hint, so the
simulated answers can be scored.

A plan splits among senders by request index: :meth:`RequestPlan.shard` gives sender ``k`` of ``n`` the requests
``i`` with ``i % n == k``, keeping their global indices and offsets (so every sender keeps the one schedule and
the records of all of them merge back by index), and :func:`merge` puts shards back together.

A plan is sized before it is built (:func:`check_plan_size`): one bounded by ``--duration`` holds at most what its
senders can send in that time (``SENDS_PER_SENDER_S`` each), and no plan may need more than half of the memory
the kernel reports available (``PLAN_BYTES_PER_REQUEST`` each). Both refusals are one line and exit 2.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from loadgen.config import DEFAULT_NUM_REQUESTS, RunConfig
from loadgen.errors import ConfigError
from loadgen.plan.request_plan import RequestPlan, SessionTable, merge, with_sim_hints
from loadgen.plan.schedule import arrivals_of
from loadgen.workload.mooncake import trace_is_mooncake
from loadgen.workload.source import workload_requests
from loadgen.workload.spec import RequestSpec
from loadgen.workload.table import SpecTable

__all__ = [
    "PLAN_BYTES_PER_REQUEST",
    "SENDS_PER_SENDER_S",
    "RequestPlan",
    "SessionTable",
    "available_memory",
    "check_plan_size",
    "merge",
    "plan_requests",
    "with_sim_hints",
]

# One sender process tops out near 100,000 token events/s (loadgen.run.fleet.choose) and every request is at least one
# event: a plan that asks more of its senders in its duration would only be sent late.
SENDS_PER_SENDER_S = 100_000
# Peak bytes a synthetic plan takes per planned request while it is built (offsets, gaps drawn in blocks, lengths,
# rows and indices): 49 measured with tracemalloc at 1 M requests, rounded up; shards add a copy of the rows.
PLAN_BYTES_PER_REQUEST = 64
PLAN_MEMORY_SHARE = 0.5  # of MemAvailable (/proc/meminfo)


def available_memory() -> int | None:
    """Bytes the kernel says can be allocated without swapping (MemAvailable), or None where it does not say."""
    try:
        with open("/proc/meminfo", "rb") as fh:
            for line in fh:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _senders(cfg: RunConfig) -> int | None:
    """Senders that share the plan: --workers N, the usable cores for --workers auto; None on a Ray cluster of
    unknown size (no sending bound then)."""
    if cfg.senders.workers is not None:
        return cfg.senders.workers
    if cfg.senders.ray_address is not None:
        return None
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def check_plan_size(cfg: RunConfig, memory: int | None = None) -> None:
    """Refuse, before any of it is built, a plan its senders could not send in its duration or that would not fit
    in ``PLAN_MEMORY_SHARE`` of the available memory. A trace or a dataset bounds itself (it is read already)."""
    s = cfg.schedule
    if s.arrival == "trace" or cfg.workload.kind == "dataset":
        return
    by_count = None if s.num_requests is None else s.num_requests + s.warmup
    by_duration = None
    if s.duration_s is not None and math.isfinite(s.rate):
        by_duration = s.rate * s.duration_s
    planned = min(x for x in (by_count, by_duration, math.inf) if x is not None)
    if not math.isfinite(planned):
        return
    senders = _senders(cfg)
    if by_duration is not None and planned == by_duration and senders is not None:
        most = senders * SENDS_PER_SENDER_S
        if s.rate > most:
            raise ConfigError(
                f"--rate {s.rate:g} for --duration {s.duration_s:g} plans ~{planned:,.0f} requests, but "
                f"{senders} sender{'s send' if senders != 1 else ' sends'} at most {most:,} requests/s"
                f"{f' ({SENDS_PER_SENDER_S:,} each)' if senders != 1 else ''}: lower --rate, add --workers, or "
                "give --num-requests for a burst"
            )
    need = planned * PLAN_BYTES_PER_REQUEST * (2 if cfg.senders.distributed else 1)
    avail = available_memory() if memory is None else memory
    if avail is not None and need > avail * PLAN_MEMORY_SHARE:
        raise ConfigError(
            f"the plan of ~{planned:,.0f} requests needs ~{need / 2**20:,.0f} MiB, more than half of the "
            f"{avail / 2**20:,.0f} MiB available: lower --num-requests, --duration or --rate"
        )


def plan_requests(cfg: RunConfig, specs: Sequence[RequestSpec] | None = None) -> RequestPlan:
    """The arrival plan and one final spec per planned request (warm-up first), for every kind of workload.

    Dataset workloads fix the number of requests (items x repeats x budgets); otherwise the schedule does.
    ``specs`` replaces the workload's requests (the schedule still decides how many are sent).
    """
    s, w = cfg.schedule, cfg.workload
    mooncake = trace_is_mooncake(s.trace_format, s.trace_path)
    if cfg.sessions.enabled or mooncake:  # conversations: loadgen.plan.sessions
        from loadgen.plan.sessions import plan_mooncake, plan_sessions

        if specs is not None:
            raise ConfigError("conversations (--sessions, a mooncake trace) plan their own turns")
        if s.warmup:
            raise ConfigError("--warmup is not supported with conversations: every planned turn is measured")
        return plan_mooncake(cfg) if mooncake else plan_sessions(cfg)
    check_plan_size(cfg)
    sched, trace = arrivals_of(s)
    n = s.num_requests
    if n is None and s.duration_s is None and trace is None:
        n = DEFAULT_NUM_REQUESTS
    planned: SpecTable
    if w.count_is_fixed:  # the workload's own count, warm-up requests taken from its start
        fixed = workload_requests(w, n, trace)
        rows = np.concatenate([np.arange(s.warmup) % len(fixed), np.arange(len(fixed))])
        offsets = sched.offsets_ns(len(rows), s.duration_s)
        planned = fixed.take(rows[: len(offsets)])
    else:
        offsets = sched.offsets_ns(None if n is None else n + s.warmup, s.duration_s)
        planned = workload_requests(w, len(offsets), trace)
    if len(offsets) == 0:
        raise ConfigError("the schedule plans no requests: raise --duration or --num-requests")
    if len(planned) < len(offsets):
        raise ConfigError(f"{len(offsets)} arrivals planned but only {len(planned)} requests in the workload")
    if specs is not None:
        if len(specs) < len(offsets):
            raise ConfigError(f"{len(offsets)} arrivals planned but only {len(specs)} requests given")
        planned = SpecTable.of(list(specs[: len(offsets)]))
    # each spec as it is sent: its own budget, else the run's --max-tokens; simulator hints when simulated
    final = planned.final(cfg.sampling.max_tokens, with_sim_hints if cfg.endpoint.simulated else None)
    return RequestPlan.whole(sched, offsets, final, s.seed, s.warmup)
