"""Pure maths over finished records: per-request latencies, their distributions, throughput, goodput, stragglers.

Definitions (all from the client's clock; "from send" = from when the request was handed to the connection,
"from intended" = from when the schedule wanted it sent, i.e. corrected for coordinated omission):

- TTFT: first token of any kind (reasoning or answer) − send.
- TTFVT: first visible (answer) token − send; the user-facing wait of a reasoning model.
- TPOT: (last token − first token) / (completion tokens − 1), over every output token, reasoning included.
- ITL per chunk: gaps between consecutive token-bearing chunks of a stream.
- ITL per token: each gap divided evenly over the tokens of the chunk that ends it (a chunk of k tokens after a
  gap g contributes k samples of g/k), so multi-token chunks (speculative decoding) are not mistaken for stalls.
- E2E: end − send, and end − intended.
- Queue wait: time spent waiting for a ``--max-concurrency`` slot. Open loop under a cap: slot granted −
  dispatched. Closed loop (``--rate inf`` with a cap; the dispatcher waits for the slot, so the slot is granted
  before dispatch): slot granted − intended.
- Send lag: the client's own lateness, slot waits excluded: dispatched − intended, or in a closed loop
  dispatched − slot granted. See :func:`client_delays`.
- Connect: connection set-up, from when the client began getting a connection to the request written (``send``),
  over requests that opened a new connection; ``connections`` counts new and reused ones, and the kept-alive
  connections found closed and skipped before a write (``retries``: nothing is ever sent twice).

"From send" latencies start when the request's bytes were written, so they never include connecting.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from loadgen.records import STATUS_OK, RequestRecord

PERCENTILES = (50, 90, 95, 99, 99.9)
NS_PER_MS = 1e6


def distribution(values: Iterable[float] | np.ndarray) -> dict[str, float | int | None]:
    """count, mean, min, p50..p99.9, max of ``values`` (one numpy pass); empty input gives count 0 and Nones."""
    arr = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.float64)
    if arr.size == 0:
        return {"count": 0, "mean": None, "min": None, **{_pkey(p): None for p in PERCENTILES}, "max": None}
    pct = np.percentile(arr, PERCENTILES)
    out: dict[str, float | int | None] = {
        "count": int(arr.size),
        "mean": float(arr.mean()),
        "min": float(arr.min()),
    }
    for p, v in zip(PERCENTILES, pct, strict=True):
        out[_pkey(p)] = float(v)
    out["max"] = float(arr.max())
    return out


def _pkey(p: float) -> str:
    return f"p{p:g}".replace(".", "_")


def per_token_itl_ns(rec: RequestRecord) -> list[float]:
    """Per-token inter-token latencies of one stream (see module docstring)."""
    out: list[float] = []
    ts, toks = rec.chunk_ns, rec.chunk_tokens
    if len(ts) < 2 or len(toks) != len(ts):
        return out
    prev = ts[0]
    for t, k in zip(ts[1:], toks[1:], strict=True):
        if k <= 0:
            continue  # text without new tokens: its gap belongs to the next chunk that brings tokens
        g = (t - prev) / k
        out.extend([g] * k)
        prev = t
    return out


def per_chunk_itl_ns(rec: RequestRecord) -> list[int]:
    ts = rec.chunk_ns
    return [b - a for a, b in zip(ts, ts[1:], strict=False)]


def client_delays(
    intended: float, dispatched: float | None, slot: float | None
) -> tuple[float | None, float]:
    """(send lag, queue wait) of one request, in the unit of its times; slot waits are never send lag.

    A slot granted after dispatch (``slot > dispatched``) was waited for by a dispatched request (open loop under
    a cap); one granted before or at dispatch was waited for by the dispatcher itself (closed loop), while the
    request stood at its intended start.
    """
    if dispatched is None:
        return None, 0.0
    if slot is None:
        return dispatched - intended, 0.0
    if slot > dispatched:
        return dispatched - intended, slot - dispatched
    return dispatched - slot, slot - intended


def request_latencies(rec: RequestRecord) -> dict[str, float | None]:
    """Per-request metrics in ms; None where the request never got that far."""

    def ms(a: int | None, b: int | None) -> float | None:
        return None if a is None or b is None else (b - a) / NS_PER_MS

    tpot = None
    n = rec.completion_tokens
    if n is not None and n > 1 and rec.first_token_ns is not None and rec.last_token_ns is not None:
        tpot = (rec.last_token_ns - rec.first_token_ns) / (n - 1) / NS_PER_MS
    lag_ns, queue_ns = client_delays(rec.intended_ns, rec.dispatched_ns, rec.slot_ns)
    reasoning_ms = None
    if rec.first_reasoning_ns is not None:
        end = rec.first_content_ns if rec.first_content_ns is not None else rec.last_token_ns
        reasoning_ms = ms(rec.first_reasoning_ns, end)
    return {
        "ttft": ms(rec.send_ns, rec.first_token_ns),
        "ttft_from_intended": ms(rec.intended_ns, rec.first_token_ns),
        "ttfvt": ms(rec.send_ns, rec.first_content_ns),
        "ttfvt_from_intended": ms(rec.intended_ns, rec.first_content_ns),
        "tpot": tpot,
        "e2e": ms(rec.send_ns, rec.end_ns),
        "e2e_from_intended": ms(rec.intended_ns, rec.end_ns),
        "queue_wait": queue_ns / NS_PER_MS,
        "send_lag": None if lag_ns is None else lag_ns / NS_PER_MS,
        "reasoning_phase": reasoning_ms,
        "first_byte": ms(rec.send_ns, rec.first_byte_ns),
        "connect": ms(rec.connect_ns, rec.send_ns) if rec.conn_reused is False else None,
    }


LATENCY_KEYS = (
    "ttft",
    "ttft_from_intended",
    "ttfvt",
    "ttfvt_from_intended",
    "tpot",
    "e2e",
    "e2e_from_intended",
    "queue_wait",
    "send_lag",
    "reasoning_phase",
    "first_byte",
    "connect",
)


def _good(lat: dict[str, float | None], rec: RequestRecord, slo_ms: dict[str, float]) -> bool:
    for metric, limit in slo_ms.items():
        if metric == "itl":
            itl = per_token_itl_ns(rec)
            value = max(itl) / NS_PER_MS if itl else None
        else:
            value = lat.get(metric)
        if value is None or value > limit:
            if metric in ("ttfvt", "tpot", "itl") and value is None:
                continue  # no answer phase / a single token: nothing to violate
            return False
    return True


def stragglers(e2e_ms: np.ndarray, k: float) -> tuple[float, np.ndarray]:
    """Threshold p50 + k·IQR of end-to-end latency, and the mask of requests above it."""
    if e2e_ms.size < 4:
        return math.inf, np.zeros(e2e_ms.size, dtype=bool)
    q1, q2, q3 = np.percentile(e2e_ms, (25, 50, 75))
    thr = float(q2 + k * (q3 - q1))
    return thr, e2e_ms > thr


def summarize(
    records: Sequence[RequestRecord],
    *,
    slo_ms: dict[str, float] | None = None,
    straggler_k: float = 3.0,
    target_rate: float | None = None,
) -> dict[str, Any]:
    """Every client-side metric of a run; warm-up requests are excluded from all statistics."""
    slo_ms = slo_ms or {}
    measured = [r for r in records if not r.warmup]
    ok = [r for r in measured if r.status == STATUS_OK]
    lats = [request_latencies(r) for r in ok]

    latency: dict[str, Any] = {}
    for key in LATENCY_KEYS:
        latency[key] = distribution([v for lat in lats if (v := lat[key]) is not None])
    # send lag and queue wait concern every dispatched request, failed ones too
    all_lats = [request_latencies(r) for r in measured if r.dispatched_ns is not None]
    latency["send_lag"] = distribution([lat["send_lag"] for lat in all_lats if lat["send_lag"] is not None])
    latency["queue_wait"] = distribution(
        [lat["queue_wait"] for lat in all_lats if lat["queue_wait"] is not None]
    )
    latency["connect"] = distribution([lat["connect"] for lat in all_lats if lat["connect"] is not None])
    itl_tok: list[float] = []
    itl_chunk: list[int] = []
    tokens_per_chunk: list[int] = []
    for r in ok:
        itl_tok.extend(per_token_itl_ns(r))
        itl_chunk.extend(per_chunk_itl_ns(r))
        tokens_per_chunk.extend(r.chunk_tokens)
    latency["itl_per_token"] = distribution(np.asarray(itl_tok) / NS_PER_MS)
    latency["itl_per_chunk"] = distribution(np.asarray(itl_chunk, dtype=np.float64) / NS_PER_MS)

    # the measured window: first measured intended start to last measured end
    starts = [r.intended_ns for r in measured]
    ends = [r.end_ns for r in measured if r.end_ns is not None]
    w0 = min(starts) if starts else 0
    w1 = max(ends) if ends else w0
    window_s = max((w1 - w0) / 1e9, 1e-9)

    out_tokens = sum(r.completion_tokens or 0 for r in ok)
    in_tokens = sum(r.prompt_tokens or 0 for r in ok)
    reasoning_tokens = sum(_reasoning_tokens(r) for r in ok)
    good = sum(1 for r, lat in zip(ok, lats, strict=True) if _good(lat, r, slo_ms)) if slo_ms else len(ok)

    dispatched = sorted(r.dispatched_ns for r in measured if r.dispatched_ns is not None)
    intended = sorted(r.intended_ns for r in measured)
    achieved_rate = (
        (len(dispatched) - 1) / ((dispatched[-1] - dispatched[0]) / 1e9)
        if len(dispatched) > 1 and dispatched[-1] > dispatched[0]
        else None
    )
    planned_rate = (
        (len(intended) - 1) / ((intended[-1] - intended[0]) / 1e9)
        if len(intended) > 1 and intended[-1] > intended[0]
        else None
    )

    errors = Counter(r.error_kind or "unknown" for r in measured if r.status != STATUS_OK)
    sources = Counter(r.token_count_source for r in ok)
    notes = Counter(n.split(":")[0].split("=")[0] for r in ok for n in r.count_notes)

    e2e = np.asarray([lat["e2e"] for lat in lats if lat["e2e"] is not None], dtype=np.float64)
    thr, mask = stragglers(e2e, straggler_k)
    straggler_section = _straggler_section(ok, lats, e2e, thr, mask, w0, straggler_k, out_tokens)

    return {
        "requests": {
            "total": len(records),
            "warmup": len(records) - len(measured),
            "measured": len(measured),
            "ok": len(ok),
            "failed": len(measured) - len(ok),
            "errors_by_kind": dict(sorted(errors.items())),
        },
        "connections": {
            "new": sum(1 for r in measured if r.conn_reused is False),
            "reused": sum(1 for r in measured if r.conn_reused is True),
            "none": sum(1 for r in measured if r.dispatched_ns is not None and r.conn_reused is None),
            "retries": sum(r.retries for r in measured),
            "requests_retried": sum(1 for r in measured if r.retries),
        },
        "window": {"start_ns": w0, "end_ns": w1, "duration_s": window_s},
        "rate": {
            "target": target_rate,
            "planned": planned_rate,
            "achieved_send": achieved_rate,
        },
        "throughput": {
            "requests_per_s": len(ok) / window_s,
            "output_tokens_per_s": out_tokens / window_s,
            "total_tokens_per_s": (in_tokens + out_tokens) / window_s,
            "reasoning_tokens_per_s": reasoning_tokens / window_s,
        },
        "tokens": {
            "prompt": in_tokens,
            "completion": out_tokens,
            "reasoning": reasoning_tokens,
            "mean_tokens_per_chunk": float(np.mean(tokens_per_chunk)) if tokens_per_chunk else None,
            "count_sources": dict(sources),
            "count_notes": dict(notes),
        },
        "latency_ms": latency,
        "goodput": {
            "slo_ms": slo_ms,
            "good_requests": good,
            "requests_per_s": good / window_s,
            "fraction": good / len(measured) if measured else None,
        },
        "stragglers": straggler_section,
    }


def _reasoning_tokens(r: RequestRecord) -> int:
    if r.reasoning_tokens_stream is not None and r.reasoning_tokens_stream > 0:
        return r.reasoning_tokens_stream
    return r.reasoning_tokens or 0


def _straggler_section(
    ok: Sequence[RequestRecord],
    lats: Sequence[dict[str, float | None]],
    e2e: np.ndarray,
    thr: float,
    mask: np.ndarray,
    w0: int,
    k: float,
    out_tokens: int,
) -> dict[str, Any]:
    with_e2e = [(r, lat) for r, lat in zip(ok, lats, strict=True) if lat["e2e"] is not None]
    strag = [(r, lat) for (r, lat), m in zip(with_e2e, mask, strict=True) if m]
    rest = [r for (r, _), m in zip(with_e2e, mask, strict=True) if not m]
    makespan = (max(r.end_ns for r, _ in with_e2e) - w0) / 1e9 if with_e2e else 0.0
    makespan_rest = (max(r.end_ns for r in rest) - w0) / 1e9 if rest else 0.0
    s_tokens = sum(r.completion_tokens or 0 for r, _ in strag)
    listed = sorted(strag, key=lambda x: -(x[1]["e2e"] or 0))
    return {
        "rule": f"e2e > p50 + {k:g} x IQR",
        "threshold_ms": None if math.isinf(thr) else thr,
        "count": len(strag),
        "share_of_requests": len(strag) / len(with_e2e) if with_e2e else 0.0,
        "share_of_output_tokens": s_tokens / out_tokens if out_tokens else 0.0,
        "makespan_s": makespan,
        "makespan_without_stragglers_s": makespan_rest if strag else makespan,
        "makespan_share": (makespan - makespan_rest) / makespan if strag and makespan > 0 else 0.0,
        "requests": [
            {
                "index": r.index,
                "start_ns": r.send_ns,
                "end_ns": r.end_ns,
                "e2e_ms": lat["e2e"],
                "ttft_ms": lat["ttft"],
                "ttfvt_ms": lat["ttfvt"],
                "queue_wait_ms": lat["queue_wait"],
                "completion_tokens": r.completion_tokens,
                "reasoning_tokens": _reasoning_tokens(r),
                "finish_reason": r.finish_reason,
                "tags": r.tags,
            }
            for r, lat in listed[:50]
        ],
    }


def group_latencies(records: Sequence[RequestRecord], tag: str) -> dict[str, dict[str, Any]]:
    """Latency percentiles per value of one workload tag (dataset, budget, ...), measured requests only."""
    groups: dict[str, list[RequestRecord]] = {}
    for r in records:
        if not r.warmup and tag in r.tags:
            groups.setdefault(str(r.tags[tag]), []).append(r)
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(groups, key=lambda g: (len(g), g)):
        rs = groups[name]
        ok = [r for r in rs if r.status == STATUS_OK]
        lats = [request_latencies(r) for r in ok]
        row: dict[str, Any] = {
            "requests": len(rs),
            "ok": len(ok),
            "truncated": sum(1 for r in ok if r.finish_reason == "length"),
            "mean_output_tokens": float(np.mean([r.completion_tokens or 0 for r in ok])) if ok else None,
            "mean_reasoning_tokens": float(np.mean([_reasoning_tokens(r) for r in ok])) if ok else None,
        }
        for key in ("ttft", "ttfvt", "tpot", "e2e"):
            d = distribution([v for lat in lats if (v := lat[key]) is not None])
            row[key] = {k: d[k] for k in ("count", "mean", "p50", "p90", "p99")}
        out[name] = row
    return out


STEADY_WINDOW = (
    "arrival window (first to last intended start) shifted later by the median E2E from intended start"
)
SHORT_WINDOW_LOSS = 0.2


def steady_rates(records: Sequence[RequestRecord], slo_ms: dict[str, float] | None = None) -> dict[str, Any]:
    """Throughput and goodput of a short run without its fill and drain: successful (and SLO-meeting) completions
    inside the arrival window shifted later by the median E2E, per second of that window.

    The whole-run window (first intended start to last end) ends with the drain of the last requests, so a short
    run on an idle server reports a fraction of the offered rate. Shifted by the typical latency, the window
    counts every request of a stable server whose latency is near the median (the rate equals the offered one),
    and a server that falls behind completes requests at its capacity throughout it (the rate is the capacity).
    Like the offered rate ((n - 1) arrivals over the arrival window), the rate is (completions - 1) per second of
    the window; goodput is that times the share of those completions that met the SLO (all, without one).
    Requests whose E2E is far from the median may complete outside it, so the estimate reads low by about
    mean |E2E - median| / window length: ``short`` is set when that exceeds SHORT_WINDOW_LOSS. (That reasoning is
    for a stable server; an overloaded one completes at its capacity all through the window, however spread its
    latencies.)
    """
    measured = [r for r in records if not r.warmup]
    ok = [r for r in measured if r.status == STATUS_OK and r.end_ns is not None]
    out: dict[str, Any] = {
        "window": STEADY_WINDOW,
        "start_ns": None,
        "end_ns": None,
        "duration_s": None,
        "completed": 0,
        "good": 0,
        "requests_per_s": None,
        "goodput_per_s": None,
        "short": None,
    }
    intended = [r.intended_ns for r in measured]
    if len(intended) < 2 or not ok or max(intended) <= min(intended):
        return out
    a, b = min(intended), max(intended)
    e2e = np.asarray([r.end_ns - r.intended_ns for r in ok], dtype=np.float64)  # type: ignore[operator]
    shift = float(np.median(e2e))
    lo, hi = a + shift, b + shift
    inside = [r for r in ok if lo <= r.end_ns <= hi]  # type: ignore[operator]
    good = [r for r in inside if _good(request_latencies(r), r, slo_ms)] if slo_ms else inside
    span = (b - a) / 1e9
    spread = float(np.mean(np.abs(e2e - shift))) / 1e9
    out.update(
        start_ns=int(lo),
        end_ns=int(hi),
        duration_s=span,
        shift_ms=shift / NS_PER_MS,
        completed=len(inside),
        good=len(good),
        # n completions span n - 1 gaps, as the offered rate's n arrivals do: a stable server equals it exactly
        requests_per_s=max(len(inside) - 1, 0) / span,
        goodput_per_s=max(len(inside) - 1, 0) / span * (len(good) / len(inside)) if inside else 0.0,
        short=bool(spread > SHORT_WINDOW_LOSS * span),
    )
    return out
