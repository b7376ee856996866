"""summary.json for a run that never wrote one: rebuilt from what it left on disk, saying what is missing.

A run killed with ``kill -9`` or by the OOM killer keeps ``requests.jsonl`` (one line per finished request, written
as each finishes), ``server_metrics.jsonl`` and ``run.json`` (written before the first request: target, masked
configuration, plan, versions), but never reaches its summary. :func:`rebuild_summary` recomputes every metric the
normal path computes from the same files, with the same functions, and lists under ``rebuilt.missing`` what cannot
be recovered: the client's self-check (CPU, event-loop lag), requests that were in flight or not yet sent, accuracy
(reference answers are not recorded), and, without ``run.json``, the configuration itself (then the analysis uses
the defaults: no SLO, straggler k = 3, no target rate).

``python -m loadgen report DIR`` calls it when ``DIR`` has records but no summary, and draws the report from the same
read of ``requests.jsonl`` (its reducers ride along: ``write_rebuilt_summary(DIR, reducers)`` returns the columns).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from loadgen.analysis.metrics import ChunkStats, summarize
from loadgen.records.columns import RequestColumns, read_requests
from loadgen.records.files import REQUESTS, RUN_JSON, SERVER_METRICS, STAGING_DIR, SUMMARY
from loadgen.results.summary import (
    groups_of,
    rate_check,
    requests_outcome,
    server_sections,
    target_rate_of,
)
from loadgen.results.summary_turns import turns_section

__all__ = ["rebuild_summary", "write_rebuilt_summary"]

DEFAULT_STRAGGLER_K = 3.0
DEFAULT_SEND_LAG_LIMIT_MS = 5.0


def rebuild_summary(out_dir: Path | str) -> dict[str, Any]:
    """The summary of the run in ``out_dir`` from its files; ``summary["rebuilt"]["missing"]`` says what is not."""
    return _rebuild(Path(out_dir), ())[0]


def _rebuild(out: Path, reducers: Sequence[Any]) -> tuple[dict[str, Any], RequestColumns]:
    """The rebuilt summary and the columns it was computed from (read with ``reducers`` too)."""
    rpath = out / REQUESTS
    from loadgen.results.merge import merge_staged

    staged = merge_staged(out)  # a multi-sender run killed before it merged its senders' files
    if not rpath.is_file():
        from loadgen.errors import ConfigError

        raise ConfigError(f"{out}: neither summary.json nor requests.jsonl: nothing to rebuild")
    cols = read_requests(rpath, reducers=[ChunkStats(), *reducers])
    run: dict[str, Any] | None = None
    if (out / RUN_JSON).is_file():
        run = orjson.loads((out / RUN_JSON).read_bytes())
    missing: list[str] = []
    sources = [REQUESTS] if staged is None else [f"{STAGING_DIR}/ (the senders' files, merged by index)"]
    if run is None:
        missing.append(
            "run.json (configuration, plan, target): the analysis uses the defaults (no SLO, straggler k = 3, "
            "no target rate)"
        )
    else:
        sources.append(RUN_JSON)
    cfg = (run or {}).get("config") or {}
    analysis = cfg.get("analysis") or {}
    sched_cfg = cfg.get("schedule") or {}
    target_rate = target_rate_of(sched_cfg.get("rate"), sched_cfg.get("arrival"))
    metrics = summarize(
        cols,
        slo_ms=analysis.get("slo_ms") or {},
        straggler_k=analysis.get("straggler_iqr_k") or DEFAULT_STRAGGLER_K,
        target_rate=target_rate,
    )

    planned = (run or {}).get("planned_requests")
    if planned is not None and len(cols) < planned:
        missing.append(
            f"{planned - len(cols):,} of {planned:,} planned requests have no record: in flight or not yet "
            "sent when the run ended"
        )

    client_check = _send_lag_check(metrics, analysis)
    rate_check(metrics, target_rate, client_check)
    missing.append("the client's self-check (CPU, event-loop lag): it is written only at the end of a run")

    summary = _rebuilt_header(out, run or {})
    summary.update(
        metrics=metrics,
        client_check=client_check,
        outcome=requests_outcome(metrics["requests"], analysis.get("max_error_share"), None, False),
        groups=groups_of(cols),
    )
    summary.update(turns_section(cols, (cfg.get("sessions") or {}).get("history")))
    workload = cfg.get("workload") or {}
    if workload.get("kind") in ("dataset", "file"):
        missing.append("accuracy: the workload's reference answers are not recorded with the requests")
    if (out / SERVER_METRICS).is_file() and len(cols):
        summary.update(server_sections(out, metrics, None, {}))
        sources.append(SERVER_METRICS)
    summary["rebuilt"] = {
        "from": sources,
        "missing": missing,
        "note": "this run ended without writing summary.json (killed?); this summary was rebuilt from its files",
    }
    return summary, cols


def _send_lag_check(metrics: dict[str, Any], analysis: dict[str, Any]) -> dict[str, Any]:
    """The self-check ran inside the killed process: only the send lag can be judged again, from the records."""
    limit = analysis.get("send_lag_p99_limit_ms") or DEFAULT_SEND_LAG_LIMIT_MS
    lag = metrics["latency_ms"]["send_lag"]
    reasons = []
    if lag.get("p99") is not None and lag["p99"] > limit:
        reasons.append(f"send lag p99 {lag['p99']:.2f} ms > {limit:g} ms: requests left later than planned")
    return {
        "trustworthy": False if reasons else None,
        "reasons": reasons,
        "send_lag_ms": {k: lag.get(k) for k in ("p50", "p99", "max")},
        "note": "rebuilt: the client's CPU and event-loop lag were not recorded; only the send lag was checked",
    }


def _rebuilt_header(out: Path, run: dict[str, Any]) -> dict[str, Any]:
    """What run.json said of the run (placeholders without it), as summary.json's first keys."""
    return {
        "loadgen_summary_version": 1,
        "output_dir": str(out),
        "label": run.get("label"),
        "target": run.get("target") or {"kind": "unknown", "base_url": None, "model": None},
        "config": run.get("config") or {},
        "schedule": run.get("schedule") or {"arrival": "unknown"},
        "versions": run.get("versions") or {},
        "argv": run.get("argv") or [],
        "interrupted": False,
        "clock": {
            "t0_ns": None,
            "t0_unix_ns": run.get("started_unix_ns"),
            "note": "rebuilt: t0_unix_ns is when run.json was written, a few ms before t0; record times are ns "
            "since t0 on the monotonic perf_counter clock",
        },
    }


def write_rebuilt_summary(
    out_dir: Path | str, reducers: Sequence[Any] = ()
) -> tuple[dict[str, Any], RequestColumns]:
    """Rebuild and write ``summary.json``; returns the summary and the columns of requests.jsonl, read once with the
    summary's reducers and ``reducers`` (the report's: it draws from them without reading the file again)."""
    out = Path(out_dir)
    summary, cols = _rebuild(out, reducers)
    tmp = out / "summary.json.tmp"
    tmp.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    tmp.replace(out / SUMMARY)
    return summary, cols
