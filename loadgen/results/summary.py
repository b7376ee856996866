"""summary.json of a finished run, computed from what the run wrote: ``requests.jsonl`` and ``server_metrics.jsonl``.

During a run no record is kept in memory (each goes to the sink and is dropped), so the summary reads the records
back as columns (:mod:`loadgen.records.columns`) and computes every number vectorised
(:mod:`loadgen.analysis.metrics`): a run of any length costs its columns, never its records. The file is read once
(:func:`read_run`): what needs whole records (the answers' text for accuracy, llama.cpp's timings) is counted by
record reducers in the same pass, and the run's report reuses that pass (its own reducers ride along).
:func:`build_summary` is the end of a run; :mod:`loadgen.results.rebuild` uses the same parts for a run that was
killed before it got there.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadgen.analysis.accuracy_tables import AccuracyTally
from loadgen.analysis.client_check import one_sender_check, sender_name, senders_check
from loadgen.analysis.engine_timings import TimingsCrosscheck
from loadgen.analysis.metrics import ChunkStats, group_latencies, has_groups, summarize
from loadgen.config import RunConfig
from loadgen.records.columns import RequestColumns, read_requests
from loadgen.records.files import REQUESTS, SERVER_METRICS
from loadgen.results.summary_turns import turns_section

__all__ = [
    "RunFacts",
    "RunRecords",
    "ScrapeFacts",
    "build_summary",
    "groups_of",
    "rate_check",
    "read_run",
    "read_run_columns",
    "requests_outcome",
    "server_sections",
    "target_rate_of",
]

log = logging.getLogger(__name__)

GROUP_TAGS = ("dataset", "budget")


@dataclass(frozen=True, slots=True)
class RunRecords:
    """``requests.jsonl`` read once: its columns (with every reducer's result, ``cols.reducers``), the accuracy
    table (None without reference answers) and llama.cpp's timings beside the client's (None without them)."""

    cols: RequestColumns
    accuracy: dict[str, Any] | None = None
    engine_timings: dict[str, Any] | None = None


def read_run(out_dir: Path, specs: Any = None, reducers: Sequence[Any] = ()) -> RunRecords:
    """One pass over the run's ``requests.jsonl``: the columns with the chunk statistics the summary needs (ITL,
    tokens per chunk), the answers scored where ``specs`` (the plan's) have reference answers, the engine's timings
    cross-checked; ``reducers`` (e.g. the report's) are fed in the same pass."""
    tally = AccuracyTally(specs) if specs is not None and _has_references(specs) else None
    timings = TimingsCrosscheck()
    own = [ChunkStats(), timings, *([tally] if tally is not None else [])]
    cols = read_requests(Path(out_dir) / REQUESTS, reducers=[*own, *reducers])
    return RunRecords(cols, tally.table() if tally is not None else None, timings.table())


def read_run_columns(out_dir: Path) -> RequestColumns:
    """The run's records as columns, with the chunk statistics the summary needs (ITL, tokens per chunk)."""
    return read_requests(Path(out_dir) / REQUESTS, reducers=[ChunkStats()])


def target_rate_of(rate: Any, arrival: str | None) -> float | None:
    """The rate the achieved send rate is held to: none for --rate inf and for traces."""
    if not isinstance(rate, (int, float)) or math.isinf(rate) or arrival == "trace":
        return None
    return float(rate)


def rate_check(metrics: dict[str, Any], target_rate: float | None, client_check: dict[str, Any]) -> None:
    """Marks the run untrustworthy when the achieved send rate misses the planned one by more than 5 %."""
    rate = metrics["rate"]
    if target_rate and rate["achieved_send"] and metrics["requests"]["measured"] >= 50:
        miss = abs(rate["achieved_send"] - (rate["planned"] or target_rate)) / (
            rate["planned"] or target_rate
        )
        if miss > 0.05:
            client_check["trustworthy"] = False
            client_check["reasons"].append(
                f"achieved send rate {rate['achieved_send']:.2f}/s is {miss:.0%} off the planned "
                f"{rate['planned']:.2f}/s"
            )


def requests_outcome(
    requests: dict[str, Any], max_error_share: float | None, stopped: str | None, interrupted: bool
) -> dict[str, Any]:
    """Whether the run's requests failed (exit 3): stopped on refusals, all failed, or above --max-error-share."""
    reason = stopped
    measured, failed = requests["measured"], requests["failed"]
    kinds = ", ".join(f"{v} {k}" for k, v in requests["errors_by_kind"].items())
    if reason is None and not interrupted and measured:
        if failed == measured:
            reason = f"every measured request failed ({kinds})"
        elif max_error_share is not None and failed / measured > max_error_share:
            reason = (
                f"{failed / measured:.1%} of measured requests failed ({kinds}), "
                f"more than --max-error-share {max_error_share:g}"
            )
    return {
        "failed": reason is not None,
        "reason": reason,
        "stopped_early": stopped,
        "max_error_share": max_error_share,
    }


def groups_of(cols: RequestColumns) -> dict[str, Any]:
    """Latencies per dataset and per token budget, where the workload has them."""
    return {key: group_latencies(cols, key) for key in GROUP_TAGS if has_groups(cols, key)}


@dataclass(frozen=True, slots=True)
class ScrapeFacts:
    """What the scrape poller knew at the end: its counters and the engines it found, or why it never started."""

    stats: Mapping[str, Any] | None = None
    engines: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What a run knew that its files do not say: the summary is built from the files and this, once.

    ``infos`` and ``outcomes`` are each sender's, in sender order: what it said when ready (host, pid, model, where
    its read stamps come from, its clock offset) and when done (counters, self-check samples; None when lost).
    ``senders`` is summary.json's ``senders`` section of a run of several senders (None for one in this process).
    """

    header: Mapping[str, Any]
    t0_ns: int
    t0_unix_ns: int
    interrupted: bool
    simulated: bool
    infos: tuple[Mapping[str, Any], ...]
    outcomes: tuple[Mapping[str, Any] | None, ...]
    lost: Mapping[int, str] = field(default_factory=dict)
    senders: Mapping[str, Any] | None = None
    scrape: ScrapeFacts | None = None

    @property
    def stopped(self) -> str | None:
        """Why a sender stopped early on its own (the server refused the key), if one did."""
        return next((o["stopped"] for o in self.outcomes if o is not None and o.get("stopped")), None)

    @property
    def spin_s(self) -> float:
        return sum(float(o.get("spin_s") or 0.0) for o in self.outcomes if o is not None)

    @property
    def connection_note(self) -> str | None:
        return next((o["connection_note"] for o in self.outcomes if o and o.get("connection_note")), None)


def build_summary(
    cfg: RunConfig, out_dir: Path, facts: RunFacts, specs: Any = None, read: RunRecords | None = None
) -> dict[str, Any]:
    """The summary of the run whose files are in ``out_dir`` (every record written), under config ``cfg``;
    ``specs`` (the plan's) score the answers where the workload has reference answers. ``read``: the records
    already read (:func:`read_run`, with those specs), else they are read here."""
    out_dir = Path(out_dir)
    if read is None:
        read = read_run(out_dir, specs)
    cols = read.cols
    target_rate = target_rate_of(cfg.schedule.rate, cfg.schedule.arrival)
    metrics = summarize(
        cols,
        slo_ms=cfg.analysis.slo.as_dict(),
        straggler_k=cfg.analysis.straggler_iqr_k,
        target_rate=target_rate,
    )
    client_check = _client_check(cfg, cols, metrics, facts)
    rate_check(metrics, target_rate, client_check)
    if facts.connection_note and isinstance(metrics.get("connections"), dict):
        metrics["connections"]["note"] = facts.connection_note
    outcome = requests_outcome(
        metrics["requests"], cfg.analysis.max_error_share, facts.stopped, facts.interrupted
    )
    if facts.lost:
        outcome["senders_lost"] = _lost_lines(facts)
    summary: dict[str, Any] = {
        "loadgen_summary_version": 1,
        **facts.header,
        "interrupted": facts.interrupted,
        "clock": {
            "read_stamps": facts.infos[0].get("read_stamps") if facts.infos else None,
            "t0_ns": facts.t0_ns,
            "t0_unix_ns": facts.t0_unix_ns,
            "note": "record and server-metric times are ns since t0 on the monotonic perf_counter clock",
        },
        "metrics": metrics,
        "client_check": client_check,
        "outcome": outcome,
        "groups": groups_of(cols),
    }
    summary.update(turns_section(cols, cfg.sessions.history if cfg.sessions.enabled else None))
    if read.accuracy is not None:
        summary["accuracy"] = dict(read.accuracy)
        if facts.simulated:
            summary["accuracy"]["note"] = "simulated answers: the simulator is not a model"
    scrape = facts.scrape
    if scrape is not None:
        if scrape.error and not scrape.stats:  # the scraper process never started
            summary["server"] = {"error": scrape.error}
        else:
            summary.update(server_sections(out_dir, metrics, dict(scrape.stats or {}), dict(scrape.engines)))
    if (summary.get("server") or {}).get("dialect") == "llamacpp":  # its per-response timings, beside ours
        summary["engine_timings"] = read.engine_timings
    if facts.senders is not None:
        summary["senders"] = dict(facts.senders)
    return summary


def _client_check(
    cfg: RunConfig, cols: RequestColumns, metrics: dict[str, Any], facts: RunFacts
) -> dict[str, Any]:
    """One sender in this process: its own check; several: each judged alone (``loadgen.analysis.client_check``)."""
    outcomes = [dict(o) if o is not None else None for o in facts.outcomes]
    if facts.senders is None and outcomes and outcomes[0] is not None:
        return one_sender_check(cfg, metrics["latency_ms"]["send_lag"], outcomes[0])
    infos = [dict(i) for i in facts.infos]
    return senders_check(cfg, cols, infos, outcomes, dict(facts.lost))


def _lost_lines(facts: RunFacts) -> list[str]:
    rows = (facts.senders or {}).get("list") or []
    lost_records = {r["sender"]: r.get("worker_lost", 0) for r in rows}
    return [
        f"{sender_name(k, dict(facts.infos[k]))} was lost: {why} ({lost_records.get(k, 0):,} worker_lost records)"
        for k, why in sorted(facts.lost.items())
    ]


def _has_references(specs: Any) -> bool:
    """Whether any request has a reference answer (a plan's table says so without making its specs)."""
    known = getattr(specs, "has_references", None)
    return bool(known) if known is not None else any(sp.reference is not None for sp in specs)


def server_sections(
    out_dir: Path, metrics: dict[str, Any], scrape_stats: dict[str, Any] | None, info: dict[str, Any]
) -> dict[str, Any]:
    """The `server` section and straggler explanations from the scraped series; never fails the run."""
    try:
        from loadgen.records.columns import read_server
        from loadgen.scrape.explain import explain_requests
        from loadgen.scrape.summary import server_summary

        samples = read_server(Path(out_dir) / SERVER_METRICS)
        w = metrics["window"]
        server = server_summary(samples, (w["start_ns"], w["end_ns"]))
        if scrape_stats is not None:
            server["scrape"] = scrape_stats
        engine = info.get(server.get("url"))
        if engine:
            server["engine"] = engine
        strag = metrics["stragglers"]["requests"]
        explained = explain_requests(samples, [(s["index"], s["start_ns"], s["end_ns"]) for s in strag])
        by_index = {s["index"]: s for s in strag}
        for e in explained:
            own = by_index.get(e.get("index"), {})
            e.setdefault(
                "detail",
                f"e2e {own.get('e2e_ms', 0):,.0f} ms, {own.get('reasoning_tokens', 0)} reasoning / "
                f"{own.get('completion_tokens', 0)} output tokens, client queue {own.get('queue_wait_ms', 0):,.0f} ms",
            )
        return {"server": server, "straggler_explanations": explained}
    except Exception as exc:  # the scrape is auxiliary: report it, keep the run
        log.warning("server metrics summary failed: %s", exc)
        return {"server": {"error": f"{type(exc).__name__}: {exc}"}}
