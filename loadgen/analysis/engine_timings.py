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

QUANTILES = {"p5": 5, "p50": 50, "p95": 95}


def _stats(x: list[float]) -> dict[str, float | None]:
    if not x:
        return {"mean": None, **dict.fromkeys(QUANTILES)}
    a = np.asarray(x, dtype=np.float64)
    out: dict[str, float | None] = {"mean": round(float(a.mean()), 3)}
    out.update({k: round(float(np.percentile(a, q)), 3) for k, q in QUANTILES.items()})
    return out


def crosscheck(records: Iterable[RequestRecord]) -> dict[str, Any] | None:
    """The distribution of client-minus-server differences over the records (see the module's docstring)."""
    ttft, tpot, client_ms, server_ms = [], [], [], []
    same = counted = 0
    for r in records:
        t = r.server_timings
        if r.warmup or r.status != STATUS_OK or not isinstance(t, dict) or r.send_ns is None:
            continue
        if r.first_token_ns is not None and isinstance(t.get("prompt_ms"), int | float):
            c = (r.first_token_ns - r.send_ns) / 1e6
            ttft.append(c - t["prompt_ms"])
        n, ms = t.get("predicted_n"), t.get("predicted_ms")
        k = r.completion_tokens
        if isinstance(n, int) and n > 1 and isinstance(ms, int | float) and k and k > 1 and r.last_token_ns:
            c = (r.last_token_ns - r.first_token_ns) / 1e6 / (k - 1)
            tpot.append(c - ms / n)
            client_ms.append(c)
            server_ms.append(ms / n)
        if isinstance(n, int) and k is not None:
            counted += 1
            same += int(n == k)
    if not ttft and not tpot:
        return None
    return {
        "source": "llama.cpp timings on each response (server_timings in requests.jsonl)",
        "requests": max(len(ttft), len(tpot)),
        "ttft_minus_prompt_ms": _stats(ttft),
        "tpot_minus_server_ms": _stats(tpot),
        "tpot_client_ms": _stats(client_ms),
        "tpot_server_ms": _stats(server_ms),
        "tokens": {"compared": counted, "equal_share": round(same / counted, 4) if counted else None},
    }
