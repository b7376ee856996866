"""Pure maths over finished requests: the catalogue of latencies, their distributions, throughput, goodput, stragglers.

Every latency is defined once, in :data:`INTERVALS` (its label, unit, meaning and from-intended twin) and
:func:`interval_ns` (how it is computed, vectorised over a run's columns, :mod:`loadgen.records.columns`); the per-token
and per-chunk inter-token latencies, which come from the chunk arrays, in :class:`ChunkStats`. Console, HTML,
compare, sweep and the figures take labels and values from here.

Conventions: all times are the client's clock. "From send" = from when the request's bytes were written to the
(connected) connection, so it never includes connecting; "from intended" = from when the schedule wanted it sent,
i.e. corrected for coordinated omission. Latencies are over measured (not warm-up), successful requests, except
those marked ``over="dispatched"`` (queue wait, send lag, connect), which concern every dispatched request, failed
ones too. ``connections`` counts new and reused connections, and the kept-alive connections found closed and
skipped before a write (``retries``: nothing is ever sent twice).

:func:`summarize` runs over columns (or records, turned into columns first); a run of any length costs the
columns (~150 bytes a request) plus fixed-size histograms where the exact per-token gaps would not fit
(:data:`ChunkStats.EXACT_MAX`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from loadgen.analysis.distribution import Gaps, distribution
from loadgen.records.columns import ChunkBlock, RequestColumns, from_records
from loadgen.records.record import RequestRecord

__all__ = [
    "ChunkStats",
    "INTERVAL",
    "INTERVALS",
    "Interval",
    "STEADY_WINDOW",
    "as_columns",
    "chunk_gaps",
    "chunk_stats",
    "client_delays",
    "good_mask",
    "group_latencies",
    "has_groups",
    "interval_ms",
    "interval_ns",
    "per_chunk_itl_ns",
    "per_token_itl_ns",
    "reasoning_tokens",
    "request_latencies",
    "steady_rates",
    "stragglers",
    "summarize",
    "token_gaps",
    "twin_label",
]

NS_PER_MS = 1e6


# --------------------------------------------------------------------------------------------- the catalogue
def client_delays(
    intended: np.ndarray, dispatched: np.ndarray, slot: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(send lag, queue wait) per request, in the unit of its times (NaN where never dispatched); slot waits are
    never send lag.

    A slot granted after dispatch (``slot > dispatched``) was waited for by a dispatched request (open loop under
    a cap): lag = dispatched - intended, queue = slot - dispatched. One granted before or at dispatch was waited
    for by the dispatcher itself (closed loop), while the request stood at its intended start: lag = dispatched -
    slot, queue = slot - intended. No slot (no cap): lag = dispatched - intended, no queue. Never dispatched: no
    lag, no queue.
    """
    intended, dispatched, slot = (np.asarray(x, dtype=np.float64) for x in (intended, dispatched, slot))
    no_slot = np.isnan(slot)
    after = ~no_slot & (slot > dispatched)
    closed = ~no_slot & ~after
    lag = np.where(closed, dispatched - slot, dispatched - intended)
    queue = np.where(after, slot - dispatched, np.where(closed, slot - intended, 0.0))
    queue = np.where(np.isnan(dispatched), 0.0, queue)
    return lag, queue


def _tpot_ns(c: RequestColumns) -> np.ndarray:
    n = c.n["completion_tokens"]
    with np.errstate(invalid="ignore", divide="ignore"):
        v = (c.t["last_token_ns"] - c.t["first_token_ns"]) / (n - 1)
    return np.where(n > 1, v, np.nan)


def _reasoning_phase_ns(c: RequestColumns) -> np.ndarray:
    t = c.t
    end = np.where(np.isnan(t["first_content_ns"]), t["last_token_ns"], t["first_content_ns"])
    return end - t["first_reasoning_ns"]


def _send_lag_ns(c: RequestColumns) -> np.ndarray:
    return client_delays(c.t["intended_ns"], c.t["dispatched_ns"], c.t["slot_ns"])[0]


def _queue_wait_ns(c: RequestColumns) -> np.ndarray:
    return client_delays(c.t["intended_ns"], c.t["dispatched_ns"], c.t["slot_ns"])[1]


def _connect_ns(c: RequestColumns) -> np.ndarray:
    return np.where(c.conn_reused == 0, c.t["send_ns"] - c.t["connect_ns"], np.nan)


@dataclass(frozen=True)
class Interval:
    """One latency: its summary key, how it is shown, and what it measures."""

    key: str  # summary.json metrics.latency_ms.<key>
    label: str  # a table row
    name: str  # short name: TTFT, E2E, ...
    title: str  # what the short name stands for
    note: str  # what it means, for a reader
    start: str | None = None  # record field it runs from (a plain difference of two lifecycle times) ...
    end: str | None = None  # ... and to
    derive: Callable[[RequestColumns], np.ndarray] | None = None  # or how it is derived (ns per request)
    from_intended: str | None = None  # the key of its twin measured from the intended start
    corrected: bool = False  # this is a from-intended twin
    over: str = "ok"  # "ok": measured successful requests; "dispatched": every measured dispatched request
    per: str = (
        "request"  # "request", or "gap": per-token / per-chunk gaps (ChunkStats), not one value a request
    )
    unit: str = "ms"
    shown: bool = True  # a row of the latency tables

    @property
    def per_request(self) -> bool:
        return self.per == "request"


INTERVALS: tuple[Interval, ...] = (
    Interval("ttft", "TTFT (from send)", "TTFT", "time to first token",
             "time to first token of any kind (reasoning or answer)", "send_ns", "first_token_ns",
             from_intended="ttft_from_intended"),
    Interval("ttft_from_intended", "TTFT (from intended start)", "TTFT", "time to first token",
             "corrected for coordinated omission", "intended_ns", "first_token_ns", corrected=True),
    Interval("ttfvt", "TTFVT (from send)", "TTFVT", "time to first visible (answer) token",
             "time to first visible (answer) token: what a user waits for", "send_ns", "first_content_ns",
             from_intended="ttfvt_from_intended"),
    Interval("ttfvt_from_intended", "TTFVT (from intended start)", "TTFVT", "time to first visible (answer) token",
             "corrected", "intended_ns", "first_content_ns", corrected=True),
    Interval("reasoning_phase", "reasoning phase", "reasoning", "reasoning phase",
             "first reasoning token to first answer token (or to the last token when no answer came)",
             derive=_reasoning_phase_ns),
    Interval("tpot", "TPOT", "TPOT", "time per output token",
             "time per output token: (last token - first token) / (completion tokens - 1), reasoning included",
             derive=_tpot_ns),
    Interval("itl_per_token", "ITL per token", "ITL", "inter-token latency, per token",
             "gap between tokens; a k-token chunk counts k gaps of gap/k", per="gap"),
    Interval("itl_per_chunk", "ITL per chunk", "ITL", "inter-token latency, per chunk",
             "gap between streamed chunks", per="gap"),
    Interval("e2e", "E2E (from send)", "E2E", "end-to-end latency", "whole request", "send_ns", "end_ns",
             from_intended="e2e_from_intended"),
    Interval("e2e_from_intended", "E2E (from intended start)", "E2E", "end-to-end latency", "corrected",
             "intended_ns", "end_ns", corrected=True),
    Interval("queue_wait", "client queue wait", "queue wait", "client queue wait",
             "waiting for a --max-concurrency slot", derive=_queue_wait_ns, over="dispatched"),
    Interval("send_lag", "send lag", "send lag", "send lag",
             "how late loadgen itself sent requests (slot waits excluded)", derive=_send_lag_ns, over="dispatched"),
    Interval("connect", "connect (new connections)", "connect", "connection set-up",
             "setting up a new connection, before the request was written (not in 'from send')",
             derive=_connect_ns, over="dispatched"),
    Interval("first_byte", "first byte (from send)", "first byte", "time to the response headers",
             "response status line and headers received", "send_ns", "first_byte_ns", shown=False),
)  # fmt: skip
INTERVAL = {i.key: i for i in INTERVALS}
LATENCY_KEYS = tuple(i.key for i in INTERVALS if i.per_request)  # one value per request


def interval_ns(cols: RequestColumns, key: str) -> np.ndarray:
    """The latency ``key`` of every row in ns (NaN where the request never got that far)."""
    iv = INTERVAL[key]
    if iv.derive is not None:
        return iv.derive(cols)
    if iv.start is None or iv.end is None:
        raise ValueError(f"{key} is not one value per request (see ChunkStats)")
    return cols.t[iv.end] - cols.t[iv.start]


def interval_ms(cols: RequestColumns, key: str) -> np.ndarray:
    return interval_ns(cols, key) / NS_PER_MS


def twin_label(iv: Interval) -> str:
    """How a from-send / from-intended curve is named beside its twin."""
    return "from intended start (corrected)" if iv.corrected else "from send (uncorrected)"


# --------------------------------------------------------------------------------------------- chunks: ITL
def token_gaps(
    t: np.ndarray, k: np.ndarray, first: np.ndarray, use: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-token inter-token latency of flattened streams: (gap ns per token, tokens it counts for, position of
    the chunk that ends it).

    Each gap between consecutive token-bearing chunks is divided evenly over the tokens of the chunk that ends
    it (a chunk of k tokens after a gap g contributes k samples of g/k), so multi-token chunks (speculative
    decoding) are not mistaken for stalls; a chunk without new tokens passes its gap on to the next one that
    brings tokens. ``first`` marks each stream's first chunk; ``use`` limits to some chunks (default all).
    """
    keep = first | (k > 0)
    if use is not None:
        keep &= use
    pos = np.flatnonzero(keep)
    if pos.size < 2:
        return np.empty(0), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    t2, k2, f2 = t[pos], k[pos], first[pos]
    valid = ~f2[1:]
    gaps = np.diff(t2).astype(np.float64)[valid]
    w = k2[1:][valid]
    return gaps / w, w, pos[1:][valid]


def chunk_gaps(t: np.ndarray, first: np.ndarray, use: np.ndarray | None = None) -> np.ndarray:
    """Per-chunk inter-token latency: the gaps (ns) between consecutive chunks of each stream."""
    valid = ~first[1:] if use is None else (~first[1:] & use[1:])
    return np.diff(t)[valid]


class ChunkStats:
    """The reducer of a run's chunk arrays (see :mod:`loadgen.records.columns`): ITL per token and per chunk, tokens
    per chunk, and each request's longest per-token gap (the ``itl`` SLO), over measured successful requests.

    Gaps are kept exactly up to ``EXACT_MAX`` values each (32 MB of float64), and always in a log histogram:
    past the cap the distribution comes from the histogram (``binned``: within 0.6 %)."""

    EXACT_MAX = 4_000_000

    def __init__(self, exact_max: int = EXACT_MAX) -> None:
        self.per_token = Gaps(exact_max)
        self.per_chunk = Gaps(exact_max)
        self.tokens = 0
        self.chunks = 0
        self.itl_requests = 0  # requests whose gaps are in per_token
        self._max_rows: list[np.ndarray] = []
        self._max_ns: list[np.ndarray] = []
        self.itl_max_ms: np.ndarray = np.empty(0)

    def add(self, b: ChunkBlock) -> None:
        first = b.first_mask()
        owner = b.owner()
        use = b.measured_ok[owner]
        self.tokens += int(b.k[use].sum())
        self.chunks += int(use.sum())
        self.itl_requests += int((b.measured_ok & (b.lens >= 2)).sum())
        self.per_chunk.add(chunk_gaps(b.t, first, use) / NS_PER_MS)
        g, w, end_pos = token_gaps(b.t, b.k, first, use)
        if g.size:
            self.per_token.add(g / NS_PER_MS, w)
            m = np.full(b.rows.size, -np.inf)
            np.maximum.at(m, owner[end_pos], g)
            have = m > -np.inf
            self._max_rows.append(b.rows[have])
            self._max_ns.append(m[have])

    def finish(self, cols: RequestColumns) -> None:
        self.itl_max_ms = np.full(len(cols), np.nan)
        for rows, m in zip(self._max_rows, self._max_ns, strict=True):
            self.itl_max_ms[rows] = m / NS_PER_MS
        self._max_rows, self._max_ns = [], []

    @property
    def mean_tokens_per_chunk(self) -> float | None:
        return self.tokens / self.chunks if self.chunks else None


def chunk_stats(cols: RequestColumns) -> ChunkStats:
    """The ChunkStats the columns were read with (their ITL numbers); an error if they were read without."""
    for r in cols.reducers:
        if isinstance(r, ChunkStats):
            return r
    raise ValueError("these columns were read without ChunkStats: ITL needs the chunk arrays")


def as_columns(records: Sequence[RequestRecord] | RequestColumns) -> RequestColumns:
    """Columns as they are, or records turned into columns (with their ChunkStats)."""
    if isinstance(records, RequestColumns):
        return records
    return from_records(records, reducers=[ChunkStats()])


def _one(rec: RequestRecord) -> RequestColumns:
    return from_records([rec], reducers=[ChunkStats(exact_max=10**9)])


def request_latencies(rec: RequestRecord) -> dict[str, float | None]:
    """Every per-request latency of one record in ms (see INTERVALS); None where the request never got that far."""
    cols = _one(rec)
    out: dict[str, float | None] = {}
    for key in LATENCY_KEYS:
        v = float(interval_ms(cols, key)[0])
        out[key] = None if math.isnan(v) else v
    return out


def _stream_arrays(rec: RequestRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.asarray(rec.chunk_ns, dtype=np.int64)
    k = np.asarray(rec.chunk_tokens, dtype=np.int64)
    first = np.zeros(t.size, dtype=bool)
    first[:1] = True
    return t, k, first


def per_token_itl_ns(rec: RequestRecord) -> list[float]:
    """Per-token inter-token latencies of one stream in ns (see :func:`token_gaps`)."""
    if len(rec.chunk_ns) < 2 or len(rec.chunk_tokens) != len(rec.chunk_ns):
        return []
    g, w, _ = token_gaps(*_stream_arrays(rec))
    return np.repeat(g, w).tolist()


def per_chunk_itl_ns(rec: RequestRecord) -> list[int]:
    t, _, first = _stream_arrays(rec)
    return chunk_gaps(t, first).tolist() if t.size > 1 else []


# --------------------------------------------------------------------------------------------- a run
def reasoning_tokens(cols: RequestColumns) -> np.ndarray:
    """Reasoning tokens per request: as counted from the stream when it counted any, else the server's usage."""
    s, u = cols.n["reasoning_tokens_stream"], cols.n["reasoning_tokens"]
    return np.where(s > 0, s, np.nan_to_num(u, nan=0.0))


def good_mask(cols: RequestColumns, lat_ms: dict[str, np.ndarray], slo_ms: dict[str, float]) -> np.ndarray:
    """Rows meeting every SLO limit (``itl``: the request's longest per-token gap). A request with no answer phase
    or a single token has nothing to violate for ttfvt, tpot and itl; any other missing value fails."""
    good = np.ones(len(cols), dtype=bool)
    for metric, limit in slo_ms.items():
        if metric == "itl":
            value = chunk_stats(cols).itl_max_ms
        elif metric in lat_ms:
            value = lat_ms[metric]
        elif metric in INTERVAL and INTERVAL[metric].per_request:
            value = interval_ms(cols, metric)
        else:
            value = np.full(len(cols), np.nan)
        missing = np.isnan(value)
        with np.errstate(invalid="ignore"):
            bad = value > limit
        if metric not in ("ttfvt", "tpot", "itl"):
            bad |= missing
        good &= ~bad
    return good


def stragglers(e2e_ms: np.ndarray, k: float) -> tuple[float, np.ndarray]:
    """Threshold p50 + k·IQR of end-to-end latency, and the mask of requests above it."""
    if e2e_ms.size < 4:
        return math.inf, np.zeros(e2e_ms.size, dtype=bool)
    q1, q2, q3 = np.percentile(e2e_ms, (25, 50, 75))
    thr = float(q2 + k * (q3 - q1))
    return thr, e2e_ms > thr


def _rate(times: np.ndarray) -> float | None:
    """(n - 1) events over the time from the first to the last."""
    if times.size > 1:
        lo, hi = float(times.min()), float(times.max())
        if hi > lo:
            return (times.size - 1) / ((hi - lo) / 1e9)
    return None


def _none(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


def _latency_distributions(
    lat_ms: dict[str, np.ndarray], stats: Any, ok: np.ndarray, dispatched: np.ndarray
) -> dict[str, Any]:
    """Every interval of the catalogue as a distribution: per request (over the successful requests, or the sent
    ones), or per chunk / per token gap (ITL, from the chunk statistics)."""
    latency: dict[str, Any] = {}
    for iv in INTERVALS:
        if iv.per_request:
            v = lat_ms[iv.key][ok if iv.over == "ok" else dispatched]
            latency[iv.key] = distribution(v[~np.isnan(v)])
        else:
            latency[iv.key] = (
                stats.per_token if iv.key == "itl_per_token" else stats.per_chunk
            ).distribution()
    return latency


def _connections(c: RequestColumns, measured: np.ndarray, dispatched: np.ndarray) -> dict[str, int]:
    """How the measured requests got their connection: new, reused, none (never sent); retries."""
    return {
        "new": int((measured & (c.conn_reused == 0)).sum()),
        "reused": int((measured & (c.conn_reused == 1)).sum()),
        "none": int((dispatched & (c.conn_reused == -1)).sum()),
        "retries": int(c.retries[measured].sum()),
        "requests_retried": int((measured & (c.retries > 0)).sum()),
    }


def _token_sources(c: RequestColumns, ok: np.ndarray, stats: Any) -> dict[str, Any]:
    """Where the successful requests' token counts came from, their notes, and why each answer ended."""
    note_rows, note_text = c.notes
    notes = Counter(
        n.split(":")[0].split("=")[0] for r, n in zip(note_rows.tolist(), note_text, strict=True) if ok[r]
    )
    return {
        "mean_tokens_per_chunk": stats.mean_tokens_per_chunk,
        "count_sources": c.cat["token_count_source"].counts(ok),
        "count_notes": dict(notes),
        "finish_reasons": c.finish.counts(
            ok, none="none"
        ),  # why each answer ended (length: cut at max_tokens)
    }


def summarize(
    records: Sequence[RequestRecord] | RequestColumns,
    *,
    slo_ms: dict[str, float] | None = None,
    straggler_k: float = 3.0,
    target_rate: float | None = None,
) -> dict[str, Any]:
    """Every client-side metric of a run; warm-up requests are excluded from all statistics."""
    c = as_columns(records)
    stats = chunk_stats(c)
    slo_ms = slo_ms or {}
    measured = c.measured
    ok = c.measured_ok
    t = c.t
    dispatched = measured & ~np.isnan(t["dispatched_ns"])
    lat_ms = {key: interval_ms(c, key) for key in LATENCY_KEYS}

    latency = _latency_distributions(lat_ms, stats, ok, dispatched)
    # the measured window: first measured intended start to last measured end
    starts = t["intended_ns"][measured]
    ends = t["end_ns"][measured]
    ends = ends[~np.isnan(ends)]
    w0 = int(starts.min()) if starts.size else 0
    w1 = int(ends.max()) if ends.size else w0
    window_s = max((w1 - w0) / 1e9, 1e-9)

    out_tokens = int(np.nansum(c.n["completion_tokens"][ok]))
    in_tokens = int(np.nansum(c.n["prompt_tokens"][ok]))
    reasoning = reasoning_tokens(c)
    reasoning_total = int(reasoning[ok].sum())
    good = int((good_mask(c, lat_ms, slo_ms) & ok).sum()) if slo_ms else int(ok.sum())

    n_measured, n_ok = int(measured.sum()), int(ok.sum())
    errors = c.error_kind.counts(measured & ~ok, none="unknown")

    e2e_all = lat_ms["e2e"]
    with_e2e = np.flatnonzero(ok & ~np.isnan(e2e_all))
    thr, mask = stragglers(e2e_all[with_e2e], straggler_k)
    straggler_section = _straggler_section(
        c, lat_ms, reasoning, with_e2e, thr, mask, w0, straggler_k, out_tokens
    )

    return {
        "requests": {
            "total": len(c),
            "warmup": len(c) - n_measured,
            "measured": n_measured,
            "ok": n_ok,
            "failed": n_measured - n_ok,
            "errors_by_kind": dict(sorted(errors.items())),
        },
        "connections": _connections(c, measured, dispatched),
        "window": {"start_ns": w0, "end_ns": w1, "duration_s": window_s},
        "rate": {
            "target": target_rate,
            "planned": _rate(starts),
            "achieved_send": _rate(t["dispatched_ns"][dispatched]),
        },
        "throughput": {
            "requests_per_s": n_ok / window_s,
            "output_tokens_per_s": out_tokens / window_s,
            "total_tokens_per_s": (in_tokens + out_tokens) / window_s,
            "reasoning_tokens_per_s": reasoning_total / window_s,
        },
        "tokens": {
            "prompt": in_tokens,
            "completion": out_tokens,
            "reasoning": reasoning_total,
            **_token_sources(c, ok, stats),
        },
        "latency_ms": latency,
        "goodput": {
            "slo_ms": slo_ms,
            "good_requests": good,
            "requests_per_s": good / window_s,
            "fraction": good / n_measured if n_measured else None,
        },
        "stragglers": straggler_section,
    }


STRAGGLERS_LISTED = 50


def _straggler_section(
    c: RequestColumns,
    lat_ms: dict[str, np.ndarray],
    reasoning: np.ndarray,
    with_e2e: np.ndarray,
    thr: float,
    mask: np.ndarray,
    w0: int,
    k: float,
    out_tokens: int,
) -> dict[str, Any]:
    end = c.t["end_ns"]
    strag, rest = with_e2e[mask], with_e2e[~mask]
    makespan = (float(end[with_e2e].max()) - w0) / 1e9 if with_e2e.size else 0.0
    makespan_rest = (float(end[rest].max()) - w0) / 1e9 if rest.size else 0.0
    s_tokens = int(np.nansum(c.n["completion_tokens"][strag]))
    e2e = lat_ms["e2e"]
    listed = strag[np.lexsort((c.index[strag], -e2e[strag]))][:STRAGGLERS_LISTED]
    return {
        "rule": f"e2e > p50 + {k:g} x IQR",
        "threshold_ms": None if math.isinf(thr) else thr,
        "count": int(strag.size),
        "share_of_requests": strag.size / with_e2e.size if with_e2e.size else 0.0,
        "share_of_output_tokens": s_tokens / out_tokens if out_tokens else 0.0,
        "makespan_s": makespan,
        "makespan_without_stragglers_s": makespan_rest if strag.size else makespan,
        "makespan_share": (makespan - makespan_rest) / makespan if strag.size and makespan > 0 else 0.0,
        "requests": [
            {
                "index": int(c.index[i]),
                "start_ns": c.int_or_none("send_ns", i),
                "end_ns": c.int_or_none("end_ns", i),
                "e2e_ms": _none(e2e[i]),
                "ttft_ms": _none(lat_ms["ttft"][i]),
                "ttfvt_ms": _none(lat_ms["ttfvt"][i]),
                "queue_wait_ms": _none(lat_ms["queue_wait"][i]),
                "completion_tokens": c.int_or_none("completion_tokens", i),
                "reasoning_tokens": int(reasoning[i]),
                "finish_reason": c.finish.value(i),
                "tags": c.tags_of(i),
            }
            for i in listed.tolist()
        ],
    }


GROUP_LATENCIES = ("ttft", "ttfvt", "tpot", "e2e")


def group_latencies(records: Sequence[RequestRecord] | RequestColumns, tag: str) -> dict[str, dict[str, Any]]:
    """Latency percentiles per value of one workload tag (dataset, budget, ...), measured requests only."""
    c = as_columns(records)
    tags = c.tags.get(tag)
    if tags is None:
        return {}
    names: dict[str, list[int]] = {}
    for code, v in enumerate(tags.values):
        names.setdefault(str(v), []).append(code)
    lat = {key: interval_ms(c, key) for key in GROUP_LATENCIES}
    reasoning = reasoning_tokens(c)
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(names, key=lambda g: (len(g), g)):
        rows = c.measured & np.isin(tags.codes, names[name])
        if not rows.any():
            continue
        ok = rows & c.ok
        n_ok = int(ok.sum())
        row: dict[str, Any] = {
            "requests": int(rows.sum()),
            "ok": n_ok,
            "truncated": int((ok & c.finish.equals("length")).sum()),
            "mean_output_tokens": float(np.mean(np.nan_to_num(c.n["completion_tokens"][ok])))
            if n_ok
            else None,
            "mean_reasoning_tokens": float(np.mean(reasoning[ok])) if n_ok else None,
        }
        for key in GROUP_LATENCIES:
            v = lat[key][ok]
            d = distribution(v[~np.isnan(v)])
            row[key] = {k: d[k] for k in ("count", "mean", "p50", "p90", "p99")}
        out[name] = row
    return out


def has_groups(cols: RequestColumns, tag: str) -> bool:
    """Whether a run is worth a per-``tag`` table: more than one value, or any token budget at all."""
    c = cols.tags.get(tag)
    if c is None or not (c.codes >= 0).any():
        return False
    return tag == "budget" or len({str(c.values[x]) for x in np.unique(c.codes[c.codes >= 0])}) > 1


STEADY_WINDOW = (
    "arrival window (first to last intended start) shifted later by the median E2E from intended start"
)
SHORT_WINDOW_LOSS = 0.2


def steady_rates(
    records: Sequence[RequestRecord] | RequestColumns, slo_ms: dict[str, float] | None = None
) -> dict[str, Any]:
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
    c = as_columns(records)
    end = c.t["end_ns"]
    ok = c.measured_ok & ~np.isnan(end)
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
    intended = c.t["intended_ns"][c.measured]
    if intended.size < 2 or not ok.any() or intended.max() <= intended.min():
        return out
    a, b = float(intended.min()), float(intended.max())
    e2e = interval_ns(c, "e2e_from_intended")[ok]
    shift = float(np.median(e2e))
    lo, hi = a + shift, b + shift
    inside = ok & (end >= lo) & (end <= hi)
    n_inside = int(inside.sum())
    n_good = int((inside & good_mask(c, {}, slo_ms)).sum()) if slo_ms else n_inside
    span = (b - a) / 1e9
    spread = float(np.mean(np.abs(e2e - shift))) / 1e9
    out.update(
        start_ns=int(lo),
        end_ns=int(hi),
        duration_s=span,
        shift_ms=shift / NS_PER_MS,
        completed=n_inside,
        good=n_good,
        # n completions span n - 1 gaps, as the offered rate's n arrivals do: a stable server equals it exactly
        requests_per_s=max(n_inside - 1, 0) / span,
        goodput_per_s=max(n_inside - 1, 0) / span * (n_good / n_inside) if n_inside else 0.0,
        short=bool(spread > SHORT_WINDOW_LOSS * span),
    )
    return out
