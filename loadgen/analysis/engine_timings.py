"""loadgen's latencies beside the engine's own account of each request: llama.cpp's per-response ``timings``.

llama-server ends every stream with ``timings`` (kept on the record as ``server_timings``): ``prompt_ms`` (prompt
evaluation of this request, after it got a slot), ``predicted_n`` / ``predicted_ms`` (its generated tokens and the
time they took), ``cache_n`` (prompt tokens reused from the slot's cache). Two independent clocks of the same
request, so their differences say where time went and whether the client's stamps can be trusted:

* ``ttft_minus_prompt_ms``: client TTFT (from send) - server prompt_ms = the wait for a slot, the HTTP and the
  first token's trip; near a few ms on an idle server, it grows with queueing;
* ``tpot_minus_server_ms``: client TPOT - predicted_ms / predicted_n: the client's per-token view vs the engine's
  (the server's mean includes the first decode step, the client's starts at the first token), near 0 when the
  client keeps up;
* ``tokens``: the completion tokens the client counted vs ``predicted_n`` (equal when the count is exact).

Over measured, successful requests that carry timings; ``None`` when none does (other engines).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from loadgen.records.record import STATUS_OK, RequestRecord

__all__ = ["TimingsCrosscheck", "crosscheck"]

QUANTILES = {"p5": 5, "p50": 50, "p95": 95}


def _stats(x: list[float]) -> dict[str, float | None]:
    if not x:
        return {"mean": None, **dict.fromkeys(QUANTILES)}
    a = np.asarray(x, dtype=np.float64)
    out: dict[str, float | None] = {"mean": round(float(a.mean()), 3)}
    out.update({k: round(float(np.percentile(a, q)), 3) for k, q in QUANTILES.items()})
    return out


class TimingsCrosscheck:
    """The cross-check, a record at a time: a record reducer of :func:`loadgen.records.columns.read_requests` (it
    reads each record's ``server_timings`` in the pass that reads the columns), or fed records (:func:`crosscheck`)."""

    def __init__(self) -> None:
        self.ttft: list[float] = []
        self.tpot: list[float] = []
        self.client_ms: list[float] = []
        self.server_ms: list[float] = []
        self.same = self.counted = 0

    def add_record(self, d: dict[str, Any]) -> None:
        """One record as parsed from requests.jsonl; only those with timings become a RequestRecord."""
        if isinstance(d.get("server_timings"), dict):
            self.add_one(RequestRecord.from_dict(d))

    def add_one(self, r: RequestRecord) -> None:
        """One record (a chunk reducer has `add`: this one reads no chunks)."""
        t = r.server_timings
        if r.warmup or r.status != STATUS_OK or not isinstance(t, dict) or r.send_ns is None:
            return
        if r.first_token_ns is not None and isinstance(t.get("prompt_ms"), int | float):
            c = (r.first_token_ns - r.send_ns) / 1e6
            self.ttft.append(c - t["prompt_ms"])
        n, ms = t.get("predicted_n"), t.get("predicted_ms")
        k = r.completion_tokens
        if isinstance(n, int) and n > 1 and isinstance(ms, int | float) and k and k > 1 and r.last_token_ns:
            c = (r.last_token_ns - r.first_token_ns) / 1e6 / (k - 1)
            self.tpot.append(c - ms / n)
            self.client_ms.append(c)
            self.server_ms.append(ms / n)
        if isinstance(n, int) and k is not None:
            self.counted += 1
            self.same += int(n == k)

    def finish(self, cols: Any = None) -> None:
        """Nothing to do at the end of the pass: :meth:`table` computes from what was added."""

    def table(self) -> dict[str, Any] | None:
        """The distribution of client-minus-server differences (see the module's docstring)."""
        if not self.ttft and not self.tpot:
            return None
        counted = self.counted
        return {
            "source": "llama.cpp timings on each response (server_timings in requests.jsonl)",
            "requests": max(len(self.ttft), len(self.tpot)),
            "ttft_minus_prompt_ms": _stats(self.ttft),
            "tpot_minus_server_ms": _stats(self.tpot),
            "tpot_client_ms": _stats(self.client_ms),
            "tpot_server_ms": _stats(self.server_ms),
            "tokens": {
                "compared": counted,
                "equal_share": round(self.same / counted, 4) if counted else None,
            },
        }


def crosscheck(records: Iterable[RequestRecord]) -> dict[str, Any] | None:
    """The distribution of client-minus-server differences over the records (see the module's docstring)."""
    check = TimingsCrosscheck()
    for r in records:
        check.add_one(r)
    return check.table()
