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
from loadgen.plan.schedule import TraceSchedule, make_schedule
from loadgen.workload.conversations import FIXED, Conversation
from loadgen.workload.spec import RequestSpec
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


def is_mooncake(cfg: RunConfig) -> bool:
    s = cfg.schedule
    if s.trace_format == "mooncake":
        return True
    if s.trace_format != "auto" or not s.trace_path:
        return False
    from loadgen.workload.mooncake import looks_like_mooncake

    return looks_like_mooncake(s.trace_path)


def plan_sessions(cfg: RunConfig) -> RequestPlan:
    """The plan of a conversations run (see the module docstring)."""
    if cfg.schedule.warmup:
        raise ConfigError("--warmup is not supported with conversations: every planned turn is measured")
    if is_mooncake(cfg):
        return _mooncake_plan(cfg)
    s, sess = cfg.schedule, cfg.sessions
    assert sess.sessions is not None
    if s.arrival == "trace":
        from loadgen.workload.traces import read_trace

        assert s.trace_path
        trace = read_trace(s.trace_path, s.trace_format, speedup=s.trace_speedup, start_s=s.trace_start_s,
                           end_s=s.trace_end_s)  # fmt: skip
        sched: Any = TraceSchedule.from_offsets_ns(trace.arrival_ns, s.trace_path, s.trace_speedup)
    else:
        sched = make_schedule(s.arrival, s.rate, s.cv, s.seed)
    starts = sched.offsets_ns(sess.sessions, s.duration_s)
    n_sessions = len(starts)
    if n_sessions == 0:
        raise ConfigError("the schedule plans no sessions: raise --duration or --sessions")
    rng = np.random.default_rng(np.random.SeedSequence([cfg.workload.seed, 0x5E55]))
    from loadgen.workload.synthetic import draw_lengths

    turns = draw_lengths(sess.turns, n_sessions, rng)
    w = cfg.workload
    convs = _recorded_conversations(cfg)
    if convs is not None:  # a conversation ends sooner when it has fewer user turns than drawn
        picked = [convs[i % len(convs)] for i in range(n_sessions)]
        turns = np.minimum(turns, [len(c) for c in picked])
        specs: Any = SpecTable.of([t for c, k in zip(picked, turns.tolist(), strict=True) for t in c[:k]])
    else:
        from loadgen.workload.synthetic import synthetic_specs

        specs = synthetic_specs(int(turns.sum()), w.input_len, w.output_len, w.seed, w.prefix_len)
    session = np.repeat(np.arange(n_sessions), turns)
    first = np.concatenate([[0], np.cumsum(turns)[:-1]])
    turn = np.arange(len(session)) - np.repeat(first, turns)
    think = draw_seconds(sess.think_time, len(session), rng)
    think[turn == 0] = 0
    table = SessionTable(session, turn, think, sess.history)
    return _plan(cfg, sched, np.repeat(starts, turns), specs, table)


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


def _recorded_conversations(cfg: RunConfig) -> list[Conversation] | None:
    """A prompts file's or ShareGPT's conversations; None for synthetic ones."""
    w = cfg.workload
    from loadgen.workload import conversations as cv

    if w.kind == "file":
        assert w.path
        return cv.file_conversations(w.path)
    if w.kind == "dataset":
        assert w.dataset is not None
        names = list(w.dataset.names)
        if names != ["sharegpt"]:
            raise ConfigError(
                "--sessions replays conversations from --dataset sharegpt or --prompts FILE only"
            )
        from loadgen.workload.dataset_sources import rows_from_hub, rows_from_path
        from loadgen.workload.datasets import resolve_name

        defn = resolve_name("sharegpt")
        paths = list(w.dataset_paths)
        rows = rows_from_path(paths[0].split("=", 1)[-1], defn) if paths else rows_from_hub(defn)
        return cv.sharegpt_conversations(rows)
    if w.kind == "trace":
        raise ConfigError("--trace-lengths has no conversations: use a mooncake trace or --sessions alone")
    return None


def _mooncake_plan(cfg: RunConfig) -> RequestPlan:
    from loadgen.workload.mooncake import mooncake_sessions, mooncake_specs, read_mooncake

    s = cfg.schedule
    assert s.trace_path
    rows = read_mooncake(s.trace_path)
    groups = mooncake_sessions(rows)
    if cfg.sessions.sessions is not None:
        groups = groups[: cfg.sessions.sessions]
    order = [i for g in groups for i in g]
    all_specs = mooncake_specs(rows, cfg.sessions.trace_block_size, cfg.workload.seed)
    specs: list[RequestSpec] = [all_specs[i] for i in order]
    t0 = rows[groups[0][0]].timestamp_ms
    starts = np.array(
        [round((rows[g[0]].timestamp_ms - t0) * 1e6 / s.trace_speedup) for g in groups], np.int64
    )
    window = np.ones(len(groups), dtype=bool)
    if s.trace_start_s is not None:
        window &= starts >= s.trace_start_s * NS_PER_S * 1.0
    if s.trace_end_s is not None:
        window &= starts < s.trace_end_s * NS_PER_S * 1.0
    if s.duration_s is not None:
        window &= starts < s.duration_s * NS_PER_S
    if not window.all():
        keep = set(np.flatnonzero(window).tolist())
        groups = [g for j, g in enumerate(groups) if j in keep]
        if not groups:
            raise ConfigError("no session of the mooncake trace starts in the window")
        starts = starts[window] - starts[window][0]
        order = [i for g in groups for i in g]
        specs = [all_specs[i] for i in order]
    turns = np.array([len(g) for g in groups], dtype=np.int64)
    session = np.repeat(np.arange(len(groups)), turns)
    first = np.concatenate([[0], np.cumsum(turns)[:-1]])
    turn = np.arange(len(session)) - np.repeat(first, turns)
    think = np.array(
        [0 if k == 0 else round((rows[i].delay_ms or 0.0) * 1e6 / s.trace_speedup) for i, k in
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
