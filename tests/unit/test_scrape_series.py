"""Time-weighted gauges, reset-corrected counters, histogram-delta percentiles and the server summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from loadgen.scrape import (
    CounterSeries,
    GaugeSeries,
    HistogramDelta,
    HistogramSeries,
    KvCacheSeries,
    Sample,
    load_samples,
    server_summary,
)

S = 1_000_000_000
E0, E1 = 'engine="0"', 'engine="1"'


def _s(t_s: float, values: dict[str, Any], dialect: str = "vllm") -> Sample:
    t = int(t_s * S)
    return Sample(t, t - 1_000_000, "http://127.0.0.1:1/metrics", dialect, values)


def _h(cum: list[float], total: float, count: float, le: tuple[float, ...] = (0.1, 0.5, 1.0, 2.0)) -> dict:
    return {"le": list(le), "cum": cum, "sum": total, "count": count}


def test_kv_mean_is_time_weighted_not_sample_weighted() -> None:
    kv = KvCacheSeries.from_samples(
        [
            _s(0, {"kv_cache_usage": {E0: 0.0}}),
            _s(1, {"kv_cache_usage": {E0: 1.0}}),
            _s(3, {"kv_cache_usage": {E0: 0.5}}),
        ]
    )
    # step function over [0, 4 s): 0.0 for 1 s, 1.0 for 2 s, 0.5 for 1 s; the sample mean would be 0.5
    assert kv.mean(0, 4 * S) == pytest.approx(0.625)
    assert kv.max(0, 4 * S) == 1.0
    assert kv.quantile(0.5, 0, 4 * S) == 0.5
    assert kv.quantile(0.99, 0, 4 * S) == 1.0
    assert kv.time_above(0.9, 0, 4 * S) == (2 * S, 0.5)
    # a window inside one step
    assert kv.mean(int(1.5 * S), int(2.5 * S)) == 1.0
    assert kv.value_at(int(0.5 * S)) == 0.0 and kv.value_at(-1) is None


def test_kv_aggregates_engines_by_mean_or_max() -> None:
    samples = [_s(0, {"kv_cache_usage": {E0: 0.2, E1: 0.8}}), _s(1, {"kv_cache_usage": {E0: 0.4, E1: 1.0}})]
    assert KvCacheSeries.from_samples(samples).mean(0, 2 * S) == pytest.approx(0.6)
    assert KvCacheSeries.from_samples(samples, agg="max").mean(0, 2 * S) == pytest.approx(0.9)
    assert GaugeSeries.from_samples(samples, "kv_cache_usage", "sum").values.tolist() == pytest.approx(
        [1.0, 1.4]
    )


def test_counter_reset_is_corrected_per_series() -> None:
    samples = [
        _s(0, {"preemptions": {E0: 10.0, E1: 1.0}}),
        _s(1, {"preemptions": {E0: 20.0, E1: 2.0}}),
        _s(2, {"preemptions": {E0: 5.0, E1: 3.0}}),  # engine 0 restarted: 5 new since the reset
        _s(3, {"preemptions": {E0: 15.0, E1: 4.0}}),
    ]
    c = CounterSeries.from_samples(samples, "preemptions")
    assert c.resets == 1
    assert c.delta(0, 3 * S) == 10 + 5 + 10 + 3  # engine 0: +10, +5, +10; engine 1: +3
    assert c.delta(int(1.5 * S), int(2.5 * S)) == 5 + 10 + 2  # bounded by the samples at 1 s and 3 s
    assert c.span_ns(int(1.5 * S), int(2.5 * S)) == 2 * S


def test_counter_delta_needs_two_samples() -> None:
    assert CounterSeries.from_samples([_s(0, {"preemptions": {E0: 1.0}})], "preemptions").delta(0, S) is None


def test_histogram_delta_percentiles_hand_computed() -> None:
    # A at 0 s, B at 2 s; a sample at 1 s must not matter for a window bounded by 0 s and 2 s.
    samples = [
        _s(0, {"ttft": {E0: _h([1, 2, 3, 3], 1.0, 3)}}),
        _s(1, {"ttft": {E0: _h([1, 3, 5, 6], 4.0, 6)}}),
        _s(2, {"ttft": {E0: _h([1, 6, 9, 11], 10.0, 11)}}),
    ]
    d = HistogramSeries.from_samples(samples, "ttft").delta(int(0.5 * S), int(1.5 * S))
    assert d is not None
    assert d.cum == [0, 4, 6, 8] and d.count == 8 and d.sum == 9.0
    assert d.mean == pytest.approx(9.0 / 8)
    # p50: rank 4 -> bucket (0.1, 0.5] holding ranks 1..4
    assert d.quantile_bucket(0.5) == (0.1, 0.5)
    # p90: rank 7.2 -> bucket (1.0, 2.0] holding ranks 7..8
    assert d.quantile_bucket(0.9) == (1.0, 2.0)
    assert d.quantile_bucket(0.99) == (1.0, 2.0)
    # p10: rank 0.8 -> the first non-empty bucket (0.1, 0.5]
    assert d.quantile_bucket(0.1) == (0.1, 0.5)


def test_histogram_quantile_is_a_bucket_never_an_invented_point() -> None:
    """Issue 11 item 6, with the numbers seen on vLLM: queue_time mean 1.5 ms in a first bucket of 0-0.3 s was
    reported as p50 150 ms; an e2e p99 above the last bound (10 s) as exactly 10,000 ms for a true max of 14.7 s."""
    queue = HistogramDelta([0.3, 0.5, 0.8], [100, 100, 100], 0.15, 100)  # 100 requests, mean 1.5 ms
    assert queue.quantile_bucket(0.5) == (0.0, 0.3)  # <= 300 ms: not 150 ms
    e2e = HistogramDelta([1.0, 2.5, 5.0, 10.0], [10, 50, 90, 98], 500.0, 100)  # 2 above 10 s (one was 14.7 s)
    assert e2e.quantile_bucket(0.99) == (10.0, None)  # > 10 s: not 10 s
    assert e2e.quantile_bucket(0.5) == (1.0, 2.5)

    samples = [
        _s(0, {"queue_time": {E0: _h([0, 0, 0], 0.0, 0, (0.3, 0.5, 0.8))},
               "e2e": {E0: _h([0, 0, 0, 0], 0.0, 0, (1.0, 2.5, 5.0, 10.0))}}),
        _s(1, {"queue_time": {E0: _h([100, 100, 100], 0.15, 100, (0.3, 0.5, 0.8))},
               "e2e": {E0: _h([10, 50, 90, 98], 500.0, 100, (1.0, 2.5, 5.0, 10.0))}}),
    ]  # fmt: skip
    out = server_summary(samples, window=(0, S))
    q, e = out["latency_s"]["queue_time"], out["latency_s"]["e2e"]
    assert q["mean"] == pytest.approx(0.0015) and q["p50"] == {"gt": 0.0, "le": 0.3}
    assert e["p99"] == {"gt": 10.0, "le": None} and e["p50"] == {"gt": 1.0, "le": 2.5}
    assert any("cannot say where inside" in n for n in out["notes"])

    from loadgen.scrape.summary import format_bucket

    assert format_bucket(q["p50"]) == "≤ 300 ms"
    assert format_bucket(e["p99"]) == "> 10,000 ms"
    assert format_bucket(e["p50"]) == "1,000–2,500 ms"

    # the console says the same, and that these are buckets
    import io

    from rich.console import Console

    from loadgen.report.console import _print_server

    buf = io.StringIO()
    _print_server(out, Console(file=buf, width=200))
    text = buf.getvalue()
    assert "> 10,000 ms" in text and "bucket" in text and "10,000 /" not in text


def test_histogram_sums_engines_and_survives_reset() -> None:
    samples = [
        _s(0, {"e2e": {E0: _h([1, 1, 1, 1], 0.05, 1), E1: _h([0, 1, 1, 1], 0.3, 1)}}),
        _s(1, {"e2e": {E0: _h([2, 2, 2, 2], 0.1, 2), E1: _h([0, 2, 2, 2], 0.6, 2)}}),
        _s(2, {"e2e": {E0: _h([0, 0, 1, 1], 0.7, 1), E1: _h([0, 3, 3, 3], 0.9, 3)}}),  # engine 0 reset
    ]
    d = HistogramSeries.from_samples(samples, "e2e").delta(0, 2 * S)
    assert d is not None
    # step 1: both +1 (e0 in the first bucket, e1 in the second); step 2: e0 reset -> its new 1 obs in (0.5, 1];
    # e1 +1 in the second bucket
    assert d.count == 4
    assert d.cum == [1, 3, 4, 4]
    assert d.sum == pytest.approx(0.05 + 0.3 + 0.7 + 0.3)


def _run_samples() -> list[Sample]:
    rows = []
    for i in range(11):  # 0..10 s, one sample a second
        rows.append(
            _s(
                i,
                {
                    "kv_cache_usage": {E0: 0.95 if 4 <= i < 8 else 0.5},
                    "num_running": {E0: 10.0},
                    "num_waiting": {E0: 3.0 if 4 <= i < 8 else 0.0},
                    "preemptions": {E0: 2.0 * i},
                    "prefix_cache_queries": {E0: 100.0 * i},
                    "prefix_cache_hits": {E0: 25.0 * i},
                    "prompt_tokens": {E0: 1000.0 * i},
                    "generation_tokens": {E0: 500.0 * i},
                    "spec_num_drafts": {E0: 10.0 * i},
                    "spec_draft_tokens": {E0: 30.0 * i},
                    "spec_accepted_tokens": {E0: 12.0 * i},
                    "ttft": {E0: _h([i, 2 * i, 2 * i, 2 * i], 0.3 * i, 2 * i)},
                },
            )
        )
    return rows


def test_server_summary_over_window_only() -> None:
    out = server_summary(_run_samples(), window=(2 * S, 10 * S))
    kv = out["kv_cache_usage"]
    # [2, 10): 0.5 for 2 s, 0.95 for 4 s, 0.5 for 2 s
    assert kv["mean"] == pytest.approx((0.5 * 4 + 0.95 * 4) / 8)
    assert kv["time_above_90pct_s"] == 4.0 and kv["share_above_90pct"] == 0.5
    assert kv["max"] == 0.95 and kv["p50"] == 0.5 and kv["p99"] == 0.95
    assert out["num_waiting"] == {"mean": 1.5, "max": 3.0}
    assert out["preemptions"] == 16.0
    assert out["prefix_cache"]["hit_rate"] == 0.25 and out["prefix_cache"]["source"] == "counters"
    spec = out["spec_decode"]
    assert spec["acceptance_rate"] == pytest.approx(0.4)  # 12 / 30
    assert spec["mean_accepted_length"] == pytest.approx(2.2)  # 1 + 12 / 10
    assert out["tokens"]["prompt"] == 8000 and out["tokens"]["generation_per_s"] == 500.0
    ttft = out["latency_s"]["ttft"]
    assert ttft["count"] == 16 and ttft["mean"] == pytest.approx(2.4 / 16)
    # 8 in (0, 0.1], 8 in (0.1, 0.5]: rank 8 ends the first bucket
    assert ttft["p50"] == {"gt": 0.0, "le": 0.1}
    assert ttft["p90"] == {"gt": 0.1, "le": 0.5}
    assert "ttft" in out["available"] and "itl" in out["missing"]


def test_summary_reports_tgi_missing_with_reason_and_sglang_gauge_fallback() -> None:
    tgi = [_s(t, {"num_waiting": {"": 1.0}, "num_running": {"": 2.0}}, "tgi") for t in range(3)]
    out = server_summary(tgi, window=(0, 2 * S))
    assert "kv_cache_usage" not in out and "TGI" in out["missing"]["kv_cache_usage"]
    assert "time-to-first-token" in out["missing"]["ttft"]
    sgl = [_s(t, {"prefix_cache_hit_rate": {"": 0.2 if t < 2 else 0.6}}, "sglang") for t in range(4)]
    out = server_summary(sgl, window=(0, 4 * S))
    assert out["prefix_cache"] == {"hit_rate": pytest.approx(0.4), "source": "gauge"}
    assert any("last-interval gauge" in n for n in out["notes"])


def test_summary_refuses_mixed_servers_without_url() -> None:
    a = _s(0, {"num_running": {"": 1.0}})
    b = Sample(a.t_ns, a.t_start_ns, "http://127.0.0.1:2/metrics", "vllm", a.values)
    with pytest.raises(ValueError, match="2 servers"):
        server_summary([a, b], window=(0, S))
    assert server_summary([a, b], window=(0, S), url=b.url)["num_running"]["max"] == 1.0


def test_load_samples_skips_errors_and_torn_line(tmp_path: Path) -> None:
    p = tmp_path / "server_metrics.jsonl"
    lines = [
        {"t_ns": 20, "t_start_ns": 10, "url": "u", "dialect": "vllm", "values": {"num_running": {"": 2.0}}},
        {"t_ns": 5, "t_start_ns": 1, "url": "u", "error": "timeout", "message": "x"},
        {"t_ns": 10, "t_start_ns": 2, "url": "u", "dialect": "vllm", "values": {"num_running": {"": 1.0}}},
    ]
    p.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines) + b'{"t_ns": 30, "url')
    samples = load_samples(p)
    assert [s.t_ns for s in samples] == [10, 20]
    assert samples[1].values["num_running"][""] == 2.0
