"""Throughput and goodput of a short run without its drain: loadgen.analysis.metrics.steady_rates."""

from __future__ import annotations

import pytest

from loadgen.analysis.metrics import steady_rates, summarize
from loadgen.records.record import RequestRecord

S = 1_000_000_000


def _rec(i: int, start_s: float, end_s: float, ttft_s: float = 0.01, ok: bool = True) -> RequestRecord:
    t0, t1 = int(start_s * S), int(end_s * S)
    return RequestRecord(
        index=i, intended_ns=t0, dispatched_ns=t0, send_ns=t0, first_token_ns=t0 + int(ttft_s * S),
        last_token_ns=t1, end_ns=t1, completion_tokens=10, status="ok" if ok else "error",
    )  # fmt: skip


def test_an_idle_server_reads_the_offered_rate_not_the_drain():
    # 20 requests at 5/s that each take 5 s: the whole-run window is 3.8 s of arrivals + 5 s of drain
    recs = [_rec(i, i / 5, i / 5 + 5.0) for i in range(20)]
    whole = summarize(recs, target_rate=5.0)
    assert whole["throughput"]["requests_per_s"] == pytest.approx(20 / 8.8)  # 2.27: what the sweep showed
    st = steady_rates(recs)
    assert st["requests_per_s"] == pytest.approx(whole["rate"]["planned"]) == pytest.approx(5.0)
    assert st["goodput_per_s"] == st["requests_per_s"] and st["short"] is False
    assert st["duration_s"] == pytest.approx(3.8) and st["shift_ms"] == pytest.approx(5000)
    assert "shifted later by the median E2E" in st["window"]


def test_an_overloaded_server_reads_its_capacity():
    # 10/s arrive, the server finishes one every 0.2 s: 5/s, whatever the run's length
    recs = [_rec(i, i / 10, 0.2 * (i + 1) + 0.1) for i in range(200)]
    assert steady_rates(recs)["requests_per_s"] == pytest.approx(5.0, rel=0.02)


def test_goodput_counts_only_requests_meeting_the_slo_in_the_same_window():
    recs = [_rec(i, i / 10, i / 10 + 0.5, ttft_s=0.2 if i % 2 else 0.8) for i in range(100)]
    st = steady_rates(recs, {"ttft": 500.0})
    assert st["requests_per_s"] == pytest.approx(10.0)
    assert st["goodput_per_s"] == pytest.approx(st["requests_per_s"] * st["good"] / st["completed"])
    assert st["good"] == pytest.approx(st["completed"] / 2, abs=1)


def test_failures_do_not_count_and_a_wide_latency_spread_is_flagged_short():
    recs = [_rec(i, i / 10, i / 10 + 0.5, ok=i % 4 != 0) for i in range(100)]
    assert steady_rates(recs)["requests_per_s"] == pytest.approx(10.0 * 0.75, rel=0.03)
    spread = [_rec(i, i / 5, i / 5 + (0.2 if i % 2 else 8.0)) for i in range(20)]  # E2E 0.2 s or 8 s
    assert steady_rates(spread)["short"] is True
    assert steady_rates([_rec(0, 0, 1)])["requests_per_s"] is None  # one request: no window
