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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from loadgen.config import DEFAULT_NUM_REQUESTS, RunConfig
from loadgen.errors import ConfigError
from loadgen.schedule import GammaSchedule, Schedule, TraceSchedule, make_schedule
from loadgen.workload.spec import RequestSpec
from loadgen.workload.table import FixedSource, SpecTable


def _frozen(a: Any) -> np.ndarray:
    out = np.array(a, dtype=np.int64)
    out.flags.writeable = False
    return out


@dataclass(frozen=True, slots=True, eq=False)
class SessionTable:
    """The conversations of a plan (``loadgen.plan_sessions``), one entry per request, aligned with its specs:
    request ``j`` is turn ``turn[j]`` of session ``session[j]``, sent ``think_ns[j]`` after the previous turn
    of its session ended (turn 0 at its planned offset: the session's start)."""

    session: np.ndarray  # int64
    turn: np.ndarray  # int64
    think_ns: np.ndarray  # int64
    history: str = "strip-reasoning"

    def take(self, positions: np.ndarray) -> SessionTable:
        return SessionTable(
            _frozen(self.session[positions]), _frozen(self.turn[positions]), _frozen(self.think_ns[positions]),
            self.history,
        )  # fmt: skip

    def __getstate__(self) -> list[Any]:
        return [self.session, self.turn, self.think_ns, self.history]

    def __setstate__(self, state: list[Any]) -> None:
        for f, value in zip(fields(self), state, strict=True):
            object.__setattr__(self, f.name, _frozen(value) if isinstance(value, np.ndarray) else value)


@dataclass(frozen=True, slots=True, eq=False)
class RequestPlan:
    """What a run (or one sender of it) sends: request ``indices[j]`` with ``specs[j]`` at ``offsets_ns[j]``.

    ``warmup`` and ``total`` describe the whole plan (requests with an index below ``warmup`` are warm-up), so a
    shard still knows which of its requests are warm-up and what it is a part of.
    """

    schedule: Schedule
    offsets_ns: np.ndarray  # int64, read-only: absolute send offsets (ns since t0), in send order
    specs: SpecTable  # request j's spec is made when asked (loadgen.workload.table): a plan costs bytes a request
    indices: np.ndarray  # int64, read-only: each request's index in the whole plan
    seed: int
    warmup: int
    total: int  # requests in the whole plan
    shard_k: int = 0
    shard_n: int = 1
    sessions: SessionTable | None = None  # conversations: a session is sent whole by one sender

    @classmethod
    def whole(
        cls, schedule: Schedule, offsets_ns: Any, specs: Sequence[RequestSpec], seed: int, warmup: int
    ) -> RequestPlan:
        offsets = _frozen(offsets_ns)
        if len(specs) != len(offsets):
            raise ValueError(f"{len(offsets)} offsets but {len(specs)} specs")
        table = SpecTable.of(specs)
        return cls(schedule, offsets, table, _frozen(np.arange(len(offsets))), seed, warmup, len(offsets))

    def __len__(self) -> int:
        return len(self.specs)

    def __getstate__(self) -> list[Any]:  # a shard is sent to its sender's process
        return [getattr(self, f.name) for f in fields(self)]

    def __setstate__(self, state: list[Any]) -> None:
        for f, value in zip(fields(self), state, strict=True):
            object.__setattr__(self, f.name, _frozen(value) if isinstance(value, np.ndarray) else value)

    @property
    def measured(self) -> int:
        """Requests of this plan that are not warm-up."""
        return int(np.count_nonzero(self.indices >= self.warmup))

    def describe(self) -> dict[str, object]:
        """The arrival process, as summary.json shows it."""
        return self.schedule.describe()

    def requests(self) -> Iterator[tuple[int, int, RequestSpec]]:
        """(index, offset ns, spec) per request, in send order."""
        for j in range(len(self.indices)):
            yield int(self.indices[j]), int(self.offsets_ns[j]), self.specs[j]

    def spec_of(self, index: int) -> RequestSpec:
        """The spec of request ``index`` of the whole plan (it must be in this plan)."""
        j = int(np.searchsorted(self.indices, index))
        if j >= len(self.indices) or int(self.indices[j]) != index:
            raise KeyError(index)
        return self.specs[j]

    def shard(self, k: int, n: int) -> RequestPlan:
        """Sender ``k`` of ``n``: the requests ``i`` with ``i % n == k``, with their indices and offsets; in a plan
        of conversations, every turn of the sessions ``s`` with ``s % n == k`` (a turn needs its predecessor's
        answer: a session never spans two senders)."""
        if self.shard_n != 1:
            raise ValueError("a shard is not split again: shard the whole plan")
        if not (n >= 1 and 0 <= k < n):
            raise ValueError(f"shard {k} of {n}: need n >= 1 and 0 <= k < n")
        by = self.indices if self.sessions is None else self.sessions.session
        take = np.flatnonzero(by % n == k)
        return replace(
            self,
            sessions=None if self.sessions is None else self.sessions.take(take),
            offsets_ns=_frozen(self.offsets_ns[take]),
            specs=self.specs.take(take),
            indices=_frozen(self.indices[take]),
            shard_k=k,
            shard_n=n,
        )


def merge(shards: Iterable[RequestPlan]) -> RequestPlan:
    """The whole plan again from its shards, request for request, ordered by index."""
    parts = list(shards)
    if not parts:
        raise ValueError("no shards to merge")
    first = parts[0]
    indices = np.concatenate([p.indices for p in parts])
    order = np.argsort(indices, kind="stable")
    if len(indices) != first.total or not np.array_equal(indices[order], np.arange(first.total)):
        raise ValueError(f"the shards do not hold each of the plan's {first.total} requests exactly once")
    source = first.specs.source
    if all(p.specs.source is source for p in parts):  # the shards of one plan: only the rows move
        table = SpecTable(source, _frozen(np.concatenate([p.specs.rows for p in parts])[order]))
    else:  # shards that travelled (each unpickled its own source): the specs themselves
        specs = [s for p in parts for s in p.specs]
        table = SpecTable(FixedSource(tuple(specs[int(j)] for j in order)), _frozen(np.arange(len(order))))
    sessions = None
    if first.sessions is not None:
        s = [p.sessions for p in parts if p.sessions is not None]
        sessions = SessionTable(
            *(
                _frozen(np.concatenate([getattr(x, f) for x in s])[order])
                for f in ("session", "turn", "think_ns")
            ),
            first.sessions.history,
        )
    return RequestPlan(
        first.schedule,
        _frozen(np.concatenate([p.offsets_ns for p in parts])[order]),
        table,
        _frozen(indices[order]),
        first.seed,
        first.warmup,
        first.total,
        sessions=sessions,
    )


# One sender process tops out near 100,000 token events/s (loadgen.fleet.sizing) and every request is at least one
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
    if _conversations(cfg):  # --sessions, a mooncake trace: loadgen.plan_sessions
        from loadgen.plan_sessions import plan_sessions

        if specs is not None:
            raise ConfigError("conversations (--sessions, a mooncake trace) plan their own turns")
        return plan_sessions(cfg)
    s, w = cfg.schedule, cfg.workload
    check_plan_size(cfg)
    trace = _read_trace(cfg) if s.arrival == "trace" else None
    sched: GammaSchedule | TraceSchedule
    if trace is not None:
        sched = TraceSchedule.from_offsets_ns(trace.arrival_ns, s.trace_path or "", s.trace_speedup)
    else:
        sched = make_schedule(s.arrival, s.rate, s.cv, s.seed)
    n = s.num_requests
    if n is None and s.duration_s is None and trace is None:
        n = DEFAULT_NUM_REQUESTS

    fixed: list[RequestSpec] | None = None
    if w.kind == "dataset":
        from loadgen.workload.sampling import build_dataset_workload, parse_dataset_paths

        assert w.dataset is not None
        fixed = build_dataset_workload(
            w.dataset,
            n or DEFAULT_NUM_REQUESTS,
            seed=w.seed,
            paths=parse_dataset_paths(list(w.dataset_paths), w.dataset.names) if w.dataset_paths else None,
            replace_=w.with_replacement,
            repeats=w.repeats,
            max_tokens=w.budgets,
        )
    elif w.budgets is not None:
        if w.budgets.per_dataset:
            raise ConfigError("per-dataset --max-tokens budgets need --dataset")
        if n is None:
            raise ConfigError("a --max-tokens sweep needs --num-requests")
        from loadgen.workload.sampling import expand

        fixed = expand(list(_base_specs(cfg, n, trace)), budgets=w.budgets.sweep, seed=w.seed)

    planned: SpecTable
    if fixed is not None:
        warm = [fixed[i % len(fixed)] for i in range(s.warmup)]
        offsets = sched.offsets_ns(len(warm) + len(fixed), s.duration_s)
        planned = SpecTable.of((warm + fixed)[: len(offsets)])
    else:
        total = None if n is None else n + s.warmup
        offsets = sched.offsets_ns(total, s.duration_s)
        planned = _base_specs(cfg, len(offsets), trace)
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


def _conversations(cfg: RunConfig) -> bool:
    if cfg.sessions.enabled:
        return True
    if not cfg.schedule.trace_path:
        return False
    from loadgen.plan_sessions import is_mooncake

    return is_mooncake(cfg)


def _read_trace(cfg: RunConfig) -> Any:
    from loadgen.workload.traces import read_trace

    s = cfg.schedule
    assert s.trace_path
    return read_trace(
        s.trace_path, s.trace_format, speedup=s.trace_speedup, start_s=s.trace_start_s, end_s=s.trace_end_s
    )


def _base_specs(cfg: RunConfig, n: int, trace: Any) -> SpecTable:
    w = cfg.workload
    if w.kind == "file":
        from loadgen.workload.prompts_file import load_prompts_file

        assert w.path
        return SpecTable.cycled(load_prompts_file(w.path), n)
    if w.kind == "trace":
        if trace is None:
            raise ConfigError("--trace-lengths needs --trace FILE")
        from loadgen.workload.traces import trace_to_specs

        return SpecTable.cycled(trace_to_specs(trace, seed=w.seed, force_output_len=w.force_output_len), n)
    from loadgen.workload.synthetic import synthetic_specs

    return synthetic_specs(n, w.input_len, w.output_len, w.seed, w.prefix_len)


_SIM_DIFFICULTY = {"easy": 0.2, "medium": 0.5, "hard": 0.85}


def with_sim_hints(specs: list[RequestSpec]) -> list[RequestSpec]:
    """Tell the simulator each item's reference and difficulty, so its (simulated) answers can be scored."""
    out = []
    for spec in specs:
        if spec.reference is None:
            out.append(spec)
            continue
        hint: dict[str, Any] = {"reference": spec.reference}
        diff = _SIM_DIFFICULTY.get(str(spec.tags.get("difficulty")))
        if diff is not None:
            hint["difficulty"] = diff
        extra = dict(spec.extra_body or {})
        extra["sim"] = hint
        out.append(replace(spec, extra_body=extra))
    return out
