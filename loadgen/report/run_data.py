"""What a run's page reads: ``requests.jsonl`` as columns with the reductions its figures draw (the per-token ITL
histogram, output tokens received per time bin), and the scraped series its timeline shows. Both come from the
one reader, :mod:`loadgen.records.columns`; the series' aggregation from :mod:`loadgen.scrape.series`.

A run that writes its report at its end has read ``requests.jsonl`` already, for its summary: the page takes those
columns (:func:`run_requests`; the run adds :class:`TokenBins` to that pass) and reads only the scraped series.
``python -m loadgen report DIR`` reads the folder itself (:func:`read_requests`), once.

Large files stay quick: above ``FULL_PARSE_BYTES`` the per-chunk arrays are read for every ``stride``-th request
only (cut out of the other lines before JSON parsing: they are 90 % of a file). ITL then comes from that sample;
received-token throughput uses the exact chunk times of the sample and, for the other requests, their completion
tokens spread evenly from first to last token. (A run's own pass reads every chunk: its summary needs them.)
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from loadgen.analysis.metrics import ChunkStats
from loadgen.records.columns import ChunkBlock, RequestColumns
from loadgen.records.columns import read_requests as read_request_columns
from loadgen.records.columns import read_server as read_server_columns
from loadgen.scrape.series import CounterSeries, GaugeSeries, KvCacheSeries

__all__ = ["RunRequests", "ServerSeries", "TokenBins", "read_requests", "read_server", "run_requests"]

FULL_PARSE_BYTES = 64_000_000  # larger requests.jsonl: per-chunk arrays of a request sample only
SERVER_NAMES = ("kv_cache_usage", "num_running", "num_waiting", "preemptions", "generation_tokens",
                "gpu_utilization", "gpu_power_watts")  # fmt: skip


@dataclass
class RunRequests(RequestColumns):
    """The run's columns plus the chunk reductions the page draws."""

    itl_hist: np.ndarray = field(
        default_factory=lambda: np.zeros(0)
    )  # per-token ITL counts (LogHistogram bins)
    tok_bin_ns: int = 1
    tok_bins: np.ndarray = field(default_factory=lambda: np.zeros(1))  # output tokens received per bin
    itl_requests: int = 0  # requests whose gaps make up itl_hist


class TokenBins:
    """A chunk reducer: output tokens received per ``width`` ns bin, every request's chunks (warm-up and failed
    ones too); requests read without their chunks spread their completion tokens evenly from first to last token.

    Without ``width`` (a run's own pass: the page's width depends on the summary of that same pass) the bins are
    ``FINE_NS`` wide, ten times wider whenever they would pass ``MAX_BINS``: powers of ten of ns, which divide
    every width the page picks (1, 2 or 5 times a power of ten, at least 50 ms, at least the run / 300); :meth:`at`
    sums them into the page's width."""

    FINE_NS = 10_000_000
    MAX_BINS = 100_000

    def __init__(self, width: int | None = None) -> None:
        self.fixed = width is not None
        self.width = width if width is not None else self.FINE_NS
        self.bins = np.zeros(1, dtype=np.float64)
        self.last_chunk_ns = 0  # how far the bins reach, as bins of another width would (see ``at``)
        # the last spread request's end: the spread reaches one bin past it
        self.spread_ns: float | None = None

    def _widen(self, t_max: float) -> None:
        while not self.fixed and t_max // self.width >= self.MAX_BINS:
            self.bins = _sum_bins(self.bins, 10)
            self.width *= 10

    def add(self, b: ChunkBlock) -> None:
        if b.t.size:
            t_max = max(int(b.t.max()), 0)
            self._widen(t_max)
            self.last_chunk_ns = max(self.last_chunk_ns, t_max)
        self.bins = _add_bins(self.bins, b.t, b.k, self.width)

    def finish(self, cols: RequestColumns) -> None:
        a, b, k = cols.t["first_token_ns"], cols.t["last_token_ns"], cols.n["completion_tokens"]
        cut = ~cols.chunks_read & ~np.isnan(a) & ~np.isnan(b) & (np.nan_to_num(k) != 0)
        if cut.any():
            spans = np.stack((a[cut], b[cut], k[cut]), axis=1)
            end = float(max(spans[:, 0].max(), spans[:, 1].max()))
            self._widen(end)
            self.spread_ns = end
            self.bins = _add_spread(self.bins, spans, self.width)

    def at(self, width: int) -> np.ndarray | None:
        """The bins summed into ``width`` ns, sized as bins of that width would be; None when ``width`` is not a
        multiple of these bins' width."""
        if width % self.width:
            return None
        n = self.last_chunk_ns // width + 1
        if self.spread_ns is not None:
            n = max(n, int(self.spread_ns // width) + 2)
        out = _sum_bins(self.bins, width // self.width)[:n]
        return np.pad(out, (0, n - out.size)) if out.size < n else out


def _sum_bins(bins: np.ndarray, f: int) -> np.ndarray:
    """Every ``f`` consecutive bins summed into one."""
    if f == 1:
        return bins
    return np.pad(bins, (0, -bins.size % f)).reshape(-1, f).sum(axis=1)


def _add_bins(acc: np.ndarray, t: np.ndarray, w: np.ndarray, width: int) -> np.ndarray:
    if t.size == 0:
        return acc
    b = np.bincount(np.maximum(t, 0) // width, weights=w.astype(np.float64))
    if b.size > acc.size:
        b[: acc.size] += acc
        return b
    acc[: b.size] += b
    return acc


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


def read_requests(path: Path, tok_bin_ns: int, full_parse_bytes: int = FULL_PARSE_BYTES) -> RunRequests:
    """One pass over requests.jsonl: the columns, the per-token ITL histogram and the token-time bins."""
    stats = ChunkStats(exact_max=0)  # the page draws the histogram; exact gaps are never needed here
    bins = TokenBins(tok_bin_ns)
    cols = read_request_columns(path, reducers=[stats, bins], chunk_sample_bytes=full_parse_bytes)
    return _page_requests(cols, stats, tok_bin_ns, bins.bins)


def run_requests(cols: RequestColumns, tok_bin_ns: int) -> RunRequests | None:
    """What the page draws from columns a run has read already (its summary's pass, read with ChunkStats and a
    :class:`TokenBins` without width); None when they lack one of those or the bins do not sum into ``tok_bin_ns``
    (then the page reads the file)."""
    stats = next((r for r in cols.reducers if isinstance(r, ChunkStats)), None)
    bins = next((r for r in cols.reducers if isinstance(r, TokenBins) and not r.fixed), None)
    tok_bins = bins.at(tok_bin_ns) if bins is not None else None
    if stats is None or tok_bins is None:
        return None
    return _page_requests(cols, stats, tok_bin_ns, tok_bins)


def _page_requests(
    cols: RequestColumns, stats: ChunkStats, tok_bin_ns: int, tok_bins: np.ndarray
) -> RunRequests:
    return RunRequests(
        **{f.name: getattr(cols, f.name) for f in fields(RequestColumns)},
        itl_hist=stats.per_token.hist.counts,
        tok_bin_ns=tok_bin_ns,
        tok_bins=tok_bins,
        itl_requests=stats.itl_requests,
    )


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
    gpu_t: np.ndarray = field(default_factory=lambda: np.empty(0))
    gpu: np.ndarray = field(
        default_factory=lambda: np.empty(0)
    )  # GPU utilisation 0..1, mean over GPUs (NVML)
    samples: int = 0

    @property
    def empty(self) -> bool:
        return self.samples == 0


def read_server(path: Path) -> ServerSeries:
    """KV usage (mean across engines), running/waiting (sums), preemptions and generated tokens (reset-corrected
    counters) from server_metrics.jsonl, first scraped URL only (like the summary's `server`)."""
    if not Path(path).exists():
        return ServerSeries()
    cols = read_server_columns(path, names=SERVER_NAMES)
    cols = cols.for_url(cols.first_url)
    if len(cols) == 0:
        return ServerSeries()
    kv = KvCacheSeries.from_columns(cols)
    running = GaugeSeries.from_columns(cols, "num_running", "sum")
    waiting = GaugeSeries.from_columns(cols, "num_waiting", "sum")
    pre = CounterSeries.from_columns(cols, "preemptions")
    gen = CounterSeries.from_columns(cols, "generation_tokens")
    gpu = GaugeSeries.from_columns(cols, "gpu_utilization", "mean")
    return ServerSeries(
        *(
            x
            for s in (kv, running, waiting, pre, gen, gpu)
            for x in (s.times_ns.astype(np.float64), s.values)
        ),
        samples=len(cols),
    )
