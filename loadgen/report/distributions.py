"""Latency distributions as figures: CDFs of per-request latencies and of the per-token ITL histogram.

Sizes stay bounded whatever the run's size, and every reduction is reported back so the page can say what it did:
per-request metrics are drawn exactly up to ``EXACT_CDF_MAX`` values, else at ``~300`` quantiles (dense in the tail:
p99.9 and p99.99 stay visible); per-token ITL comes binned from a fine log histogram
(:class:`loadgen.analysis.metrics.LogHistogram`, 0.6 % wide bins) filled while the file is read, never held in memory.
Which curves a figure has, and what they are called, comes from the catalogue of latencies
(:data:`loadgen.analysis.metrics.INTERVALS`).
"""

from __future__ import annotations

import math

import numpy as np

from loadgen.analysis.distribution import LogHistogram
from loadgen.analysis.metrics import INTERVAL, interval_ms, twin_label
from loadgen.records.columns import RequestColumns
from loadgen.report.svg import (
    MUTED,
    PALETTE,
    Panel,
    Scale,
    empty_figure,
    esc,
    figure,
    fmt_ms,
    nice_log_bounds,
    num,
)

__all__ = [
    "EXACT_CDF_MAX",
    "ITL_BINS_PER_DECADE",
    "cdf_figure",
    "cdf_points",
    "figure_key",
    "figure_title",
    "hist_cdf_points",
    "hist_quantile",
    "quantile_levels",
    "run_cdfs",
]

EXACT_CDF_MAX = 2000
ITL_BINS_PER_DECADE = LogHistogram.PER_DECADE
RUN_CDFS = ("ttft", "ttfvt", "tpot", "itl_per_token", "e2e")  # the figures of a run, by catalogue key


def figure_title(key: str) -> str:
    iv = INTERVAL[key]
    return f"{iv.name}: {iv.title}"


def figure_key(key: str) -> str:
    """The short key of a figure's files and ids (cdf_itl.svg, not cdf_itl_per_token.svg)."""
    return "itl" if key.startswith("itl") else key


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
    return 10 ** LogHistogram.EDGES[idx + 1], q


def hist_quantile(hist: np.ndarray, q: float) -> float | None:
    total = hist.sum()
    if total <= 0:
        return None
    cum = np.cumsum(hist) / total
    i = min(int(np.searchsorted(cum, q - 1e-12, side="left")), hist.size - 1)
    return float(10 ** LogHistogram.EDGES[i + 1])


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
    lo, hi = nice_log_bounds(max(float(xs.min()), floor), float(xs.max()))
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
            title=f"{label}: p50 {fmt_ms(p50)}, p99 {fmt_ms(p99)}",
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


def run_cdfs(req: RequestColumns, itl_hist: np.ndarray) -> dict[str, tuple[str, bool]]:
    """{name: (svg, binned)} for TTFT, TTFVT, TPOT, ITL, E2E over measured successful requests: a latency with a
    from-intended twin is drawn as both (solid: from the intended start; dashed: from the send)."""
    m = req.measured_ok
    out: dict[str, tuple[str, bool]] = {}
    for key in RUN_CDFS:
        iv = INTERVAL[key]
        binned = False
        lines = []
        if not iv.per_request:  # per-token ITL: from the histogram filled while reading
            xv, fv = hist_cdf_points(itl_hist)
            binned = True
            lines.append((f"per token ({int(itl_hist.sum()):,} gaps)", xv, fv, False))
        elif iv.from_intended is None:
            xv, fv, binned = cdf_points(interval_ms(req, key)[m])
            lines.append((iv.label, xv, fv, False))
        else:
            for k in (iv.from_intended, key):
                xv, fv, bn = cdf_points(interval_ms(req, k)[m])
                binned |= bn
                lines.append((twin_label(INTERVAL[k]), xv, fv, not INTERVAL[k].corrected))
        note = (
            "binned: log histogram, 0.6% wide bins"
            if not iv.per_request
            else "drawn at 300 quantiles"
            if binned
            else ""
        )
        name = figure_key(key)
        out[name] = (cdf_figure(figure_title(key), lines, fig_id=f"cdf-{name}", note=note), binned)
    return out
