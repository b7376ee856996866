"""A synthetic results folder of any size, for measuring how fast the HTML report is written (not for studies).

``python -m loadgen.report.synthetic_run OUT --requests 100000 --hours 24`` writes ``requests.jsonl``,
``server_metrics.jsonl`` and ``summary.json`` shaped exactly like a real run's (the summary is computed by
:func:`loadgen.analysis.metrics.summarize` over the generated records), so ``python -m loadgen report OUT`` can be timed on a
100,000-request, 24-hour run without a day of waiting.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from loadgen.analysis.metrics import summarize
from loadgen.records.files import REQUESTS, SERVER_METRICS, SUMMARY
from loadgen.records.record import RequestRecord
from loadgen.results.summary import read_run_columns

__all__ = ["generate_records", "main", "scrape_lines", "write_folder"]

LABELS = 'engine="0",model_name="synthetic"'
HIST_LE = [
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
]


def generate_records(
    n: int, duration_s: float, seed: int = 0, mean_tokens: int = 200
) -> Iterator[RequestRecord]:
    """Requests arriving uniformly over ``duration_s``; lognormal output lengths, one token per chunk; yielded one
    at a time (any ``n`` in bounded memory)."""
    rng = np.random.default_rng(seed)
    starts = np.sort(rng.uniform(0, duration_s * 0.97, n)) * 1e9
    out_tokens = np.clip(rng.lognormal(np.log(mean_tokens), 0.8, n), 2, 30 * mean_tokens).astype(int)
    reasoning = (out_tokens * rng.uniform(0.5, 0.95, n)).astype(int)
    ttft = rng.lognormal(np.log(30e6), 0.7, n)  # ns
    tpot = rng.lognormal(np.log(8e6), 0.2, n)
    for i in range(n):
        t0 = int(starts[i])
        send = t0 + 50_000
        first = send + int(ttft[i])
        k = int(out_tokens[i])
        gaps = rng.exponential(tpot[i], k - 1) if k > 1 else np.empty(0)
        chunk = (first + np.concatenate(([0.0], np.cumsum(gaps)))).astype(np.int64).tolist()
        r = int(reasoning[i])
        failed = i % 997 == 5
        rec = RequestRecord(
            index=i,
            intended_ns=t0,
            dispatched_ns=t0 + 20_000,
            send_ns=send,
            first_byte_ns=send + 1_000_000,
            first_chunk_ns=chunk[0],
            first_token_ns=chunk[0],
            first_reasoning_ns=chunk[0] if r else None,
            first_content_ns=chunk[r] if r < k else None,
            last_token_ns=chunk[-1],
            end_ns=chunk[-1] + 200_000,
            chunk_ns=chunk,
            chunk_tokens=[1] * k,
            chunk_kind="r" * r + "c" * (k - r),
            prompt_tokens=256,
            completion_tokens=k,
            reasoning_tokens=r,
            reasoning_tokens_stream=r,
            token_count_source="continuous_usage",
            finish_reason="stop",
            http_status=200,
            tags={"dataset": "synthetic"},
            output_text="the answer is 42",
        )
        if failed:
            rec.status, rec.error_kind, rec.error_message = "error", "timeout", "synthetic timeout"
            rec.finish_reason = None
        yield rec


def scrape_lines(duration_s: float, interval_s: float, seed: int = 0) -> list[bytes]:
    """vLLM-shaped scrapes: KV usage, running/waiting gauges, preemption and token counters."""
    rng = np.random.default_rng(seed + 1)
    n = int(duration_s / interval_s) + 1
    t = np.arange(n) * interval_s
    kv = np.clip(0.5 + 0.4 * np.sin(t / 600) + rng.normal(0, 0.05, n), 0, 1)
    running = np.round(kv * 40)
    waiting = np.maximum(0, np.round((kv - 0.85) * 100))
    preempt = np.cumsum(rng.random(n) < (kv > 0.95) * 0.3)
    gen = np.cumsum(rng.poisson(3000 * interval_s * kv))
    lines = []
    for i in range(n):
        values: dict[str, Any] = {
            "kv_cache_usage": {LABELS: round(float(kv[i]), 4)},
            "num_running": {LABELS: float(running[i])},
            "num_waiting": {LABELS: float(waiting[i])},
            "preemptions": {LABELS: float(preempt[i])},
            "generation_tokens": {LABELS: float(gen[i])},
        }
        for hname in ("ttft", "itl", "e2e", "queue_time"):  # real scrapes are mostly histograms by bytes
            values[hname] = {LABELS: {"le": HIST_LE, "cum": [float(i * j) for j in range(len(HIST_LE))],
                                      "sum": float(i), "count": float(i * len(HIST_LE))}}  # fmt: skip
        ts = int(t[i] * 1e9)
        lines.append(
            orjson.dumps(
                {
                    "t_ns": ts + 1_000_000,
                    "t_start_ns": ts,
                    "url": "synthetic",
                    "dialect": "vllm",
                    "values": values,
                }
            )
        )
    return lines


def write_folder(out: Path, n: int, hours: float, interval_s: float = 1.0, seed: int = 0) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    duration = hours * 3600
    with open(out / REQUESTS, "wb") as fh:
        for r in generate_records(n, duration, seed):
            fh.write(r.to_json() + b"\n")
    (out / SERVER_METRICS).write_bytes(b"\n".join(scrape_lines(duration, interval_s, seed)) + b"\n")
    # from the file, as a run's summary is: bounded memory for any n
    metrics = summarize(read_run_columns(out), straggler_k=3.0, target_rate=n / duration)
    summary = {
        "loadgen_summary_version": 1,
        "output_dir": str(out),
        "label": "synthetic",
        "interrupted": False,
        "target": {"kind": "synthetic", "base_url": "-", "model": "synthetic", "api": "chat"},
        "config": {"schedule": {"arrival": "gamma", "rate": n / duration, "cv": 1.0, "num_requests": n}},
        "schedule": {"arrival": "gamma", "rate": n / duration, "cv": 1.0, "seed": seed},
        "clock": {"t0_ns": 0, "t0_unix_ns": 0},
        "metrics": metrics,
        "client_check": {"trustworthy": True, "reasons": [], "send_lag_ms": {"p50": 0.02, "p99": 0.05}},
        "groups": {},
        "server": {"dialect": "vllm", "scrape": {"interval_s": interval_s}},
        "straggler_explanations": [],
    }
    (out / SUMMARY).write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        allow_abbrev=False, prog="python -m loadgen.report.synthetic_run", description=__doc__.split("\n")[0]
    )
    p.add_argument("out", type=Path)
    p.add_argument("--requests", type=int, default=100_000)
    p.add_argument("--hours", type=float, default=24.0)
    p.add_argument("--scrape-interval", type=float, default=1.0)
    ns = p.parse_args(argv)
    print(write_folder(ns.out, ns.requests, ns.hours, ns.scrape_interval))
    return 0


if __name__ == "__main__":
    sys.exit(main())
