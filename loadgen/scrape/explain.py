"""Straggler explanation: the server's state during each request's lifetime, and a one-line verdict.

The verdict comes from a closed set and the first rule that matches wins:

1. ``no server data``: no sample at or before the request's end (scraping off, failing, or started late).
2. ``preempted``: the server's preemption counter rose during the request's life. Server-wide evidence: the
   engine does not say *which* request it preempted, so this reads "preemptions happened while it ran".
3. ``queued behind others``: requests were waiting for at least ``WAITING_SHARE`` of its life, or the KV cache
   averaged >= ``KV_HIGH`` while anything waited: the scheduler had no room and requests stood in line.
4. ``busy server``: nothing waited, but the KV cache averaged >= ``KV_BUSY``: it shared a full batch.
5. ``long generation on an unloaded server``: nothing waited for more than ``IDLE_WAITING_SHARE`` of its life and
   the KV cache stayed below ``KV_BUSY``: it was slow on its own (long reasoning, a hard problem), not made slow.
6. ``moderate load``: anything else.

Engines without a KV gauge (TGI) are judged on the queue alone (rules 3 and 5 without their KV parts).
The caller adds the request's own facts (reasoning tokens, client-side queue wait) beside these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loadgen.records.columns import ServerColumns
from loadgen.scrape.series import CounterSeries, GaugeSeries, KvCacheSeries, Sample, as_server_columns

VERDICTS = (
    "no server data",
    "preempted",
    "queued behind others",
    "busy server",
    "long generation on an unloaded server",
    "moderate load",
)
WAITING_SHARE = 0.3
IDLE_WAITING_SHARE = 0.05
KV_HIGH = 0.9
KV_BUSY = 0.7


def _round(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(x, nd)


def explain_requests(
    samples: Sequence[Sample] | ServerColumns, requests: list[tuple[int, int, int]]
) -> list[dict[str, Any]]:
    """One dict per ``(index, start_ns, end_ns)``: server state over that lifetime and a verdict from VERDICTS.

    ``samples``: the columns of ``server_metrics.jsonl`` (:func:`loadgen.records.columns.read_server`) or Sample objects."""
    samples = as_server_columns(samples)
    kv = KvCacheSeries.from_samples(samples)
    waiting = GaugeSeries.from_samples(samples, "num_waiting", "sum")
    running = GaugeSeries.from_samples(samples, "num_running", "sum")
    preempt = CounterSeries.from_samples(samples, "preemptions")
    has_kv = len(kv) > 0
    out = []
    for index, start, end in requests:
        end = max(end, start + 1)
        row: dict[str, Any] = {"index": index, "start_ns": start, "end_ns": end}
        covered = waiting.covered_ns(start, end) if len(waiting) else 0
        n_samples = (
            int(((waiting.times_ns >= start) & (waiting.times_ns <= end)).sum()) if len(waiting) else 0
        )
        row["samples"] = n_samples
        row["coverage"] = _round(covered / (end - start))
        row["kv_mean"] = _round(kv.mean(start, end)) if has_kv else None
        row["kv_max"] = _round(kv.max(start, end)) if has_kv else None
        row["waiting_mean"] = _round(waiting.mean(start, end)) if len(waiting) else None
        row["waiting_max"] = _round(waiting.max(start, end)) if len(waiting) else None
        waiting_ns, waiting_share = waiting.time_above(0.0, start, end) if len(waiting) else (0, 0.0)
        row["waiting_share"] = _round(waiting_share)
        row["running_mean"] = _round(running.mean(start, end)) if len(running) else None
        row["preemptions"] = preempt.delta(start, end) if len(preempt) else None
        row["verdict"] = _verdict(row, covered > 0)
        out.append(row)
    return out


def _verdict(row: dict[str, Any], covered: bool) -> str:
    if not covered:
        return "no server data"
    if row["preemptions"]:
        return "preempted"
    kv_mean = row["kv_mean"]
    waited = (row["waiting_max"] or 0) > 0
    if row["waiting_share"] >= WAITING_SHARE or (kv_mean is not None and kv_mean >= KV_HIGH and waited):
        return "queued behind others"
    if kv_mean is not None and kv_mean >= KV_BUSY:
        return "busy server"
    if row["waiting_share"] <= IDLE_WAITING_SHARE:
        return "long generation on an unloaded server"
    return "moderate load"
