"""The plan of a run of conversations: session starts on the arrival process, every planned turn, think times.

Each session's START follows the run's arrival process (Gamma rate/cv, Poisson, constant, a trace's
timestamps); within a session, turn k+1 is sent a think time after turn k's answer ended, so the load is open
across sessions and closed within one. The plan holds every planned turn as a request (session after session,
turns in order: request indices are contiguous per session), its user turn as a spec, and a
:class:`~loadgen.plan.planner.SessionTable` (session, turn, think time drawn here, seeded). A turn's offset in the plan is
its session's start: only turn 0 is sent at it; the driver (``loadgen.run.conversation``) sends turn k+1 at turn k's
end + its think time, which is also its intended start.

A Mooncake trace (``workload.mooncake``) gives its own sessions (``session_id``), starts (``timestamp``), think
times (``delay``) and whole prompts (no history is added: its ``hash_ids`` already hold it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from loadgen.config import RunConfig, SecondsDist
from loadgen.errors import ConfigError
from loadgen.plan.request_plan import RequestPlan, SessionTable, with_sim_hints
from loadgen.plan.schedule import TraceSchedule, arrivals_of
from loadgen.workload.conversations import FIXED
from loadgen.workload.source import mooncake_workload, session_requests
from loadgen.workload.table import SpecTable

NS_PER_S = 1_000_000_000


def draw_seconds(dist: SecondsDist, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` durations in ns from ``dist`` (clipped at 0)."""
    if dist.kind == "fixed":
        out = np.full(n, dist.a)
    elif dist.kind == "uniform":
        out = rng.uniform(dist.a, dist.b, size=n)
    elif dist.kind == "normal":
        out = rng.normal(dist.a, dist.b, size=n)
    elif dist.kind == "lognormal":
        out = rng.lognormal(np.log(dist.a), dist.b, size=n)
    elif dist.kind == "exponential":
        out = rng.exponential(dist.a, size=n) if dist.a > 0 else np.zeros(n)
    else:  # validated in config
        raise ValueError(dist.kind)
    return np.rint(np.clip(out, 0, None) * NS_PER_S).astype(np.int64)


def plan_sessions(cfg: RunConfig) -> RequestPlan:
    """The plan of a conversations run (see the module docstring)."""
    s, sess = cfg.schedule, cfg.sessions
    assert sess.sessions is not None
    sched, _ = arrivals_of(s)
    starts = sched.offsets_ns(sess.sessions, s.duration_s)
    if len(starts) == 0:
        raise ConfigError("the schedule plans no sessions: raise --duration or --sessions")
    rng = np.random.default_rng(np.random.SeedSequence([cfg.workload.seed, 0x5E55]))
    specs, turns = session_requests(cfg.workload, sess.turns, len(starts), rng)
    session, turn = _numbered(turns)
    think = draw_seconds(sess.think_time, len(session), rng)
    think[turn == 0] = 0
    table = SessionTable(session, turn, think, sess.history)
    return _plan(cfg, sched, np.repeat(starts, turns), specs, table)


def _numbered(turns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each planned turn's session and its number in it, for sessions of ``turns[i]`` turns in a row."""
    session = np.repeat(np.arange(len(turns)), turns)
    first = np.concatenate([[0], np.cumsum(turns)[:-1]])
    return session, np.arange(len(session)) - np.repeat(first, turns)


def _plan(cfg: RunConfig, sched: Any, offsets: np.ndarray, specs: Any, table: SessionTable) -> RequestPlan:
    final = SpecTable.of(specs).final(
        cfg.sampling.max_tokens, with_sim_hints if cfg.endpoint.simulated else None
    )
    plan = RequestPlan.whole(sched, offsets, final, cfg.schedule.seed, 0)
    return RequestPlan(
        plan.schedule, plan.offsets_ns, plan.specs, plan.indices, plan.seed, 0, plan.total,
        sessions=SessionTable(*(np.asarray(a, dtype=np.int64) for a in (table.session, table.turn,
                                                                         table.think_ns)), table.history),
    )  # fmt: skip


def plan_mooncake(cfg: RunConfig) -> RequestPlan:
    """The plan of a Mooncake trace's sessions: its starts, turns and think times as the trace gives them."""
    s = cfg.schedule
    assert s.trace_path
    trace = mooncake_workload(s.trace_path, cfg.sessions.trace_block_size, cfg.workload.seed)
    groups = trace.sessions
    if cfg.sessions.sessions is not None:
        groups = groups[: cfg.sessions.sessions]
    t0 = trace.timestamp_ms[groups[0][0]]
    starts = np.array(
        [round((trace.timestamp_ms[g[0]] - t0) * 1e6 / s.trace_speedup) for g in groups], np.int64
    )
    window = np.ones(len(groups), dtype=bool)
    if s.trace_start_s is not None:
        window &= starts >= s.trace_start_s * NS_PER_S * 1.0
    if s.trace_end_s is not None:
        window &= starts < s.trace_end_s * NS_PER_S * 1.0
    if s.duration_s is not None:
        window &= starts < s.duration_s * NS_PER_S
    if not window.all():
        groups = [g for j, g in enumerate(groups) if window[j]]
        if not groups:
            raise ConfigError("no session of the mooncake trace starts in the window")
        starts = starts[window] - starts[window][0]
    order = [i for g in groups for i in g]
    specs = [trace.specs[i] for i in order]
    turns = np.array([len(g) for g in groups], dtype=np.int64)
    session, turn = _numbered(turns)
    think = np.array(
        [0 if k == 0 else round(trace.delay_ms[i] * 1e6 / s.trace_speedup) for i, k in
         zip(order, turn.tolist(), strict=True)], dtype=np.int64,
    )  # fmt: skip
    sched = TraceSchedule.from_offsets_ns(starts, s.trace_path, s.trace_speedup)
    return _plan(cfg, sched, np.repeat(starts, turns), specs, SessionTable(session, turn, think, FIXED))


def last_turn_bound_s(plan: RequestPlan, timeout_s: float) -> float:
    """The latest a conversations plan's last turn can still be sending, in s after t0: each session's start,
    then every turn taking its whole timeout after its think time."""
    t = plan.sessions
    assert t is not None
    per_session = np.bincount(t.session, weights=t.think_ns / NS_PER_S + timeout_s)
    starts = np.zeros(len(per_session))
    starts[t.session[t.turn == 0]] = plan.offsets_ns[t.turn == 0] / NS_PER_S
    present = np.bincount(t.session) > 0
    return float((starts + per_session)[present].max()) if present.any() else 0.0
