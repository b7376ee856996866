"""The merged arrivals of two workers keep the planned schedule at the server (issue 13, item 2): Gamma arrivals at
50 req/s, cv 2, as ``benchmarks/fast_server.py`` logged their first bytes (its own ``perf_counter_ns``, the same
CLOCK_MONOTONIC as the senders' t0, so no clock is estimated).

* KS distance between the received gaps and the intended Gamma over gaps >= 1 ms (the step at 1 ms included)
  < 0.03; rate within 2 % of the plan. 1,000 requests with seed 1: the plan's own distance to the Gamma is 0.015
  there (0.015-0.04 over seeds 0-9 at this n; 1,500 requests would take 30 s). The two-sample distance received
  vs planned is recorded, not held to 0.03: at n = 1,000 its own noise is of that order (0.042 was seen with a
  load average of 4.7 while the distance to the Gamma was 0.022).
* Arrival residual (arrival - t0 - intended, less the median, the constant part): p50 < 1 ms, and p99 < 1 ms on a
  quiet machine. On this shared 2-core machine a p99 bound in ms is flaky, for one worker as much as for two
  (18 ms and 11 ms were measured with a load average of 4 from other suites), so above 1 ms the two-worker p99 is
  held to a ratio of a one-worker run's under the same conditions instead, with a wide margin; the pair is tried
  twice before that fails. The absolute numbers on a quiet machine are ``benchmarks/scale_out.py``'s.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from scipy import stats

from benchmarks._common import FastServer
from tests.integration.test_cli import cli

RATE, CV, SEED, N = 50.0, 2.0, 1, 1000


def _ks_tail(gaps_s: np.ndarray) -> float:
    """sup over x >= 1 ms of |F_gaps(x) - F_gamma(x)|, the step at 1 ms included."""
    dist = stats.gamma(1.0 / CV**2, scale=CV**2 / RATE)
    g = np.sort(gaps_s)
    n = len(g)
    cdf = dist.cdf(g)
    keep = g >= 1e-3
    d = max(
        float(np.max(np.abs(np.arange(1, n + 1)[keep] / n - cdf[keep]), initial=0.0)),
        float(np.max(np.abs(np.arange(0, n)[keep] / n - cdf[keep]), initial=0.0)),
    )
    return max(d, abs(float(np.mean(g < 1e-3)) - float(dist.cdf(1e-3))))


def _fidelity(tmp: Path, workers: str) -> dict:
    tmp.mkdir(parents=True)
    with FastServer("timed", tmp / "server.jsonl", ttft_ms=2, itl_ms=2, pin=False) as srv:
        r = cli("--base-url", srv.base_url, "--rate", str(RATE), "--cv", str(CV), "--seed", str(SEED),
                "-n", str(N), "--max-tokens", "4", "--input-len", "32", "--workers", workers,
                "--no-scrape", "--no-report", "--no-live", "--quiet", "--output-dir", str(tmp / "out"),
                timeout=300)  # fmt: skip
        assert r.returncode == 0, r.stderr
        served = {s["id"]: s["arrival_ns"] for s in srv.stop()["requests"].values()}
    t0 = json.loads((tmp / "out" / "summary.json").read_text())["clock"]["t0_ns"]
    recs = [json.loads(x) for x in (tmp / "out" / "requests.jsonl").read_text().splitlines()]
    assert len(recs) == N and all(r["status"] == "ok" for r in recs)
    intended = np.asarray([r["intended_ns"] for r in recs], dtype=np.int64)
    arrival = np.asarray([served[int(r["server_request_id"])] for r in recs], dtype=np.int64)
    off = (arrival - t0 - intended) / 1e6
    res = np.abs(off - np.median(off))
    got = np.diff(np.sort(arrival)) / 1e9
    planned = np.diff(intended) / 1e9
    span = (arrival.max() - arrival.min()) / 1e9
    return {
        "ks": _ks_tail(got),
        "ks_planned": _ks_tail(planned),
        "ks_vs_plan": float(stats.ks_2samp(got[got >= 1e-3], planned[planned >= 1e-3]).statistic),
        "res_p50": float(np.percentile(res, 50)),
        "res_p99": float(np.percentile(res, 99)),
        "rate_vs_plan": (N - 1) / span / ((N - 1) / (planned.sum())) - 1,
        "loadavg": os.getloadavg()[0],
    }


def test_merged_arrivals_of_two_workers_keep_the_schedule_at_the_server(tmp_path):
    attempts = []
    for attempt in range(2):
        two = _fidelity(tmp_path / f"two-{attempt}", "2")
        attempts.append(two)
        if not (two["ks"] < 0.03 and abs(two["rate_vs_plan"]) < 0.02 and two["res_p50"] < 1.0):
            continue
        if two["res_p99"] < 1.0:
            return
        one = _fidelity(tmp_path / f"one-{attempt}", "1")  # a busy machine: the same conditions, one worker
        attempts.append(one)
        if two["res_p99"] <= 3.0 * one["res_p99"] + 1.0:
            return
    raise AssertionError(
        f"two workers' merged arrivals (and one worker's, where measured), twice: {attempts}"
    )
