"""llama.cpp's per-response timings beside the client's TTFT/TPOT: the differences' distribution."""

from __future__ import annotations

from loadgen.analysis.engine_timings import crosscheck
from loadgen.records.record import RequestRecord

MS = 1_000_000


def rec(i: int, queue_ms: float, prompt_ms: float, n: int, tpot_ms: float, **kw) -> RequestRecord:
    send = i * 1000 * MS
    first = send + int((queue_ms + prompt_ms) * MS)
    return RequestRecord(index=i, intended_ns=send, send_ns=send, first_token_ns=first,
                         last_token_ns=first + int((n - 1) * tpot_ms * MS), end_ns=first + int(n * tpot_ms * MS),
                         completion_tokens=n, server_timings={"prompt_ms": prompt_ms, "predicted_n": n,
                         "predicted_ms": n * tpot_ms * 0.9}, **kw)  # fmt: skip


def test_differences_are_queueing_and_the_per_token_gap() -> None:
    records = [rec(i, queue_ms=10.0 * i, prompt_ms=20.0, n=101, tpot_ms=5.0) for i in range(11)]
    records.append(rec(99, 0, 20.0, 101, 5.0, warmup=True))  # left out
    records.append(RequestRecord(index=100, send_ns=0, first_token_ns=MS))  # no timings: another engine
    out = crosscheck(records)
    assert out is not None and out["requests"] == 11
    ttft = out["ttft_minus_prompt_ms"]
    assert ttft["p50"] == 50.0 and ttft["mean"] == 50.0 and ttft["p5"] == 5.0  # the queue: 0..100 ms
    tpot = out["tpot_minus_server_ms"]
    assert abs(tpot["p50"] - 0.5) < 1e-3  # client 5.0 ms/token, server 4.5
    assert out["tokens"] == {"compared": 11, "equal_share": 1.0}


def test_none_without_engine_timings() -> None:
    assert crosscheck([RequestRecord(index=0, send_ns=0, first_token_ns=MS)]) is None
