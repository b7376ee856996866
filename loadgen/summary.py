"""summary.json of a finished run, computed from what the run wrote: ``requests.jsonl`` and ``server_metrics.jsonl``.

During a run no record is kept in memory (each goes to the sink and is dropped), so the summary reads the records
back as columns (:mod:`loadgen.columns`) and computes every number vectorised (:mod:`loadgen.metrics`): a run of
any length costs its columns, never its records. Accuracy needs the answers' text: it streams the records, one at a
time. :func:`build_summary` is the end of a run; :mod:`loadgen.rebuild` uses the same parts for a run that was
killed before it got there.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from loadgen.columns import RequestColumns, read_requests
from loadgen.engine_timings import crosscheck
from loadgen.metrics import ChunkStats, group_latencies, has_groups, summarize
from loadgen.records import iter_records
from loadgen.summary_turns import turns_section

log = logging.getLogger(__name__)

REQUESTS = "requests.jsonl"
SERVER_METRICS = "server_metrics.jsonl"
GROUP_TAGS = ("dataset", "budget")


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


def build_summary(
    cfg: Any,
    out_dir: Path,
    *,
    header: dict[str, Any],
    check: Any,
    spin_s: float,
    endpoint: Any,
    t0_ns: int,
    t0_unix_ns: int,
    interrupted: bool,
    poller: Any = None,
    specs: list[Any] | None = None,
    read_stamps: str | None = None,
    connection_note: str | None = None,
    stopped: str | None = None,
) -> dict[str, Any]:
    """The summary of the run whose files are in ``out_dir`` (the record sink closed), under config ``cfg``."""
    out_dir = Path(out_dir)
    cols = read_run_columns(out_dir)
    target_rate = target_rate_of(cfg.schedule.rate, cfg.schedule.arrival)
    metrics = summarize(
        cols,
        slo_ms=cfg.analysis.slo.as_dict(),
        straggler_k=cfg.analysis.straggler_iqr_k,
        target_rate=target_rate,
    )
    client_check = check.report(
        metrics["latency_ms"]["send_lag"],
        spin_s,
        cfg.analysis.send_lag_p99_limit_ms,
        cfg.analysis.client_cpu_limit,
        loop_lag_p99_limit_ms=cfg.analysis.loop_lag_p99_limit_ms,
        loop_lag_max_limit_ms=cfg.analysis.loop_lag_max_limit_ms,
    )
    rate_check(metrics, target_rate, client_check)
    if connection_note and isinstance(metrics.get("connections"), dict):
        metrics["connections"]["note"] = connection_note
    summary: dict[str, Any] = {
        "loadgen_summary_version": 1,
        **header,
        "interrupted": interrupted,
        "clock": {
            "read_stamps": read_stamps,
            "t0_ns": t0_ns,
            "t0_unix_ns": t0_unix_ns,
            "note": "record and server-metric times are ns since t0 on the monotonic perf_counter clock",
        },
        "metrics": metrics,
        "client_check": client_check,
        "outcome": requests_outcome(metrics["requests"], cfg.analysis.max_error_share, stopped, interrupted),
    }
    summary["groups"] = groups_of(cols)
    summary.update(turns_section(cols, cfg.sessions.history if cfg.sessions.enabled else None))
    if specs is not None and _has_references(specs):
        from loadgen.accuracy import accuracy_table

        records = sorted(iter_records(out_dir / REQUESTS, chunks=False), key=lambda r: r.index)
        summary["accuracy"] = accuracy_table(records, specs)
        if endpoint.simulated:
            summary["accuracy"]["note"] = "simulated answers: the simulator is not a model"
    if poller is not None:
        if getattr(poller, "error", None) and not poller.stats:  # the scraper process never started
            summary["server"] = {"error": poller.error}
        else:
            summary.update(server_sections(out_dir, metrics, dict(poller.stats), poller.info))
    if (summary.get("server") or {}).get("dialect") == "llamacpp":  # its per-response timings, beside ours
        summary["engine_timings"] = crosscheck(iter_records(out_dir / REQUESTS, chunks=False))
    return summary


def _has_references(specs: Any) -> bool:
    """Whether any request has a reference answer (a plan's table says so without making its specs)."""
    known = getattr(specs, "has_references", None)
    return bool(known) if known is not None else any(sp.reference is not None for sp in specs)


def server_sections(
    out_dir: Path, metrics: dict[str, Any], scrape_stats: dict[str, Any] | None, info: dict[str, Any]
) -> dict[str, Any]:
    """The `server` section and straggler explanations from the scraped series; never fails the run."""
    try:
        from loadgen.columns import read_server
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
