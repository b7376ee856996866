"""Figures of a run, a comparison and a sweep, as standalone SVG strings (see :mod:`loadgen.report.svg`).

Sizes stay bounded whatever the run's size, and every reduction is reported back so the page can say what it did:

* distributions: per-request metrics (TTFT, TTFVT, TPOT, E2E) are drawn exactly up to ``EXACT_CDF_MAX`` values, else
  at ``~300`` quantiles (dense in the tail: p99.9 and p99.99 stay visible); per-token ITL is binned into a fine log
  histogram (``ITL_BINS_PER_DECADE`` bins per decade, 0.6 % wide) while the file is read, never held in memory.
* time series: at most one min/max pair per pixel column (``TIME_BUCKETS``), so spikes survive downsampling.
* timeline: at most ``TIMELINE_MAX`` requests; every straggler and failure is kept, the rest evenly thinned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from loadgen.metrics import client_delays
from loadgen.report.svg import (
    MUTED,
    PALETTE,
    Panel,
    Scale,
    empty_figure,
    esc,
    figure,
    nice_max,
    num,
)

NS = 1e9
MS = 1e6
EXACT_CDF_MAX = 2000
TIMELINE_MAX = 2000
TIME_BUCKETS = 900
ITL_BINS_PER_DECADE = 400
ITL_LOG_MIN, ITL_LOG_MAX = -3.0, 7.0  # 1 µs .. 10^7 ms (2.8 h) per token
_ITL_EDGES = np.linspace(ITL_LOG_MIN, ITL_LOG_MAX, int((ITL_LOG_MAX - ITL_LOG_MIN) * ITL_BINS_PER_DECADE) + 1)
BATCH = 4096
FULL_PARSE_BYTES = 64_000_000  # larger requests.jsonl: per-chunk arrays of a request sample only

# lifecycle colours of the timeline
C_WAIT = "#bdbdbd"  # intended start -> first token (client lateness, queue, server queue + prefill)
C_REASON = "#CC79A7"  # reasoning phase
C_ANSWER = "#0072B2"  # answer phase
C_STRAG = "#D55E00"
C_FAIL = "#000000"

_TIME_FIELDS = (
    "intended_ns",
    "dispatched_ns",
    "slot_ns",
    "send_ns",
    "first_token_ns",
    "first_reasoning_ns",
    "first_content_ns",
    "last_token_ns",
    "end_ns",
)


# --------------------------------------------------------------------------------------------------
# reading a run
# --------------------------------------------------------------------------------------------------
@dataclass
class RunRequests:
    """Columns of ``requests.jsonl`` (times: float ns since t0, NaN where never reached)."""

    index: np.ndarray
    warmup: np.ndarray
    ok: np.ndarray
    t: dict[str, np.ndarray]
    prompt: np.ndarray
    completion: np.ndarray
    reasoning: np.ndarray
    finish: list[Any]
    error_kind: list[Any]
    tags: list[dict[str, Any]]
    itl_hist: np.ndarray  # per-token ITL counts in log10(ms) bins, measured ok requests
    tok_bin_ns: int  # width of tok_bins
    tok_bins: np.ndarray  # output tokens received per bin (all requests, from chunk times)
    skipped_lines: int = 0
    chunk_stride: int = 1  # per-chunk arrays were read for every chunk_stride-th request
    itl_requests: int = 0  # requests whose gaps make up itl_hist

    def __len__(self) -> int:
        return len(self.index)

    @property
    def measured_ok(self) -> np.ndarray:
        return self.ok & ~self.warmup

    def ms(self, a: str, b: str) -> np.ndarray:
        """Latency b - a in ms for every request (NaN where either end is missing)."""
        return (self.t[b] - self.t[a]) / MS


def read_requests(path: Path, tok_bin_ns: int, full_parse_bytes: int = FULL_PARSE_BYTES) -> RunRequests:
    """One pass over requests.jsonl; chunk lists are reduced batch-wise (ITL histogram, token-time bins).

    Files larger than ``full_parse_bytes`` have their per-chunk arrays read for every ``stride``-th request only
    (cut out of the other lines before JSON parsing: they are 90 % of a file). ITL then comes from that sample;
    received-token throughput uses the exact chunk times of the sample and, for the other requests, their
    completion tokens spread evenly from first to last token.
    """
    size = path.stat().st_size
    stride = max(1, math.ceil(size / max(full_parse_bytes, 1)))
    cols: dict[str, list[Any]] = {k: [] for k in _TIME_FIELDS}
    index, warmup, ok, prompt, completion, reasoning = [], [], [], [], [], []
    finish, errk, tags = [], [], []
    itl_hist = np.zeros(len(_ITL_EDGES) - 1, dtype=np.float64)
    tok_bins = np.zeros(1, dtype=np.float64)
    batch_t: list[list[int]] = []
    batch_k: list[list[int]] = []
    batch_itl: list[bool] = []
    spread: list[
        tuple[int, int, int]
    ] = []  # (first token, last token, tokens) of requests read without chunks
    skipped = 0
    itl_requests = 0

    def flush() -> None:
        nonlocal tok_bins, itl_hist
        if not batch_t:
            return
        lens = np.fromiter(map(len, batch_t), dtype=np.int64, count=len(batch_t))
        ft: list[int] = []
        fk: list[int] = []
        for x in batch_t:
            ft.extend(x)
        for x in batch_k:
            fk.extend(x)
        flat_t = np.array(ft, dtype=np.int64)
        flat_k = np.array(fk, dtype=np.int64)
        tok_bins = _add_bins(tok_bins, flat_t, flat_k, tok_bin_ns)
        use = np.repeat(np.asarray(batch_itl, dtype=bool), lens)
        first = np.zeros(flat_t.size, dtype=bool)
        starts = np.cumsum(lens) - lens
        first[starts[lens > 0]] = True
        # per_token_itl_ns: chunks without tokens are skipped (their gap belongs to the next chunk with tokens)
        keep = use & (first | (flat_k > 0))
        t2, k2, f2 = flat_t[keep], flat_k[keep], first[keep]
        if t2.size > 1:
            gaps = np.diff(t2).astype(np.float64)
            valid = ~f2[1:]
            g = gaps[valid] / k2[1:][valid] / MS
            w = k2[1:][valid].astype(np.float64)
            b = ((np.log10(np.maximum(g, 10**ITL_LOG_MIN)) - ITL_LOG_MIN) * ITL_BINS_PER_DECADE).astype(
                np.int64
            )
            itl_hist += np.bincount(np.clip(b, 0, itl_hist.size - 1), weights=w, minlength=itl_hist.size)
        batch_t.clear()
        batch_k.clear()
        batch_itl.clear()

    loads = orjson.loads
    with open(path, "rb") as fh:
        for n_line, line in enumerate(fh):
            cut = stride > 1 and n_line % stride != 0
            if cut:
                line = _without_chunks(line)
            try:
                d = loads(line)
            except orjson.JSONDecodeError:
                skipped += line.strip() != b""
                continue
            for k in _TIME_FIELDS:
                cols[k].append(d.get(k))
            index.append(d.get("index", -1))
            w = bool(d.get("warmup"))
            good = d.get("status") == "ok"
            warmup.append(w)
            ok.append(good)
            prompt.append(d.get("prompt_tokens"))
            completion.append(d.get("completion_tokens"))
            reasoning.append(_reasoning_tokens(d))
            finish.append(d.get("finish_reason"))
            errk.append(d.get("error_kind"))
            tags.append(d.get("tags") or {})
            if "chunk_ns" not in d:
                a, b, k = d.get("first_token_ns"), d.get("last_token_ns"), d.get("completion_tokens")
                if a is not None and b is not None and k:
                    spread.append((a, b, k))
                continue
            ts, ks = d.get("chunk_ns") or [], d.get("chunk_tokens") or []
            if len(ts) == len(ks) and ts:
                batch_t.append(ts)
                batch_k.append(ks)
                use = good and not w and len(ts) >= 2
                itl_requests += use
                batch_itl.append(use)
                if len(batch_t) >= BATCH:
                    flush()
    flush()
    if spread:
        tok_bins = _add_spread(tok_bins, np.asarray(spread, dtype=np.float64), tok_bin_ns)
    return RunRequests(
        index=np.asarray(index, dtype=np.int64),
        warmup=np.asarray(warmup, dtype=bool),
        ok=np.asarray(ok, dtype=bool),
        t={k: _float_col(v) for k, v in cols.items()},
        prompt=_float_col(prompt),
        completion=_float_col(completion),
        reasoning=_float_col(reasoning),
        finish=finish,
        error_kind=errk,
        tags=tags,
        itl_hist=itl_hist,
        tok_bin_ns=tok_bin_ns,
        tok_bins=tok_bins,
        skipped_lines=skipped,
        chunk_stride=stride,
        itl_requests=itl_requests,
    )


_CHUNK_START = b'"chunk_ns":['
_KIND = b'"chunk_kind":"'


def _without_chunks(line: bytes) -> bytes:
    """The record line with its chunk arrays cut out (they are written together: chunk_ns, chunk_tokens, kind)."""
    a = line.find(_CHUNK_START)
    k = line.find(_KIND, a)
    if a < 0 or k < 0:
        return line
    q = line.find(b'"', k + len(_KIND))
    if q < 0 or line[q + 1 : q + 2] != b",":
        return line
    return line[:a] + line[q + 2 :]


def _add_spread(acc: np.ndarray, spans: np.ndarray, width: int) -> np.ndarray:
    """Add each (a, b, k): k tokens spread evenly over [a, b], integrated exactly over bins of ``width`` ns."""
    a, b, k = spans[:, 0], spans[:, 1], spans[:, 2]
    point = b <= a
    nb = int(max(b.max(), a.max()) // width) + 2
    edges = np.arange(nb + 1, dtype=np.float64) * width
    # G(E) = sum_{a<E} s (E - a) - sum_{b<E} s (E - b), s = k / (b - a): the tokens delivered before E
    s = np.where(point, 0.0, k / np.where(point, 1.0, b - a))
    oa, ob = np.argsort(a), np.argsort(b)
    ca_s, ca_sa = np.concatenate(([0.0], np.cumsum(s[oa]))), np.concatenate(([0.0], np.cumsum((s * a)[oa])))
    cb_s, cb_sb = np.concatenate(([0.0], np.cumsum(s[ob]))), np.concatenate(([0.0], np.cumsum((s * b)[ob])))
    ia = np.searchsorted(a[oa], edges, side="left")
    ib = np.searchsorted(b[ob], edges, side="left")
    g = (edges * ca_s[ia] - ca_sa[ia]) - (edges * cb_s[ib] - cb_sb[ib])
    per_bin = np.diff(g)
    if point.any():
        per_bin += np.bincount((a[point] // width).astype(np.int64), weights=k[point], minlength=nb)[:nb]
    if per_bin.size > acc.size:
        per_bin[: acc.size] += acc
        return per_bin
    acc[: per_bin.size] += per_bin
    return acc


def _reasoning_tokens(d: dict[str, Any]) -> int:
    s = d.get("reasoning_tokens_stream")
    if s is not None and s > 0:
        return int(s)
    return int(d.get("reasoning_tokens") or 0)


def _float_col(values: list[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _add_bins(acc: np.ndarray, t: np.ndarray, w: np.ndarray, width: int) -> np.ndarray:
    if t.size == 0:
        return acc
    b = np.bincount(np.maximum(t, 0) // width, weights=w.astype(np.float64))
    if b.size > acc.size:
        b[: acc.size] += acc
        return b
    acc[: b.size] += b
    return acc


@dataclass
class ServerSeries:
    """The scraped series the timeline needs, on the run clock (ns since t0)."""

    kv_t: np.ndarray = field(default_factory=lambda: np.empty(0))
    kv: np.ndarray = field(default_factory=lambda: np.empty(0))
    running_t: np.ndarray = field(default_factory=lambda: np.empty(0))
    running: np.ndarray = field(default_factory=lambda: np.empty(0))
    waiting_t: np.ndarray = field(default_factory=lambda: np.empty(0))
    waiting: np.ndarray = field(default_factory=lambda: np.empty(0))
    preempt_t: np.ndarray = field(default_factory=lambda: np.empty(0))
    preempt: np.ndarray = field(default_factory=lambda: np.empty(0))  # cumulative, reset-corrected
    gen_t: np.ndarray = field(default_factory=lambda: np.empty(0))
    gen: np.ndarray = field(default_factory=lambda: np.empty(0))  # cumulative generation tokens
    samples: int = 0

    @property
    def empty(self) -> bool:
        return self.samples == 0


SERVER_NAMES = ("kv_cache_usage", "num_running", "num_waiting", "preemptions", "generation_tokens")


def read_server(path: Path) -> ServerSeries:
    """KV usage, running/waiting, preemptions and generated tokens from server_metrics.jsonl (first URL only).

    Only those five series are parsed out of each line (histograms are most of a line's bytes), and aggregated
    across label sets with the semantics of :mod:`loadgen.scrape.series` (gauges: KV ``mean``, counts ``sum``;
    counters: per-series reset correction, then ``sum``), vectorised so a day of scrapes reads in about a second.
    """
    if not path.exists():
        return ServerSeries()
    times: list[int] = []
    cols: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
    url0: str | None = None
    with open(path, "rb") as fh:
        for line in fh:
            got = _scan_scrape_line(line)
            if got is None:
                continue
            t, url, values = got
            if url0 is None:
                url0 = url
            if url != url0:  # several servers scraped: the first one's view (like the summary's `server`)
                continue
            i = len(times)
            times.append(t)
            for name, series in values.items():
                for label, v in series.items():
                    col = cols.get((name, label))
                    if col is None:
                        col = cols[(name, label)] = ([], [])
                    col[0].append(i)
                    col[1].append(v)
    n = len(times)
    if n == 0:
        return ServerSeries()
    t_all = np.asarray(times, dtype=np.float64)
    order = np.argsort(t_all, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    t_sorted = t_all[order]

    def parts(name: str) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for (nm, _), (idx, vals) in cols.items():
            if nm == name:
                ii = rank[np.asarray(idx, dtype=np.int64)]
                o = np.argsort(ii, kind="stable")
                out.append((ii[o], np.asarray(vals, dtype=np.float64)[o]))
        return out

    def gauge(name: str, agg: str) -> tuple[np.ndarray, np.ndarray]:
        ps = parts(name)
        if not ps:
            return np.empty(0), np.empty(0)
        idx = np.concatenate([p[0] for p in ps])
        val = np.concatenate([p[1] for p in ps])
        cnt = np.bincount(idx, minlength=n)
        if agg == "max":
            agg_v = np.full(n, -np.inf)
            np.maximum.at(agg_v, idx, val)
        else:
            agg_v = np.bincount(idx, weights=val, minlength=n)
            if agg == "mean":
                agg_v = agg_v / np.maximum(cnt, 1)
        have = cnt > 0
        return t_sorted[have], agg_v[have]

    def counter(name: str) -> tuple[np.ndarray, np.ndarray]:
        ps = parts(name)
        if not ps:
            return np.empty(0), np.empty(0)
        total = np.zeros(n)
        present = np.zeros(n, dtype=bool)
        for idx, val in ps:
            inc = np.diff(val)
            inc = np.where(
                inc < 0, val[1:], inc
            )  # a decrease is a restart from zero: the increase is the value
            corrected = np.concatenate((val[:1], val[0] + np.cumsum(inc)))
            # hold each series' last corrected value until its next sample; 0 before it first appears
            pos = np.searchsorted(idx, np.arange(n), side="right") - 1
            total += np.where(pos >= 0, corrected[np.maximum(pos, 0)], 0.0)
            present[idx] = True
        return t_sorted[present], total[present]

    kv_t, kv = gauge("kv_cache_usage", "mean")
    r_t, r = gauge("num_running", "sum")
    w_t, w = gauge("num_waiting", "sum")
    p_t, p = counter("preemptions")
    g_t, g = counter("generation_tokens")
    return ServerSeries(kv_t, kv, r_t, r, w_t, w, p_t, p, g_t, g, n)


_VALUES = b',"values":{'
_NAME_KEYS = tuple((n, b'"' + n.encode() + b'":{') for n in SERVER_NAMES)


def _scan_scrape_line(line: bytes) -> tuple[int, str, dict[str, dict[str, float]]] | None:
    """(t_ns, url, {name: {labels: value}}) for the SERVER_NAMES of one scrape line; None for error lines."""
    v = line.find(_VALUES)
    if v < 0:
        return None  # an error line (or a torn one)
    pieces = [line[:v]]
    for name, key in _NAME_KEYS:
        p = line.find(key, v)
        if p >= 0:
            pieces.append(b',"' + name.encode() + b'":' + line[p + len(key) - 1 : line.find(b"}", p) + 1])
    pieces.append(b"}")
    try:
        d = orjson.loads(b"".join(pieces))
    except orjson.JSONDecodeError:
        try:  # anything unusual (a '}' inside a label value): parse the whole line
            full = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        if "values" not in full:
            return None
        d = {**full, **{n: full["values"][n] for n in SERVER_NAMES if n in full["values"]}}
    return d["t_ns"], d.get("url", ""), {n: d[n] for n in SERVER_NAMES if n in d}


# --------------------------------------------------------------------------------------------------
# reductions
# --------------------------------------------------------------------------------------------------
def quantile_levels() -> np.ndarray:
    """~300 levels: every 0.5 % up to p99, then denser into the tail (p99.9, p99.99, p99.999)."""
    body = np.linspace(0.0, 0.99, 199)
    tail = 1.0 - np.logspace(-2, -5, 100)
    return np.unique(np.concatenate((body, tail, [1.0])))


def cdf_points(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """(x, F(x)) of the empirical CDF; exact steps for small samples, else quantiles. Returns (x, y, binned)."""
    v = np.sort(values[np.isfinite(values)])
    if v.size == 0:
        return v, v, False
    if v.size <= EXACT_CDF_MAX:
        return v, np.arange(1, v.size + 1) / v.size, False
    q = quantile_levels()
    return np.quantile(v, q), q, True


def hist_cdf_points(hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CDF of a log10(ms) histogram at the quantile levels (value = the upper edge of the bin reaching q)."""
    total = hist.sum()
    if total <= 0:
        return np.empty(0), np.empty(0)
    cum = np.cumsum(hist) / total
    q = quantile_levels()
    idx = np.minimum(np.searchsorted(cum, q - 1e-12, side="left"), hist.size - 1)
    return 10 ** _ITL_EDGES[idx + 1], q


def hist_quantile(hist: np.ndarray, q: float) -> float | None:
    total = hist.sum()
    if total <= 0:
        return None
    cum = np.cumsum(hist) / total
    i = min(int(np.searchsorted(cum, q - 1e-12, side="left")), hist.size - 1)
    return float(10 ** _ITL_EDGES[i + 1])


def bucket_minmax(t: np.ndarray, v: np.ndarray, t0: float, t1: float, n: int = TIME_BUCKETS) -> tuple:
    """Per time bucket: (centre, min, max) of the samples inside; buckets without samples are dropped."""
    width = (t1 - t0) / n if t1 > t0 else 1.0
    b = np.clip(((t - t0) / width).astype(np.int64), 0, n - 1)
    mn = np.full(n, np.inf)
    mx = np.full(n, -np.inf)
    np.minimum.at(mn, b, v)
    np.maximum.at(mx, b, v)
    have = np.isfinite(mn)
    centres = t0 + (np.arange(n) + 0.5) * width
    return centres[have], mn[have], mx[have]


# --------------------------------------------------------------------------------------------------
# figures of one run
# --------------------------------------------------------------------------------------------------
CDF_SPECS = (
    # key, title, [(from, to, label, dashed)], summary latency keys
    ("ttft", "TTFT: time to first token", [("intended_ns", "first_token_ns", "from intended start (corrected)", False),
                                           ("send_ns", "first_token_ns", "from send (uncorrected)", True)]),
    ("ttfvt", "TTFVT: time to first visible (answer) token",
     [("intended_ns", "first_content_ns", "from intended start (corrected)", False),
      ("send_ns", "first_content_ns", "from send (uncorrected)", True)]),
    ("tpot", "TPOT: time per output token", []),
    ("itl", "ITL: inter-token latency, per token", []),
    ("e2e", "E2E: end-to-end latency", [("intended_ns", "end_ns", "from intended start (corrected)", False),
                                       ("send_ns", "end_ns", "from send (uncorrected)", True)]),
)  # fmt: skip


def tpot_ms(req: RunRequests) -> np.ndarray:
    n = req.completion
    with np.errstate(invalid="ignore", divide="ignore"):
        v = (req.t["last_token_ns"] - req.t["first_token_ns"]) / (n - 1) / MS
    v[~(n > 1)] = np.nan
    return v


def cdf_figure(
    title: str, lines: list[tuple[str, np.ndarray, np.ndarray, bool]], *, fig_id: str, note: str = ""
) -> str:
    """Latency CDF on a log time axis; lines: (label, x ms, F, dashed). Dotted guides at p50, p90, p99."""
    W, H = 440, 270
    lines = [ln for ln in lines if ln[1].size]
    if not lines:
        return empty_figure(W, H, "no data: no request reached this point", title=title, fig_id=fig_id)
    xs = np.concatenate([ln[1] for ln in lines])
    xs = xs[xs > 0]
    if xs.size == 0:
        xs = np.array([1e-3])
    # a few near-zero values (tokens read in one socket read: a gap of ~0) would stretch the log axis over
    # decades of nothing: start the axis near the 1st percentile and draw smaller values at its left edge
    floor = float(np.quantile(xs, 0.01)) / 3
    clipped = bool((xs < floor).any())
    lo, hi = _nice_log_bounds(max(float(xs.min()), floor), float(xs.max()))
    if clipped:
        note = (note + "; " if note else "") + f"values below {lo:g} ms drawn at the left edge"
    x = Scale(lo, hi, 0, W - 70, log=True)
    y = Scale(0, 1, H - 70, 0)
    p = Panel(x, y, left=52, top=26, width=W - 70, height=H - 70, title=title, xlabel="milliseconds (log scale)",
              ylabel="share of requests ≤ x", yfmt=lambda v: f"{v:.0%}" if v in (0, 0.5, 1) else f"{v:.1f}")  # fmt: skip
    p.legend_at = "below"  # under the axis: a curve may run anywhere in the panel (ITL's rises mid-way)
    for q, lbl in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99")):
        p.hline(q, text=lbl)
    for i, (label, xv, fv, dashed) in enumerate(lines):
        color = PALETTE[i % len(PALETTE)] if not dashed else PALETTE[1]
        if not dashed and sum(1 for ln in lines if not ln[3]) == 1:
            color = PALETTE[0]  # the one solid curve beside its dashed twin (corrected / uncorrected)
        p50 = float(np.interp(0.5, fv, xv)) if fv.size else float("nan")
        p99 = float(np.interp(0.99, fv, xv)) if fv.size else float("nan")
        p.line(
            np.maximum(xv, lo), fv, color=color, dash="5,3" if dashed else None, label=label, step=False,
            title=f"{label}: p50 {_ms(p50)}, p99 {_ms(p99)}",
        )  # fmt: skip
    body = [p.render()]
    # below the panel: the x-axis label, then the legend, then the note, each on its own line
    height = H + p.below_height()
    for part in note.split("; ") if note else ():  # one line per remark: a long note never runs off the left
        height += 15
        body.append(
            f'<text class="note" x="{W - 12}" y="{num(height - 6)}" text-anchor="end" font-size="9.5" '
            f'fill="{MUTED}">{esc(part)}</text>'
        )
    return figure(W, int(math.ceil(height)), body, title=title, fig_id=fig_id)


def _nice_log_bounds(lo: float, hi: float) -> tuple[float, float]:
    steps = (1, 2, 5, 10)
    e = math.floor(math.log10(lo))
    nlo = max(m * 10**e for m in steps if m * 10**e <= lo * (1 + 1e-12))
    e = math.floor(math.log10(hi))
    nhi = min(m * 10**e for m in steps if m * 10**e >= hi * (1 - 1e-12))
    if nhi <= nlo:
        nhi = nlo * 10
    return nlo, nhi


def _ms(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    if v >= 10_000:
        return f"{v / 1000:,.1f} s"
    return f"{v:,.1f} ms" if v >= 10 else f"{v:,.2f} ms"


def run_cdfs(req: RunRequests) -> dict[str, tuple[str, bool]]:
    """{name: (svg, binned)} for TTFT, TTFVT, TPOT, ITL, E2E over measured successful requests."""
    m = req.measured_ok
    out: dict[str, tuple[str, bool]] = {}
    for key, title, pairs in CDF_SPECS:
        binned = False
        lines = []
        if key == "tpot":
            xv, fv, binned = cdf_points(tpot_ms(req)[m])
            lines.append(("TPOT (first to last token)", xv, fv, False))
        elif key == "itl":
            xv, fv = hist_cdf_points(req.itl_hist)
            binned = True
            lines.append((f"per token ({int(req.itl_hist.sum()):,} gaps)", xv, fv, False))
        else:
            for a, b, label, dashed in pairs:
                xv, fv, bn = cdf_points(req.ms(a, b)[m])
                binned |= bn
                lines.append((label, xv, fv, dashed))
        note = (
            "binned: log histogram, 0.6% wide bins"
            if key == "itl"
            else "drawn at 300 quantiles"
            if binned
            else ""
        )
        out[key] = (cdf_figure(title, lines, fig_id=f"cdf-{key}", note=note), binned)
    return out


@dataclass
class TimelineInfo:
    drawn: int
    total: int
    stragglers: int
    failed: int
    downsampled_series: list[str]
    bucket_s: float


def select_timeline(req: RunRequests, straggler: np.ndarray, cap: int = TIMELINE_MAX) -> np.ndarray:
    """Indices (positions) to draw: every straggler and failure first, then evenly spaced others."""
    n = len(req)
    if n <= cap:
        return np.arange(n)
    special = np.flatnonzero(straggler | ~req.ok)
    if special.size >= cap:
        e2e = req.ms("intended_ns", "end_ns")[special]
        special = special[np.argsort(-np.nan_to_num(e2e, nan=np.inf))[:cap]]
        return np.sort(special)
    rest = np.setdiff1d(np.arange(n), special, assume_unique=True)
    take = rest[np.linspace(0, rest.size - 1, cap - special.size).round().astype(np.int64)]
    return np.sort(np.concatenate((special, np.unique(take))))


def timeline_figure(
    req: RunRequests,
    server: ServerSeries,
    straggler_threshold_ms: float | None,
    verdicts: dict[int, str],
    *,
    cap: int = TIMELINE_MAX,
) -> tuple[str, TimelineInfo]:
    """Every request as a bar (wait, reasoning, answer) over time, and under it the server's state, one x axis."""
    W = 1060
    left, right = 64, 16
    pw = W - left - right
    n = len(req)
    e2e_send = req.ms("send_ns", "end_ns")
    thr = straggler_threshold_ms if straggler_threshold_ms is not None else math.inf
    straggler = req.measured_ok & (np.nan_to_num(e2e_send, nan=-1) > thr)
    sel = select_timeline(req, straggler, cap)
    order = sel[np.argsort(req.t["intended_ns"][sel], kind="stable")]
    t0 = 0.0
    ends = (
        np.concatenate([req.t[k][np.isfinite(req.t[k])] for k in ("end_ns", "intended_ns")])
        if n
        else np.zeros(1)
    )
    t1 = float(ends.max()) if ends.size else 1.0
    t1 = max(t1, 1e6)
    xs = Scale(t0 / NS, t1 / NS, 0, pw)
    rows = len(order)
    th = float(min(440, max(140, rows * 7)))
    row_h = th / max(rows, 1)
    bar_h = max(min(row_h * 0.78, 9.0), 0.7)
    ys = Scale(0, max(rows, 1), 0, th)
    p = Panel(xs, ys, left=left, top=44, width=pw, height=th, title="Requests over time (one row per request, in order of intended start)",
              ylabel="request (by start)", show_xticks=False, yfmt=lambda v: f"{int(v)}")  # fmt: skip
    T = req.t
    marks = []
    for row, i in enumerate(order):
        y = ys(row + 0.5) - bar_h / 2
        ti = T["intended_ns"][i]
        ft = T["first_token_ns"][i]
        fr = T["first_reasoning_ns"][i]
        fc = T["first_content_ns"][i]
        end = T["end_ns"][i]
        segs = []
        wait_end = ft if math.isfinite(ft) else end
        if math.isfinite(ti) and math.isfinite(wait_end):
            segs.append((ti, wait_end, C_WAIT))
        if math.isfinite(fr):
            r_end = fc if math.isfinite(fc) else (end if math.isfinite(end) else T["last_token_ns"][i])
            segs.append((fr, r_end, C_REASON))
        if math.isfinite(fc) and math.isfinite(end):
            segs.append((fc, end, C_ANSWER))
        elif math.isfinite(ft) and not math.isfinite(fr) and math.isfinite(end):
            segs.append((ft, end, C_ANSWER))
        parts = []
        for a, b, c in segs:
            if not (math.isfinite(a) and math.isfinite(b)):
                continue
            xa, xb = xs(a / NS), xs(b / NS)
            parts.append(
                f'<rect x="{num(xa)}" y="{num(y)}" width="{num(max(xb - xa, 0.6))}" height="{num(bar_h)}" fill="{c}"/>'
            )
        is_s = bool(straggler[i])
        failed = not req.ok[i]
        if is_s or failed:
            xe = xs((end if math.isfinite(end) else ti) / NS)
            color = C_STRAG if is_s else C_FAIL
            parts.append(
                f'<rect x="{num(xs(ti / NS) - 1)}" y="{num(y - 0.8)}" width="{num(max(xe - xs(ti / NS), 0.6) + 2)}"'
                f' height="{num(bar_h + 1.6)}" fill="none" stroke="{color}" stroke-width="1.2"/>'
            )
        # intended start tick
        parts.append(
            f'<rect x="{num(xs(ti / NS))}" y="{num(y)}" width="0.8" height="{num(bar_h)}" fill="#333"/>'
        )
        tip = _request_tip(req, i, is_s, verdicts.get(int(req.index[i])))
        cls = "req straggler" if is_s else "req failed" if failed else "req"
        marks.append(
            f'<g class="{cls}" data-index="{int(req.index[i])}"><title>{esc(tip)}</title>{"".join(parts)}</g>'
        )
    p.raw("".join(marks))
    body = [p.render(), _timeline_legend(left, 12, pw)]
    top = 44 + th + 14
    downsampled: list[str] = []
    panels: list[Panel] = []
    ph = 92
    if not server.empty:
        t_lo, t_hi = t0, t1
        # KV cache
        if server.kv.size:
            kp = Panel(xs, Scale(0, 1, ph, 0), left=left, top=top + 18, width=pw, height=ph,
                       title="KV-cache usage (server)", yfmt=lambda v: f"{v:.0%}", show_xticks=False)  # fmt: skip
            _series(kp, server.kv_t, server.kv, t_lo, t_hi, PALETTE[2], "KV usage", downsampled)
            kp.hline(0.9, text="90%")
            panels.append(kp)
            top += ph + 30
        if server.running.size or server.waiting.size:
            vmax = nice_max(float(max(server.running.max(initial=0), server.waiting.max(initial=0), 1)))
            rp = Panel(xs, Scale(0, vmax, ph, 0), left=left, top=top + 18, width=pw, height=ph,
                       title="Requests running and waiting (server)", show_xticks=False)  # fmt: skip
            _series(rp, server.running_t, server.running, t_lo, t_hi, PALETTE[0], "running", downsampled)
            _series(rp, server.waiting_t, server.waiting, t_lo, t_hi, PALETTE[4], "waiting", downsampled)
            panels.append(rp)
            top += ph + 30
        if server.preempt.size > 1:
            dt = np.diff(server.preempt)
            tt = server.preempt_t[1:]
            keep = (dt > 0) & (tt >= t_lo) & (tt <= t_hi)
            tt, dt = tt[keep], dt[keep]
            if tt.size > TIME_BUCKETS:
                c, _, _ = bucket_minmax(tt, dt, t_lo, t_hi)
                sums = _bucket_sum(tt, dt, t_lo, t_hi)
                tt, dt = c, sums[sums > 0]
                downsampled.append("preemptions")
            vmax = nice_max(float(dt.max(initial=1)))
            pp = Panel(xs, Scale(0, vmax, 56, 0), left=left, top=top + 18, width=pw, height=56,
                       title=f"Preemptions (server counter, increase per scrape; total {server.preempt[-1] - server.preempt[0]:,.0f})",
                       show_xticks=False)  # fmt: skip
            stems = "".join(
                f'<line x1="{num(xs(a / NS))}" x2="{num(xs(a / NS))}" y1="56" y2="{num(pp.y(b))}" stroke="{PALETTE[4]}" stroke-width="1"/>'
                for a, b in zip(tt, dt, strict=True)
            )
            pp.raw(stems)
            pp.points(tt / NS, dt, color=PALETTE[4], r=2.6, shape="triangle",
                      titles=[f"t={a / NS:,.1f} s: +{b:g} preemptions" for a, b in zip(tt, dt, strict=True)])  # fmt: skip
            panels.append(pp)
            top += 56 + 30
    # throughput: records (chunk times) and the server's generation counter, in the same buckets
    bucket_ns = req.tok_bin_ns
    tp = None
    rec_t = (np.arange(req.tok_bins.size) + 0.5) * bucket_ns
    rec_v = req.tok_bins / (bucket_ns / NS)
    keep = rec_t <= t1 + bucket_ns
    rec_t, rec_v = rec_t[keep], rec_v[keep]
    srv_t = srv_v = np.empty(0)
    if server.gen.size > 1:
        d = np.diff(server.gen)
        dt = np.diff(server.gen_t)
        tt = server.gen_t[1:]
        sums = np.bincount((tt // bucket_ns).astype(np.int64), weights=d)
        spans = np.bincount((tt // bucket_ns).astype(np.int64), weights=dt)
        have = spans > 0
        srv_t = (np.flatnonzero(have) + 0.5) * bucket_ns
        srv_v = sums[have] / (spans[have] / NS)
        k2 = srv_t <= t1 + bucket_ns
        srv_t, srv_v = srv_t[k2], srv_v[k2]
    if rec_v.size or srv_v.size:
        vmax = nice_max(float(max(rec_v.max(initial=0), srv_v.max(initial=0), 1)))
        tp = Panel(xs, Scale(0, vmax, ph, 0), left=left, top=top + 18, width=pw, height=ph,
                   title=f"Output throughput, tokens/s (averaged per {bucket_ns / NS:g} s)", xlabel="seconds since the run started",
                   )  # fmt: skip
        if rec_v.size:
            tp.line(
                rec_t / NS, rec_v, color=PALETTE[0], label="received by loadgen (stream chunks)", step=False
            )
        if srv_v.size:
            tp.line(srv_t / NS, srv_v, color=PALETTE[1], dash="5,3", label="generated by server (counter)")
        panels.append(tp)
        top += ph + 46
    else:
        p.show_xticks = True
        p.xlabel = "seconds since the run started"
        top += 20
    for q in panels:
        body.append(q.render())
    height = top + 8
    # crosshair target: the page's script draws a vertical line across all panels at the pointer
    body.append(
        f'<rect class="xhair-zone" x="{left}" y="44" width="{pw}" height="{num(height - 44)}" fill="none"'
        f' data-t0="{t0 / NS}" data-t1="{t1 / NS}" pointer-events="none"/>'
    )
    info = TimelineInfo(
        len(order), n, int(straggler.sum()), int((~req.ok).sum()), sorted(set(downsampled)), bucket_ns / NS
    )
    return figure(W, height, body, title="Timeline of requests and server state", fig_id="timeline"), info


def _bucket_sum(t: np.ndarray, v: np.ndarray, t0: float, t1: float, n: int = TIME_BUCKETS) -> np.ndarray:
    width = (t1 - t0) / n if t1 > t0 else 1.0
    b = np.clip(((t - t0) / width).astype(np.int64), 0, n - 1)
    return np.bincount(b, weights=v, minlength=n)


def _series(
    p: Panel, t: np.ndarray, v: np.ndarray, t0: float, t1: float, color: str, label: str, ds: list[str]
) -> None:
    """A gauge as a step line; with more samples than pixels, a min/max band per pixel column instead."""
    keep = (t >= t0 - 1) & (t <= t1 + 1)
    t, v = t[keep], v[keep]
    if t.size == 0:
        return
    if t.size > 2 * TIME_BUCKETS:
        c, mn, mx = bucket_minmax(t, v, t0, t1)
        p.area(c / NS, mn, mx, color=color, opacity=0.45)
        p.line(c / NS, (mn + mx) / 2, color=color, width=0.8, label=f"{label} (min–max per pixel)")
        ds.append(label)
    else:
        p.line(t / NS, v, color=color, step=True, label=label)


def _timeline_legend(left: float, y: float, width: float) -> str:
    items = [
        ("rect", C_WAIT, "waiting for the first token (from intended start)"),
        ("rect", C_REASON, "reasoning"),
        ("rect", C_ANSWER, "answer"),
        ("box", C_STRAG, "straggler"),
        ("box", C_FAIL, "failed"),
    ]
    out, x = [], left
    for kind, color, label in items:
        if kind == "rect":
            out.append(f'<rect x="{num(x)}" y="{y - 8}" width="14" height="9" fill="{color}"/>')
        else:
            out.append(
                f'<rect x="{num(x)}" y="{y - 8}" width="14" height="9" fill="none" stroke="{color}" stroke-width="1.5"/>'
            )
        out.append(f'<text x="{num(x + 18)}" y="{y}" font-size="10.5" fill="#222">{esc(label)}</text>')
        x += 18 + len(label) * 5.9 + 16
    return "".join(out)


def _request_tip(req: RunRequests, i: int, straggler: bool, verdict: str | None) -> str:
    T = req.t

    def d(a: str, b: str) -> str:
        return (
            _ms(float((T[b][i] - T[a][i]) / MS)) if math.isfinite(T[a][i]) and math.isfinite(T[b][i]) else "-"
        )

    head = f"request #{int(req.index[i])}"
    if not req.ok[i]:
        head += f" — FAILED ({req.error_kind[i] or 'error'})"
    elif straggler:
        head += " — STRAGGLER" + (f": {verdict}" if verdict else "")
    if req.warmup[i]:
        head += " (warm-up, not in the statistics)"
    tok = f"{_int(req.prompt[i])} prompt / {_int(req.completion[i])} output tokens ({_int(req.reasoning[i])} reasoning)"
    tags = ", ".join(f"{k}={v}" for k, v in req.tags[i].items() if k in ("dataset", "budget", "difficulty"))
    lag, queue = client_delays(
        _finite(T["intended_ns"][i]) or 0.0, _finite(T["dispatched_ns"][i]), _finite(T["slot_ns"][i])
    )
    lines = [
        head,
        f"intended start {T['intended_ns'][i] / NS:,.3f} s, send lag {'-' if lag is None else _ms(lag / MS)}"
        + (f", queue wait {_ms(queue / MS)}" if queue else ""),
        f"TTFT {d('send_ns', 'first_token_ns')} (from intended {d('intended_ns', 'first_token_ns')})",
        f"TTFVT {d('send_ns', 'first_content_ns')}, E2E {d('send_ns', 'end_ns')} (from intended {d('intended_ns', 'end_ns')})",
        tok + (f", finish {req.finish[i]}" if req.finish[i] else ""),
    ]
    if tags:
        lines.append(tags)
    return "\n".join(lines)


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _int(v: float) -> str:
    return f"{int(v):,}" if math.isfinite(v) else "-"


# --------------------------------------------------------------------------------------------------
# per dataset / budget, accuracy
# --------------------------------------------------------------------------------------------------
def group_figure(tag: str, groups: dict[str, Any]) -> str | None:
    """Per group: TTFT, TTFVT, E2E as p50 bars with a whisker to p99, on a log axis."""
    names = list(groups)
    if not names:
        return None
    mets = (("ttft", "TTFT", PALETTE[5]), ("ttfvt", "TTFVT", PALETTE[3]), ("e2e", "E2E", PALETTE[0]))
    vals = [
        (g_i, m_i, (groups[n].get(k) or {}).get("p50"), (groups[n].get(k) or {}).get("p99"))
        for g_i, n in enumerate(names)
        for m_i, (k, _, _) in enumerate(mets)
    ]
    xs = [v for _, _, a, b in vals for v in (a, b) if v is not None and v > 0]
    if not xs:
        return None
    lo, hi = _nice_log_bounds(min(xs), max(xs))
    bar = 9
    gh = bar * 3 + 12
    W, ph = 640, gh * len(names)
    left = 20 + min(max(len(str(n)) for n in names), 24) * 6.5
    x = Scale(lo, hi, 0, W - left - 20, log=True)
    y = Scale(0, len(names), 0, ph)
    p = Panel(x, y, left=left, top=30, width=W - left - 20, height=ph, title=f"Latency by {tag}: p50 (bar) to p99 (whisker)",
              xlabel="milliseconds (log scale)", yfmt=lambda v: "")  # fmt: skip
    marks = []
    for g_i, m_i, p50, p99 in vals:
        if p50 is None or p50 <= 0:
            continue
        yy = g_i * gh + 6 + m_i * bar
        x50 = x(p50)
        label, color = mets[m_i][1], mets[m_i][2]
        tip = f"{names[g_i]} {label}: p50 {_ms(p50)}, p99 {_ms(p99)}"
        w = (
            f'<line x1="{num(x50)}" x2="{num(x(p99))}" y1="{num(yy + bar / 2 - 0.5)}" y2="{num(yy + bar / 2 - 0.5)}" stroke="#333" stroke-width="1"/>'
            if p99
            else ""
        )
        marks.append(
            f'<g class="bar"><title>{esc(tip)}</title><rect x="0" y="{num(yy)}" width="{num(max(x50, 1))}" height="{bar - 1}" fill="{color}"/>{w}</g>'
        )
    p.raw("".join(marks))
    labels = "".join(
        f'<text x="{num(left - 6)}" y="{num(30 + g_i * gh + gh / 2 + 3)}" text-anchor="end" font-size="11" fill="#222">{esc(str(n)[:24])}</text>'
        for g_i, n in enumerate(names)
    )
    for _, lbl, c in mets:
        p.legend.append((lbl, c, "rect"))
    return figure(W, ph + 80, [p.render(), labels], title=f"Latency by {tag}", fig_id=f"by-{tag}")


def accuracy_figure(acc: dict[str, Any]) -> str | None:
    """Accuracy with its 95 % interval per dataset x budget (or per dataset / budget), 0..100 %."""
    rows: list[tuple[str, dict[str, Any]]] = []
    for ds, per in (acc.get("by_dataset_budget") or {}).items():
        rows += [(f"{ds} @ {b}", d) for b, d in per.items()]
    if not rows:
        rows = [(f"{k}", d) for sect in ("by_dataset", "by_budget") for k, d in (acc.get(sect) or {}).items()]
    if acc.get("overall"):
        rows.insert(0, ("overall", acc["overall"]))
    rows = [(n, d) for n, d in rows if d.get("accuracy") is not None]
    if not rows:
        return None
    W, rh = 640, 20
    left = 20 + min(max(len(n) for n, _ in rows), 28) * 6.3
    ph = rh * len(rows)
    x = Scale(0, 1, 0, W - left - 20)
    y = Scale(0, len(rows), 0, ph)
    p = Panel(x, y, left=left, top=30, width=W - left - 20, height=ph, title="Accuracy with 95 % confidence interval",
              xlabel="share correct", xfmt=lambda v: f"{v:.0%}", yfmt=lambda v: "")  # fmt: skip
    marks, labels = [], []
    for i, (n, d) in enumerate(rows):
        cy = (i + 0.5) * rh
        lo, hi = (d.get("ci95") or [None, None])[:2]
        tip = f"{n}: {d['accuracy']:.1%} of {d.get('n')} (95 % CI {_pct(lo)}–{_pct(hi)}), {d.get('truncated', 0)} truncated"
        ci = (
            f'<line x1="{num(x(lo))}" x2="{num(x(hi))}" y1="{num(cy)}" y2="{num(cy)}" stroke="#333" stroke-width="1.4"/>'
            if lo is not None and hi is not None
            else ""
        )
        marks.append(
            f'<g class="point"><title>{esc(tip)}</title>{ci}<circle cx="{num(x(d["accuracy"]))}" cy="{num(cy)}" r="4.5" fill="{PALETTE[2]}"/></g>'
        )
        labels.append(
            f'<text x="{num(left - 6)}" y="{num(30 + cy + 3.5)}" text-anchor="end" font-size="11" fill="#222">{esc(n[:28])}</text>'
        )
    p.raw("".join(marks))
    return figure(W, ph + 80, [p.render(), *labels], title="Accuracy", fig_id="accuracy")


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v:.0%}"


# --------------------------------------------------------------------------------------------------
# comparison
# --------------------------------------------------------------------------------------------------
def compare_bars(compare: dict[str, Any]) -> str | None:
    """Small multiples, one per metric: a bar per configuration; whiskers = baseline + CI of the difference."""
    configs = compare.get("configs") or []
    if not configs:
        return None
    metrics = compare_metric_order(compare)
    diffs = {(d.get("config"), d.get("metric")): d for d in compare.get("differences") or []}
    names = [str(c.get("name")) for c in configs]
    cols = 2
    pw, bar = 300, 16
    ph = bar * len(configs) + 8
    left = 16 + min(max(len(n) for n in names), 22) * 6.3
    cell_w, cell_h = left + pw + 30, ph + 64
    rows_n = math.ceil(len(metrics) / cols)
    body = []
    for k, met in enumerate(metrics):
        vals = [_num((c.get("metrics") or {}).get(met)) for c in configs]
        hi_candidates = [v for v in vals if v is not None]
        for c in configs:
            d = diffs.get((c.get("name"), met))
            if d and d.get("ci_high") is not None and d.get("baseline_value") is not None:
                hi_candidates.append(d["baseline_value"] + d["ci_high"])
        if not hi_candidates:
            continue
        vmax = nice_max(max(max(hi_candidates), 0) or 1.0)
        vmin = min(0.0, min(hi_candidates))
        ox, oy = (k % cols) * cell_w, (k // cols) * cell_h
        x = Scale(vmin, vmax, 0, pw)
        y = Scale(0, len(configs), 0, ph)
        p = Panel(
            x,
            y,
            left=ox + left,
            top=oy + 28,
            width=pw,
            height=ph,
            title=compare_label(compare, met),
            yfmt=lambda v: "",
        )
        if ((compare.get("metrics") or {}).get(met) or {}).get("unit") == "share":
            p.xfmt = lambda v: f"{100 * v:g}"  # the title says (%)
        marks = []
        for i, c in enumerate(configs):
            v = vals[i]
            if v is None:
                continue
            yy = 4 + i * bar
            is_base = c.get("name") == c.get("baseline", compare.get("baseline"))
            color = "#9e9e9e" if is_base else PALETTE[i % len(PALETTE)]
            d = diffs.get((c.get("name"), met))
            tip = f"{c.get('name')}: {met} = {v:,.4g}" + (" (baseline)" if is_base else "")
            whisk = ""
            if d and d.get("ci_low") is not None and d.get("baseline_value") is not None:
                a, b = d["baseline_value"] + d["ci_low"], d["baseline_value"] + d["ci_high"]
                tip += (
                    f"; diff {d.get('diff', 0):+,.4g} (95 % CI {d['ci_low']:+,.4g} … {d['ci_high']:+,.4g})"
                    + (", significant" if d.get("significant") else ", not significant")
                )
                cy = yy + bar / 2 - 1
                whisk = (
                    f'<path d="M{num(x(a))},{num(cy - 4)}V{num(cy + 4)}M{num(x(a))},{num(cy)}H{num(x(b))}'
                    f'M{num(x(b))},{num(cy - 4)}V{num(cy + 4)}" stroke="#222" stroke-width="1.2" fill="none"/>'
                )
            x0 = x(max(vmin, 0))
            marks.append(
                f'<g class="bar"><title>{esc(tip)}</title><rect x="{num(min(x0, x(v)))}" y="{num(yy)}" width="{num(max(abs(x(v) - x0), 1))}"'
                f' height="{bar - 3}" fill="{color}"/>{whisk}</g>'
            )  # fmt: skip
        p.raw("".join(marks))
        body.append(p.render())
        body += [
            f'<text x="{num(ox + left - 5)}" y="{num(oy + 28 + 4 + i * bar + bar / 2 + 2)}" text-anchor="end" font-size="10.5" fill="#222">{esc(n[:22])}</text>'
            for i, n in enumerate(names)
        ]
    if not body:
        return None
    return figure(
        cols * cell_w, rows_n * cell_h + 10, body, title="Per-configuration values", fig_id="compare-bars"
    )


def compare_metric_order(compare: dict[str, Any]) -> list[str]:
    """Metrics with at least one value, in the comparison's own order (its ``metrics`` table) when it has one."""
    have = {
        k
        for c in compare.get("configs") or []
        for k, v in (c.get("metrics") or {}).items()
        if _num(v) is not None
    }
    order = list(compare.get("metrics") or {}) or sorted(have)
    return [k for k in order if k in have] + sorted(have - set(order))


def compare_label(compare: dict[str, Any], key: Any) -> str:
    meta = (compare.get("metrics") or {}).get(key) or {}
    label = meta.get("label") or str(key)
    unit = meta.get("unit")
    if unit == "share":
        return f"{label} (%)"
    return f"{label} ({unit})" if unit and unit not in ("count",) else label


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


COMPARE_CDFS = (
    ("ttft", "TTFT from intended start", "intended_ns", "first_token_ns"),
    ("ttfvt", "TTFVT from intended start", "intended_ns", "first_content_ns"),
    ("tpot", "TPOT", "", ""),
    ("e2e", "E2E from intended start", "intended_ns", "end_ns"),
)


def compare_cdfs(runs: dict[Any, list[Path]]) -> dict[str, str]:
    """Overlaid CDFs, one line per configuration (its runs' measured successful requests pooled)."""
    pooled: dict[str, dict[str, list[np.ndarray]]] = {}
    for name, dirs in runs.items():
        for d in dirs:
            f = Path(d) / "requests.jsonl"
            if not f.is_file():
                continue
            r = read_requests(f, 10**9)
            m = r.measured_ok
            for key, _, a, b in COMPARE_CDFS:
                v = tpot_ms(r)[m] if key == "tpot" else r.ms(a, b)[m]
                pooled.setdefault(str(name), {}).setdefault(key, []).append(v)
    if not pooled:
        return {}
    out = {}
    for key, title, _, _ in COMPARE_CDFS:
        lines = []
        for name in pooled:
            vals = pooled[name].get(key) or []
            xv, fv, _ = cdf_points(np.concatenate(vals) if vals else np.empty(0))
            lines.append((name, xv, fv, False))
        out[key] = cdf_figure(title, lines, fig_id=f"compare-cdf-{key}")
    return out


def compare_kv(runs: dict[Any, list[Path]]) -> str | None:
    """KV-cache usage of each configuration's first run, side by side on shared axes."""
    series = []
    for name, dirs in runs.items():
        for d in dirs:
            s = read_server(Path(d) / "server_metrics.jsonl")
            if s.kv.size:
                series.append((str(name), s))
                break
    if not series:
        return None
    t1 = max(float(s.kv_t.max()) for _, s in series) / NS
    n = len(series)
    cols = min(n, 3)
    pw, ph = 300, 120
    cw, ch = pw + 70, ph + 70
    body = []
    for k, (name, s) in enumerate(series):
        ox, oy = (k % cols) * cw, (k // cols) * ch
        p = Panel(Scale(0, max(t1, 1e-3), 0, pw), Scale(0, 1, ph, 0), left=ox + 52, top=oy + 28, width=pw, height=ph,
                  title=name, yfmt=lambda v: f"{v:.0%}", xlabel="seconds since start")  # fmt: skip
        _series(p, s.kv_t, s.kv, 0.0, t1 * NS, PALETTE[k % len(PALETTE)], "KV usage", [])
        p.legend.clear()
        body.append(p.render())
    return figure(
        cols * cw,
        math.ceil(n / cols) * ch + 10,
        body,
        title="KV-cache usage per configuration",
        fig_id="compare-kv",
    )


# --------------------------------------------------------------------------------------------------
# sweep
# --------------------------------------------------------------------------------------------------
SWEEP_PLOTS = (
    # file key (kept from the first sweeps: figures/sweep_<key>.svg), [(cell key, title, y label)] (the first
    # key any cell has is plotted: older sweep.json files have no corrected TTFVT), log y, legend corner
    ("goodput_rps", [("goodput_rps", "", "")], False, "top-left"),
    ("p99_ttft_ms", [("p99_ttft_from_intended_ms", "p99 TTFT from intended start (corrected)", "ms (log scale)"),
                  ("p99_ttft_ms", "p99 TTFT from send (uncorrected)", "ms (log scale)")], True, "bottom"),
    ("p99_ttfvt_ms", [("p99_ttfvt_from_intended_ms", "p99 TTFVT from intended start (corrected)", "ms (log scale)"),
                   ("p99_ttfvt_ms", "p99 TTFVT from send (uncorrected)", "ms (log scale)")], True, "bottom"),
)  # fmt: skip
C_UNTRUSTED = "#222"


def sweep_goodput_title(slo_ms: dict[str, float] | None) -> tuple[str, str]:
    """Title and y label naming what the goodput figure plots: requests meeting the SLO, or (no --slo) every
    successful request."""
    from loadgen.report import words

    if slo_ms:
        return "Goodput (requests meeting the SLO)", f"requests/s with {words.slo(slo_ms)}"
    return "Successful requests (no --slo set: no goodput)", "successful requests/s"


def sweep_figures(cells: list[dict[str, Any]], slo_ms: dict[str, float] | None = None) -> dict[str, str]:
    """One figure per SWEEP_PLOTS entry; a line per cv over rate; saturated cells as hollow red rings, cells whose
    client check failed crossed out."""
    out: dict[str, str] = {}
    cvs = sorted({c.get("cv") for c in cells if c.get("cv") is not None})
    done = [c for c in cells if _num(c.get("rate")) is not None]
    W, H = 460, 300
    for name, candidates, logy, legend_at in SWEEP_PLOTS:
        key, title, ylabel = next(
            ((k, t, yl) for k, t, yl in candidates if any(_num(c.get(k)) is not None for c in done)),
            candidates[0],
        )
        if name == "goodput_rps":
            title, ylabel = sweep_goodput_title(slo_ms)
        pts = [(c, _num(c.get(key))) for c in done]
        pts = [(c, v) for c, v in pts if v is not None and (v > 0 or not logy)]
        fid = f"sweep-{name}"
        if not pts:
            out[f"sweep_{name}"] = empty_figure(
                W, H, "no completed cells with this metric", title=title, fig_id=fid
            )
            continue
        rates = [float(c["rate"]) for c in done]
        rlo, rhi = min(rates), max(rates)
        xlog = rlo > 0 and rhi / rlo >= 4
        x = Scale(rlo / 1.25, rhi * 1.25, 0, W - 80, log=True) if xlog else Scale(0, nice_max(rhi), 0, W - 80)
        vals = [v for _, v in pts]
        if name == "goodput_rps":
            vals += rates
        if logy:
            lo, hi = _nice_log_bounds(min(vals), max(vals))
            y = Scale(lo, hi, H - 80, 0, log=True)
        else:
            y = Scale(0, nice_max(max(vals)), H - 80, 0)
        p = Panel(x, y, left=60, top=28, width=W - 80, height=H - 80, title=title, xlabel="offered rate, requests/s" + (" (log scale)" if xlog else ""), ylabel=ylabel)  # fmt: skip
        p.legend_at = legend_at
        if name == "goodput_rps":
            rr = np.array(sorted(set(rates)))
            p.line(rr, rr, color=MUTED, width=0.8, dash="2,3", label="= offered (ideal)")
        for i, cv in enumerate(cvs):
            row = sorted(((float(c["rate"]), v, c) for c, v in pts if c.get("cv") == cv), key=lambda t: t[0])
            if not row:
                continue
            color = PALETTE[i % len(PALETTE)]
            xs_, ys_ = [r[0] for r in row], [r[1] for r in row]
            p.line(xs_, ys_, color=color, label=f"cv {cv:g}")
            p.points(xs_, ys_, color=color, r=3.2, titles=[_cell_tip(c) for _, _, c in row])
            sat = [(r, v, c) for r, v, c in row if c.get("saturated")]
            if sat:
                p.points([s[0] for s in sat], [s[1] for s in sat], color=C_STRAG, r=7, hollow=True,
                         titles=[_cell_tip(c) for _, _, c in sat])  # fmt: skip
            bad = [(r, v, c) for r, v, c in row if c.get("trustworthy") is False]
            if bad:
                p.points([s[0] for s in bad], [s[1] for s in bad], color=C_UNTRUSTED, r=5.5, shape="cross",
                         titles=[_cell_tip(c) for _, _, c in bad])  # fmt: skip
        if any(c.get("saturated") for c, _ in pts):
            p.legend.append(("saturated", C_STRAG, "hollow"))
        if any(c.get("trustworthy") is False for c, _ in pts):
            p.legend.append(("client check failed", C_UNTRUSTED, "cross"))
        out[f"sweep_{name}"] = figure(W, H, [p.render()], title=title, fig_id=fid)
    return out


def _cell_tip(c: dict[str, Any]) -> str:
    bits = [f"rate {c.get('rate')}/s, cv {c.get('cv')}: {c.get('status')}"]
    for k, lbl in (("throughput", "throughput/s"), ("goodput_rps", "goodput/s"),
                   ("p99_ttft_from_intended_ms", "p99 TTFT ms (from intended)"), ("p99_ttft_ms", "p99 TTFT ms (from send)"),
                   ("p99_ttfvt_from_intended_ms", "p99 TTFVT ms (from intended)"), ("error_share", "error share")):  # fmt: skip
        v = _num(c.get(k))
        if v is not None:
            bits.append(f"{lbl} {v:,.4g}")
    if c.get("saturated"):
        bits.append(f"SATURATED: {c.get('reason') or ''}")
    if c.get("trustworthy") is False:
        bits.append(
            "CLIENT CHECK FAILED: " + ("; ".join(c.get("client_check_reasons") or []) or "see summary.json")
        )
    return "\n".join(bits)
