"""What a run sends, for every kind of workload: the one entry the plan calls with the workload's configuration.

``--input-len``/``--output-len`` (synthetic), ``--prompts FILE``, ``--dataset`` (with repeats and ``--max-tokens``
budgets), ``--trace-lengths`` (a trace's own lengths): :func:`workload_requests` gives the requests of any of them;
:func:`session_requests` the user turns of conversations (recorded ones from a prompts file or ShareGPT, else
synthetic ones); :func:`mooncake_workload` a Mooncake trace's sessions. The plan (``loadgen.plan``) decides when
each is sent; nothing here knows the arrival process or the rest of the run's configuration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from loadgen.config import DEFAULT_NUM_REQUESTS, LengthDist, WorkloadConfig
from loadgen.errors import ConfigError
from loadgen.workload.conversations import Conversation
from loadgen.workload.spec import RequestSpec
from loadgen.workload.synthetic import draw_lengths, synthetic_specs
from loadgen.workload.table import SpecTable
from loadgen.workload.traces import Trace

__all__ = ["MooncakeWorkload", "mooncake_workload", "session_requests", "workload_requests"]


def workload_requests(w: WorkloadConfig, n: int | None, trace: Trace | None = None) -> SpecTable:
    """The workload's requests: ``n`` of them (cycled), or, where ``w.count_is_fixed``, as many as it decides
    (``n`` then sizes a dataset's draw). ``trace``: the run's trace, for ``--trace-lengths``."""
    if w.kind == "dataset":
        from loadgen.workload.sampling import build_dataset_workload, parse_dataset_paths

        assert w.dataset is not None
        return SpecTable.of(
            build_dataset_workload(
                w.dataset,
                n or DEFAULT_NUM_REQUESTS,
                seed=w.seed,
                paths=parse_dataset_paths(list(w.dataset_paths), w.dataset.names)
                if w.dataset_paths
                else None,
                replace_=w.with_replacement,
                repeats=w.repeats,
                max_tokens=w.budgets,
            )
        )
    if w.budgets is not None:
        if w.budgets.per_dataset:
            raise ConfigError("per-dataset --max-tokens budgets need --dataset")
        if n is None:
            raise ConfigError("a --max-tokens sweep needs --num-requests")
        from loadgen.workload.sampling import expand

        return SpecTable.of(expand(list(_cycled(w, n, trace)), budgets=w.budgets.sweep, seed=w.seed))
    assert n is not None
    return _cycled(w, n, trace)


def _cycled(w: WorkloadConfig, n: int, trace: Trace | None) -> SpecTable:
    if w.kind == "file":
        from loadgen.workload.prompts_file import load_prompts_file

        assert w.path
        return SpecTable.cycled(load_prompts_file(w.path), n)
    if w.kind == "trace":
        if trace is None:
            raise ConfigError("--trace-lengths needs --trace FILE")
        from loadgen.workload.traces import trace_to_specs

        return SpecTable.cycled(trace_to_specs(trace, seed=w.seed, force_output_len=w.force_output_len), n)
    return synthetic_specs(n, w.input_len, w.output_len, w.seed, w.prefix_len)


def session_requests(
    w: WorkloadConfig, turns_dist: LengthDist, n_sessions: int, rng: np.random.Generator
) -> tuple[SpecTable, np.ndarray]:
    """The user turns of ``n_sessions`` sessions, session after session, and how many each has: drawn from
    ``turns_dist`` (``--turns``), fewer where a recorded conversation has fewer user turns than drawn."""
    turns = draw_lengths(turns_dist, n_sessions, rng)
    convs = _recorded_conversations(w)
    if convs is None:
        return synthetic_specs(int(turns.sum()), w.input_len, w.output_len, w.seed, w.prefix_len), turns
    picked = [convs[i % len(convs)] for i in range(len(turns))]
    turns = np.minimum(turns, [len(c) for c in picked])
    return SpecTable.of([t for c, k in zip(picked, turns.tolist(), strict=True) for t in c[:k]]), turns


def _recorded_conversations(w: WorkloadConfig) -> list[Conversation] | None:
    """A prompts file's or ShareGPT's conversations; None for synthetic ones."""
    from loadgen.workload import conversations as cv

    if w.kind == "file":
        assert w.path
        return cv.file_conversations(w.path)
    if w.kind == "dataset":
        assert w.dataset is not None
        if list(w.dataset.names) != ["sharegpt"]:
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


@dataclass(frozen=True, slots=True)
class MooncakeWorkload:
    """A Mooncake trace as sessions: each session's request rows (trace order), every row's spec, start (ms) and
    delay before it (ms, the think time)."""

    sessions: list[list[int]]
    specs: list[RequestSpec]
    timestamp_ms: list[float]
    delay_ms: list[float]


def mooncake_workload(path: str, block_size: int, seed: int) -> MooncakeWorkload:
    """Read a Mooncake trace once: its sessions (``session_id``), prompts made from its ``hash_ids`` blocks."""
    from loadgen.workload.mooncake import mooncake_sessions, mooncake_specs, read_mooncake

    rows = read_mooncake(path)
    return MooncakeWorkload(
        mooncake_sessions(rows),
        mooncake_specs(rows, block_size, seed),
        [r.timestamp_ms for r in rows],
        [r.delay_ms or 0.0 for r in rows],
    )
