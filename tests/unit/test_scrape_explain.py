"""Straggler verdicts on hand-made server series."""

from __future__ import annotations

from typing import Any

import pytest

from loadgen.scrape import VERDICTS, Sample, explain_requests

S = 1_000_000_000
K = 'engine="0"'


def _timeline(rows: list[tuple[float, float, float, float, float]], dialect: str = "vllm") -> list[Sample]:
    """rows: (t_s, kv, waiting, running, preemptions counter)."""
    out = []
    for t, kv, waiting, running, pre in rows:
        values: dict[str, Any] = {
            "num_waiting": {K: waiting},
            "num_running": {K: running},
        }
        if dialect == "vllm":
            values["kv_cache_usage"] = {K: kv}
            values["preemptions"] = {K: pre}
        out.append(Sample(int(t * S), int(t * S) - 1000, "u", dialect, values))
    return out


# 0-10 s idle, 10-20 s a queue with a full cache, 20-30 s full cache without a queue, 30-40 s preemptions, then idle.
ROWS = (
    [(t, 0.1, 0, 1, 0) for t in range(0, 10)]
    + [(t, 0.97, 4, 32, 0) for t in range(10, 20)]
    + [(t, 0.8, 0, 20, 0) for t in range(20, 30)]
    + [(t, 0.99, 0, 30, t - 29) for t in range(30, 40)]
    + [(t, 0.1, 0, 1, 10) for t in range(40, 51)]
)


def test_verdicts_follow_the_documented_rules() -> None:
    requests = [
        (0, 1 * S, 9 * S),  # alone on an idle server
        (1, 11 * S, 19 * S),  # during the queue
        (2, 21 * S, 29 * S),  # full cache, nobody waiting
        (3, 31 * S, 38 * S),  # preemptions while it ran
        (4, -5 * S, -1 * S),  # before the first scrape
        (5, 5 * S, 15 * S),  # half idle, half queued: waiting share 0.5 >= 0.3
    ]
    out = {r["index"]: r for r in explain_requests(_timeline(ROWS), requests)}
    assert out[0]["verdict"] == "long generation on an unloaded server"
    assert out[0]["kv_mean"] == 0.1 and out[0]["waiting_max"] == 0 and out[0]["preemptions"] == 0
    assert out[1]["verdict"] == "queued behind others"
    assert out[1]["waiting_mean"] == 4 and out[1]["waiting_share"] == 1.0 and out[1]["kv_max"] == 0.97
    assert out[2]["verdict"] == "busy server" and out[2]["running_mean"] == 20
    # bounded by the samples at 31 s (counter 2) and 38 s (counter 9)
    assert out[3]["verdict"] == "preempted" and out[3]["preemptions"] == 7
    assert out[4]["verdict"] == "no server data" and out[4]["coverage"] == 0
    assert out[5]["verdict"] == "queued behind others" and out[5]["waiting_share"] == 0.5
    assert out[5]["kv_mean"] == pytest.approx((0.1 * 5 + 0.97 * 5) / 10)
    assert {r["verdict"] for r in out.values()} <= set(VERDICTS)


def test_moderate_load_between_the_rules() -> None:
    # waiting 20 % of the life (below 0.3, above 0.05), cache at 0.5
    rows = [(t, 0.5, 1 if t < 2 else 0, 8, 0) for t in range(0, 11)]
    (r,) = explain_requests(_timeline(rows), [(7, 0, 10 * S)])
    assert r["waiting_share"] == 0.2 and r["verdict"] == "moderate load"


def test_without_kv_gauge_judges_on_the_queue_alone() -> None:
    rows = [(t, 0.0, 2 if 5 <= t < 10 else 0, 4, 0) for t in range(0, 16)]
    samples = _timeline(rows, dialect="tgi")
    queued, idle = explain_requests(samples, [(0, 5 * S, 10 * S), (1, 11 * S, 15 * S)])
    assert queued["kv_mean"] is None and queued["preemptions"] is None
    assert queued["verdict"] == "queued behind others"
    assert idle["verdict"] == "long generation on an unloaded server"


def test_short_request_between_two_scrapes_uses_the_step_value() -> None:
    rows = [(0, 0.95, 3, 10, 0), (1, 0.2, 0, 1, 0)]
    (r,) = explain_requests(_timeline(rows), [(0, int(0.2 * S), int(0.4 * S))])
    assert r["samples"] == 0 and r["coverage"] == 1.0
    assert r["kv_mean"] == 0.95 and r["verdict"] == "queued behind others"
