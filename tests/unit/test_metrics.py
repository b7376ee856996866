"""Metrics on hand-computed records."""

import numpy as np
import pytest

from loadgen.analysis.metrics import distribution, per_token_itl_ns, request_latencies, stragglers, summarize
from loadgen.records.record import RequestRecord

MS = 1_000_000


def rec(index, intended, send, chunks, tokens, kinds, end, prompt=10, warmup=False, status="ok", **kw):
    r = RequestRecord(
        index=index,
        warmup=warmup,
        intended_ns=intended * MS,
        dispatched_ns=intended * MS + kw.pop("lag", 0),
        send_ns=send * MS,
        chunk_ns=[c * MS for c in chunks],
        chunk_tokens=tokens,
        chunk_kind=kinds,
        end_ns=end * MS,
        prompt_tokens=prompt,
        completion_tokens=sum(tokens),
        status=status,
        **kw,
    )
    if chunks:
        r.first_token_ns = chunks[0] * MS
        r.last_token_ns = chunks[-1] * MS
        if "r" in kinds:
            r.first_reasoning_ns = chunks[kinds.index("r")] * MS
        if "c" in kinds:
            r.first_content_ns = chunks[kinds.index("c")] * MS
    r.reasoning_tokens_stream = sum(t for t, k in zip(tokens, kinds, strict=True) if k == "r")
    return r


def test_request_latencies_by_hand():
    # intended 0, sent at 2 ms; reasoning chunks at 102, 112; answer chunks at 122 (2 tokens), 142; end 143
    r = rec(0, 0, 2, [102, 112, 122, 142], [1, 1, 2, 1], "rrcc", 143)
    lat = request_latencies(r)
    assert lat["ttft"] == pytest.approx(100)
    assert lat["ttft_from_intended"] == pytest.approx(102)
    assert lat["ttfvt"] == pytest.approx(120)
    assert lat["ttfvt_from_intended"] == pytest.approx(122)
    assert lat["tpot"] == pytest.approx((142 - 102) / 4)  # 5 tokens -> 4 gaps
    assert lat["e2e"] == pytest.approx(141) and lat["e2e_from_intended"] == pytest.approx(143)
    assert lat["reasoning_phase"] == pytest.approx(20)
    # per token: 10 (1 tok), 10/2 x2, 20 (1 tok)
    assert np.allclose(np.asarray(per_token_itl_ns(r)) / MS, [10, 5, 5, 20])


def test_zero_token_chunks_pass_their_gap_on():
    r = rec(0, 0, 0, [10, 20, 30], [1, 0, 1], "ccc", 31)
    assert np.allclose(np.asarray(per_token_itl_ns(r)) / MS, [20])


def test_distribution_matches_numpy():
    v = np.arange(1, 1001, dtype=float)
    d = distribution(v)
    assert d["count"] == 1000 and d["mean"] == 500.5 and d["max"] == 1000
    assert d["p99"] == pytest.approx(np.percentile(v, 99))
    assert d["p99_9"] == pytest.approx(np.percentile(v, 99.9))
    assert distribution([])["p50"] is None


def test_straggler_rule():
    e2e = np.array([10, 11, 12, 13, 14, 15, 100.0])
    thr, mask = stragglers(e2e, 3.0)
    q1, q2, q3 = np.percentile(e2e, (25, 50, 75))
    assert thr == pytest.approx(q2 + 3 * (q3 - q1))
    assert mask.tolist() == [False] * 6 + [True]


def test_summary_window_throughput_goodput_and_stragglers():
    records = [rec(0, 0, 0, [5], [1], "c", 6, warmup=True)]  # warm-up: ignored
    for i in range(1, 9):
        records.append(rec(i, 100 * i, 100 * i, [100 * i + 50, 100 * i + 60], [1, 1], "cc", 100 * i + 60))
    # a straggler: 20 tokens of reasoning, finishing late
    records.append(rec(9, 900, 900, [950 + 10 * k for k in range(20)], [1] * 20, "r" * 19 + "c", 1150))
    records.append(rec(10, 1000, 1000, [], [], "", 1001, status="error", error_kind="http_5xx"))
    s = summarize(records, slo_ms={"ttft": 55}, straggler_k=1.5)
    assert s["requests"]["measured"] == 10 and s["requests"]["ok"] == 9 and s["requests"]["warmup"] == 1
    assert s["requests"]["errors_by_kind"] == {"http_5xx": 1}
    # window: first measured intended (100 ms) to last end (1150 ms)
    assert s["window"]["duration_s"] == pytest.approx(1.05)
    assert s["throughput"]["output_tokens_per_s"] == pytest.approx((16 + 20) / 1.05)
    assert s["throughput"]["requests_per_s"] == pytest.approx(9 / 1.05)
    assert s["goodput"]["good_requests"] == 9  # all ok ones have TTFT 50 ms
    st = s["stragglers"]
    assert st["count"] == 1 and st["requests"][0]["index"] == 9
    assert st["share_of_output_tokens"] == pytest.approx(20 / 36)
    # without the straggler the run would end at 860 ms instead of 1150 ms
    assert st["makespan_s"] == pytest.approx(1.05)
    assert st["makespan_without_stragglers_s"] == pytest.approx(0.76)
    assert s["tokens"]["reasoning"] == 19
    s2 = summarize(records, slo_ms={"ttft": 45})
    assert s2["goodput"]["good_requests"] == 0


def test_send_lag_and_rates():
    records = [
        rec(i, 10 * i, 10 * i, [10 * i + 1], [1], "c", 10 * i + 2, lag=(i % 3) * 100_000) for i in range(101)
    ]
    s = summarize(records, target_rate=100.0)
    assert s["latency_ms"]["send_lag"]["max"] == pytest.approx(0.2)
    assert s["rate"]["planned"] == pytest.approx(100.0)
    assert s["rate"]["achieved_send"] == pytest.approx(100.0, rel=0.01)


def test_slot_waits_are_queue_wait_in_both_modes():
    """Issue 11 item 5: a closed loop's wait for a slot is queue wait, never send lag."""
    # open loop under a cap: dispatched 1 ms late, then 300 ms waiting for a slot
    open_loop = RequestRecord(index=0, intended_ns=100 * MS, dispatched_ns=101 * MS, slot_ns=401 * MS)
    lat = request_latencies(open_loop)
    assert lat["send_lag"] == pytest.approx(1.0) and lat["queue_wait"] == pytest.approx(300.0)
    # closed loop: intended at 0, the dispatcher waited 20 s for the slot and dispatched 0.02 ms after it
    closed = RequestRecord(index=1, intended_ns=0, slot_ns=20_000 * MS, dispatched_ns=20_000 * MS + 20_000)
    lat = request_latencies(closed)
    assert lat["queue_wait"] == pytest.approx(20_000.0) and lat["send_lag"] == pytest.approx(0.02)
    # records of a closed loop written before this fix stamped slot == dispatched: read the same way
    old = RequestRecord(index=2, intended_ns=0, slot_ns=5_000 * MS, dispatched_ns=5_000 * MS)
    assert request_latencies(old)["queue_wait"] == pytest.approx(5_000.0)
    assert request_latencies(old)["send_lag"] == 0.0
    # no cap: no queue
    free = RequestRecord(index=3, intended_ns=10 * MS, dispatched_ns=12 * MS)
    assert request_latencies(free)["queue_wait"] == 0.0 and request_latencies(free)["send_lag"] == 2.0
    m = summarize([open_loop, closed, old, free])
    assert m["latency_ms"]["send_lag"]["max"] == pytest.approx(2.0)
    assert m["latency_ms"]["queue_wait"]["max"] == pytest.approx(20_000.0)


def test_self_check_counts_one_long_event_loop_stall():
    """Issue 11: a 2.6 s stall is one 10 ms-timer sample among thousands: p99 never shows it, max must."""
    from loadgen.analysis.selfcheck import SelfCheck

    check = SelfCheck()
    check.lags_ns = [200_000] * 5000 + [2_600_000_000]
    check.wall_total_s, check.cpu_total_s = 60.0, 6.0
    send_lag = {"p50": 0.1, "p99": 0.5, "max": 1.0}
    r = check.report(send_lag, 0.0, send_lag_p99_limit_ms=5.0, cpu_limit=0.9)
    assert r["event_loop_lag_ms"]["p99"] < 1 and r["event_loop_lag_ms"]["max"] == pytest.approx(2600)
    assert not r["trustworthy"]
    assert any("max 2,600.0 ms" in why and "stamped" in why for why in r["reasons"])
    # the p99 limit defaults to the send-lag limit
    check.lags_ns = [6_000_000] * 200
    r = check.report(send_lag, 0.0, send_lag_p99_limit_ms=5.0, cpu_limit=0.9)
    assert [why for why in r["reasons"] if "p99" in why] and r["limits"]["event_loop_lag_p99_ms"] == 5.0
    r = check.report(send_lag, 0.0, send_lag_p99_limit_ms=5.0, cpu_limit=0.9, loop_lag_p99_limit_ms=10)
    assert r["trustworthy"], r["reasons"]
