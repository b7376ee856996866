"""server_summary: what the server itself saw over the measured window, in the common vocabulary.

Everything is computed over ``window`` only (warm-up and drain excluded by the caller's choice of window):
gauges time-weighted over the window, counters and histograms as deltas between the samples that bound it.
Engines (label sets) are aggregated as documented in ``series``: counts summed, KV usage averaged (``mean``) with
the most loaded engine's value beside it (``max_engine``).

``available`` lists the vocabulary names the server exposed in the window; ``missing`` the others, with the
dialect's reason where it has one, so a report can print "TTFT: not exposed by TGI" rather than a zero.

The server's latency quantiles are reported as the histogram bucket that holds them, never as an interpolated point
(see ``HistogramDelta.quantile_bucket``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from loadgen.records.columns import ServerColumns
from loadgen.scrape.dialects import DIALECTS, UNKNOWN, VOCABULARY
from loadgen.scrape.gpu import gpu_section
from loadgen.scrape.series import (
    CounterSeries,
    GaugeSeries,
    HistogramSeries,
    KvCacheSeries,
    Sample,
    as_server_columns,
)

KV_HIGH = 0.9  # "near full": the share of time above this is reported
QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
LATENCIES = ("ttft", "itl", "tpot", "e2e", "queue_time")


BUCKET_NOTE = (
    "server latency quantiles are histogram buckets ({'gt': lower, 'le': upper}, upper None = above the last "
    "bound): a histogram cannot say where inside its bucket a quantile lies; the mean (sum / count) is exact"
)


def format_bucket(b: dict[str, Any] | None, scale: float = 1000.0, unit: str = "ms") -> str:
    """A quantile's bucket for people: ``≤ 300 ms`` (first bucket), ``100–300 ms``, ``> 10,000 ms`` (last)."""
    if not b:
        return "-"

    def num(x: float) -> str:
        v = x * scale
        return f"{v:,.0f}" if abs(v) >= 10 or v == int(v) else f"{v:,.3g}"

    lo, hi = b.get("gt"), b.get("le")
    if hi is None:
        return f"> {num(lo)} {unit}" if lo is not None else "-"
    if not lo:
        return f"≤ {num(hi)} {unit}"
    return f"{num(lo)}–{num(hi)} {unit}"


def _round(x: float | None, nd: int = 6) -> float | None:
    return None if x is None else round(x, nd)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def server_summary(
    samples: Sequence[Sample] | ServerColumns, window: tuple[int, int], url: str | None = None
) -> dict[str, Any]:
    """Summary of one server (``url``; may be omitted when the samples hold only one) over ``window`` (ns).

    ``samples``: the columns of ``server_metrics.jsonl`` (:func:`loadgen.records.columns.read_server`) or Sample objects."""
    cols = as_server_columns(samples)
    urls = sorted(set(cols.url.counts()))
    if url is None and len(urls) > 1:
        raise ValueError(f"samples from {len(urls)} servers; pass url= one of {urls}")
    if url is not None:
        cols = cols.for_url(url)
    samples = cols
    start, end = window
    if end <= start:
        raise ValueError("window end must be after its start")
    d = cols.dialect
    known = np.flatnonzero((d.codes >= 0) & ~d.equals("") & ~d.equals(UNKNOWN))
    dialect = d.value(int(known[-1])) if known.size else ((d.value(0) or "") if len(cols) else "")
    exposed = set(cols.names)
    notes: list[str] = []
    if dialect == UNKNOWN:
        notes.append(
            "the server's /metrics uses no vLLM, SGLang, TGI or llama.cpp names: nothing was mapped; "
            "its raw samples are in server_metrics.jsonl"
        )
    out: dict[str, Any] = {
        "url": url or (urls[0] if urls else None),
        "dialect": dialect,
        "window_s": (end - start) / 1e9,
        "samples_in_window": int(((cols.t_ns >= start) & (cols.t_ns <= end)).sum()),
    }
    out.update(_kv_section(samples, start, end))
    for name in ("num_running", "num_waiting"):
        g = GaugeSeries.from_samples(samples, name, "sum")
        if len(g):
            out[name] = {"mean": _round(g.mean(start, end), 3), "max": _round(g.max(start, end), 3)}
    table = DIALECTS.get(dialect)
    counters, deltas = _counter_deltas(samples, exposed, table, start, end, notes)
    if "preemptions" in deltas:
        out["preemptions"] = deltas["preemptions"]
    out.update(_prefix_cache(samples, deltas, exposed, start, end, notes))
    out.update(_spec_decode(samples, deltas, exposed, start, end, notes))
    out.update(_tokens(counters, deltas, start, end))
    out.update(_busy(samples, deltas, out["window_s"], start, end))
    out.update(_latency(samples, exposed, start, end, notes))
    gpu = gpu_section(samples, start, end)
    if gpu is not None:
        out["gpu"] = gpu
    out.update(_availability(exposed, table, notes))
    out["notes"] = notes
    return out


def _kv_section(samples: ServerColumns, start: int, end: int) -> dict[str, Any]:
    """KV-cache usage over the window: time-weighted, the mean across engines and the most loaded one."""
    out: dict[str, Any] = {}
    kv = KvCacheSeries.from_samples(samples)
    if len(kv):
        kv_max_engine = KvCacheSeries.from_samples(samples, agg="max")
        above_ns, above_share = kv.time_above(KV_HIGH, start, end)
        out["kv_cache_usage"] = {
            "mean": _round(kv.mean(start, end)),
            "p50": _round(kv.quantile(0.5, start, end)),
            "p99": _round(kv.quantile(0.99, start, end)),
            "max": _round(kv.max(start, end)),
            "max_engine": _round(kv_max_engine.max(start, end)),
            f"time_above_{int(KV_HIGH * 100)}pct_s": round(above_ns / 1e9, 3),
            f"share_above_{int(KV_HIGH * 100)}pct": round(above_share, 4),
            "aggregation": "time-weighted; mean across engines (max_engine: most loaded engine)",
        }

    return out


def _counter_deltas(
    samples: ServerColumns, exposed: set[str], table: Any, start: int, end: int, notes: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every counter of the vocabulary the server exposes, and its increase over the window (the dialect's derived
    counters summed from their parts; resets corrected)."""
    counters = {
        name: CounterSeries.from_samples(samples, name)
        for name, (kind, _) in VOCABULARY.items()
        if kind == "counter" and name in exposed
    }
    deltas = {name: c.delta(start, end) for name, c in counters.items()}
    for name, (parts, note) in (table.derived if table else {}).items():
        if name not in deltas and all(deltas.get(p) is not None for p in parts):
            deltas[name] = sum(deltas[p] for p in parts)
            exposed.add(name)
            notes.append(f"{name}: {note}")
    resets = sum(c.resets for c in counters.values())
    if resets:
        notes.append(f"{resets} counter reset(s) seen (server restart?); deltas were reset-corrected")

    return counters, deltas


def _prefix_cache(
    samples: ServerColumns, deltas: dict[str, Any], exposed: set[str], start: int, end: int, notes: list[str]
) -> dict[str, Any]:
    """The prefix cache's hit rate: from its counters, else the engine's gauge."""
    out: dict[str, Any] = {}
    hits, queries = deltas.get("prefix_cache_hits"), deltas.get("prefix_cache_queries")
    if hits is not None and queries is not None:
        out["prefix_cache"] = {
            "hit_rate": _round(_ratio(hits, queries)),
            "hits": hits,
            "queries": queries,
            "source": "counters",
        }
    elif "prefix_cache_hit_rate" in exposed:
        g = GaugeSeries.from_samples(samples, "prefix_cache_hit_rate", "mean")
        out["prefix_cache"] = {"hit_rate": _round(g.mean(start, end)), "source": "gauge"}
        notes.append("prefix-cache hit rate is the time-weighted mean of the engine's last-interval gauge")

    return out


def _spec_decode(
    samples: ServerColumns, deltas: dict[str, Any], exposed: set[str], start: int, end: int, notes: list[str]
) -> dict[str, Any]:
    """Speculative decoding's acceptance: from its counters, else the engine's gauges."""
    out: dict[str, Any] = {}
    drafts = deltas.get("spec_num_drafts")
    draft_tokens = deltas.get("spec_draft_tokens")
    accepted = deltas.get("spec_accepted_tokens")
    if drafts or draft_tokens:
        out["spec_decode"] = {
            "acceptance_rate": _round(_ratio(accepted, draft_tokens)),
            # vLLM's definition (spec_decode/metrics.py): the bonus token included, 1 + accepted / drafts
            "mean_accepted_length": _round(
                1 + accepted / drafts if accepted is not None and drafts else None
            ),
            "drafts": drafts,
            "draft_tokens": draft_tokens,
            "accepted_tokens": accepted,
            "source": "counters",
        }
    elif "spec_accept_length" in exposed or "spec_accept_rate" in exposed:
        rate = GaugeSeries.from_samples(samples, "spec_accept_rate", "mean")
        length = GaugeSeries.from_samples(samples, "spec_accept_length", "mean")
        out["spec_decode"] = {
            "acceptance_rate": _round(rate.mean(start, end)) if len(rate) else None,
            "mean_accepted_length": _round(length.mean(start, end)) if len(length) else None,
            "source": "gauge",
        }
        notes.append(
            "speculative-decoding figures are time-weighted means of the engine's last-interval gauges"
        )

    return out


def _tokens(counters: dict[str, Any], deltas: dict[str, Any], start: int, end: int) -> dict[str, Any]:
    """Prompt and generated tokens over the window, and their rates over the counters' span."""
    out: dict[str, Any] = {}
    prompt, gen = deltas.get("prompt_tokens"), deltas.get("generation_tokens")
    if prompt is not None or gen is not None:
        span_s = (
            max(
                (
                    c.span_ns(start, end)
                    for n, c in counters.items()
                    if n in ("prompt_tokens", "generation_tokens")
                ),
                default=0,
            )
            / 1e9
        )
        out["tokens"] = {
            "prompt": prompt,
            "generation": gen,
            "prompt_per_s": _round(_ratio(prompt, span_s), 3),
            "generation_per_s": _round(_ratio(gen, span_s), 3),
            "span_s": round(span_s, 3),
        }

    return out


def _busy(
    samples: ServerColumns, deltas: dict[str, Any], window_s: float, start: int, end: int
) -> dict[str, Any]:
    """The server's own busy time (prompt, generation) and its slots (llama.cpp)."""
    out: dict[str, Any] = {}
    busy_s = {
        k: deltas.get(n) for k, n in (("prompt_s", "prompt_seconds"), ("generation_s", "generation_seconds"))
    }
    if any(v is not None for v in busy_s.values()):
        out["server_time"] = {k: _round(v, 4) for k, v in busy_s.items()}
        out["server_time"]["share_of_window"] = _round(sum(v or 0 for v in busy_s.values()) / window_s, 4)

    busy, total = (GaugeSeries.from_samples(samples, n, "sum") for n in ("slots_busy", "slots_total"))
    if len(busy):
        out["slots"] = {
            "busy_mean": _round(busy.mean(start, end), 3),
            "busy_max": _round(busy.max(start, end), 3),
            "total": _round(total.max(start, end), 3) if len(total) else None,
        }

    return out


def _latency(
    samples: ServerColumns, exposed: set[str], start: int, end: int, notes: list[str]
) -> dict[str, Any]:
    """The server's own latency histograms over the window: count, mean and the bucket holding each quantile."""
    latency: dict[str, Any] = {}
    for name in LATENCIES:
        if name not in exposed:
            continue
        h = HistogramSeries.from_samples(samples, name)
        d = h.delta(start, end)
        if d is None:
            continue
        entry: dict[str, Any] = {"count": d.count, "mean": _round(d.mean)}
        for label, q in QUANTILES.items():
            b = d.quantile_bucket(q)
            entry[label] = None if b is None else {"gt": _round(b[0]), "le": _round(b[1])}
        latency[name] = entry
        if h.resets:
            notes.append(f"{name}: {h.resets} histogram reset(s) seen; the delta was reset-corrected")
        if h.skipped_series:
            notes.append(f"{name}: {h.skipped_series} series with other bucket bounds were left out")
    if not latency:
        return {}
    notes.append(BUCKET_NOTE)
    return {"latency_s": latency}


def _availability(exposed: set[str], table: Any, notes: list[str]) -> dict[str, Any]:
    """Which of the vocabulary's figures the server exposes, why the others are missing, the dialect's notes."""
    out: dict[str, Any] = {}
    out["available"] = sorted(n for n in VOCABULARY if n in exposed)
    out["missing"] = {
        n: (
            table.unavailable.get(n, "not exposed (feature off or no traffic yet)")
            if table
            else "not exposed"
        )
        for n in VOCABULARY
        if n not in exposed
    }
    if table is not None:
        notes += [
            f"{n}: {table.table[n].note}"
            for n in out["available"]
            if table.table.get(n) and table.table[n].note
        ]
    return out
