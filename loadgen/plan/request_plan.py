"""The request plan as a value: every request a run will send, when, and exactly what (``RequestPlan``), its
conversations (``SessionTable``), how it splits among senders and merges back; made by ``loadgen.plan.planner`` (synthetic,
files, datasets, traces) and ``loadgen.plan.sessions`` (conversations).

A plan splits among senders by request index: :meth:`RequestPlan.shard` gives sender ``k`` of ``n`` the requests
``i`` with ``i % n == k``, keeping their global indices and offsets (so every sender keeps the one schedule and
the records of all of them merge back by index), and :func:`merge` puts shards back together.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from loadgen.plan.schedule import Schedule
from loadgen.workload.spec import RequestSpec
from loadgen.workload.table import FixedSource, SpecTable

__all__ = ["RequestPlan", "SessionTable", "merge", "with_sim_hints"]


def _frozen(a: Any) -> np.ndarray:
    out = np.array(a, dtype=np.int64)
    out.flags.writeable = False
    return out


@dataclass(frozen=True, slots=True, eq=False)
class SessionTable:
    """The conversations of a plan (``loadgen.plan.sessions``), one entry per request, aligned with its specs:
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
