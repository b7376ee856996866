"""``loadgen fit TRACE``: a Gamma renewal process fitted to a trace's inter-arrival gaps.

The fit is maximum likelihood with the location fixed at 0 (what ``scipy.stats.gamma.fit(gaps, floc=0)`` solves:
``log(shape) - digamma(shape) = log(mean) - mean(log gaps)``, here by Newton's method), so the fitted mean gap
equals the sample mean and the fitted cv is ``1/sqrt(shape)``. Goodness of fit is the Kolmogorov-Smirnov statistic
against the fitted Gamma and against the exponential of the same rate (a Poisson process). Both p-values use
parameters estimated from the same data, so they are optimistic (Lilliefors), and with hundreds of thousands of
gaps any small misfit is "significant": compare the two statistics rather than reading the p-values as verdicts.
The two-sided p-value is exact where scipy's ``kstest`` is: the Marsaglia-Tsang-Wang matrix method for up to 140
gaps, else twice the one-sided (Smirnov) tail where that is exact to within rounding (``n·D² > 2.2``: p below
about 0.03); in between, with more than 140 gaps and a large p, Stephens' corrected Kolmogorov limit (within 0.01).

Only numpy and ``scipy.special`` are imported: ``scipy.stats`` takes longer to import than a small trace takes to
fit, and ``python -m loadgen fit`` should answer at once.

Ties: trace timestamps are often quantised (BurstGPT logs whole seconds), which turns many gaps into exact zeros
that a Gamma cannot produce. When most gaps are multiples of one tick and ties are common, each timestamp is
spread uniformly inside its tick (seeded) before fitting; otherwise zero gaps are raised to 1 µs (or to the
smallest positive gap, if smaller). Either
way the share of ties is reported. Burstiness below the tick cannot be recovered from such a trace.

Drift: the trace is cut into windows (``window_s``, or up to 20 equal ones) and the arrival counts are tested
against a stationary renewal process with the fitted cv, whose counts have variance ≈ cv² · mean (an index of
dispersion test, chi-squared with windows - 1 degrees of freedom). A drifting rate gets a per-window table, since
one ``--rate/--cv`` pair then only describes the average.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

__all__ = [
    "FitResult",
    "GammaFit",
    "WindowFit",
    "fit_gaps",
    "fit_trace",
    "format_fit",
    "gamma_shape_mle",
    "ks_pvalue",
    "ks_test",
]

FLOOR_S = 1e-6
DRIFT_ALPHA = 0.01
MIN_GAPS_TO_FIT = 20
MAX_AUTO_WINDOWS = 20
MIN_ARRIVALS_PER_AUTO_WINDOW = 250


@dataclass(frozen=True, slots=True)
class GammaFit:
    """A Gamma fitted to gaps: rate (1/mean gap), sample and fitted cv, shape and scale, and KS against Gamma
    and against the exponential with the same rate."""

    n_gaps: int
    rate: float
    mean_gap_s: float
    cv: float  # the gaps' sample cv
    shape: float
    scale: float
    ks_gamma: float
    p_gamma: float
    ks_exp: float
    p_exp: float

    @property
    def fitted_cv(self) -> float:
        return 1.0 / math.sqrt(self.shape)

    def reproduce(self) -> str:
        return f"--rate {self.rate:.6g} --cv {self.fitted_cv:.4g}"


@dataclass(frozen=True, slots=True)
class WindowFit:
    start_s: float  # from the trace's first arrival
    end_s: float
    n_arrivals: int
    rate: float  # arrivals / window length
    fit: GammaFit | None  # None when the window has too few gaps


@dataclass(frozen=True, slots=True)
class FitResult:
    n_arrivals: int
    duration_s: float
    overall: GammaFit
    windows: tuple[WindowFit, ...]
    window_s: float | None  # as asked; None when the windows were chosen automatically
    drift_stat: float | None
    drift_df: int | None
    drift_p: float | None
    drifting: bool
    zero_gaps: int
    zero_gap_share: float
    tick_s: float | None  # timestamp quantum when the trace was dequantised
    notes: tuple[str, ...] = ()
    source: str = ""

    def reproduce_args(self) -> str:
        """The flags that replay this process as a synthetic Gamma arrival process."""
        return f"--arrival gamma {self.overall.reproduce()}"


def fit_gaps(gaps_s: np.ndarray) -> GammaFit:
    """Fit a Gamma (location 0) to positive gaps in seconds and test it and the exponential by KS."""
    gaps = np.asarray(gaps_s, dtype=np.float64)
    if gaps.size < 2:
        raise ValueError("need at least 2 gaps to fit")
    if (gaps <= 0).any():
        raise ValueError("gaps must be > 0 (floor or dequantise ties first)")
    mean = float(gaps.mean())
    cv = float(gaps.std(ddof=1) / mean) if gaps.size > 1 else float("nan")
    if np.allclose(gaps, gaps[0], rtol=1e-12):  # constant spacing: the Gamma limit shape -> inf
        shape, scale = 1e12, mean / 1e12
    else:
        shape = gamma_shape_mle(gaps)
        scale = mean / shape
    ks_g = ks_test(gaps, special.gammainc(shape, gaps / scale))
    ks_e = ks_test(gaps, -np.expm1(-gaps / mean))
    return GammaFit(
        n_gaps=int(gaps.size),
        rate=1.0 / mean,
        mean_gap_s=mean,
        cv=cv,
        shape=float(shape),
        scale=float(scale),
        ks_gamma=ks_g[0],
        p_gamma=ks_g[1],
        ks_exp=ks_e[0],
        p_exp=ks_e[1],
    )


def gamma_shape_mle(gaps: np.ndarray) -> float:
    """The maximum-likelihood Gamma shape with location 0: the root of ``log a - digamma(a) = s`` with
    ``s = log(mean) - mean(log x) > 0``, by Newton's method from the Greenwood-Durand start (the equation
    scipy's ``gamma.fit(floc=0)`` solves)."""
    s = math.log(float(gaps.mean())) - float(np.log(gaps).mean())
    if not s > 0:
        return 1e12  # every gap equal: the constant-spacing limit
    a = (3.0 - s + math.sqrt((s - 3.0) ** 2 + 24.0 * s)) / (12.0 * s)
    for _ in range(100):
        f = math.log(a) - float(special.digamma(a)) - s
        df = 1.0 / a - float(special.polygamma(1, a))  # < 0: f decreases in a
        step = f / df
        nxt = a - step
        a = nxt if nxt > 0 else a / 2
        if abs(step) <= 1e-14 * a:
            break
    return a


def ks_test(x: np.ndarray, cdf: np.ndarray) -> tuple[float, float]:
    """Two-sided one-sample Kolmogorov-Smirnov statistic and p-value, given the hypothesised CDF at each value
    (see the module docstring for how the p-value is computed)."""
    order = np.argsort(x, kind="stable")
    f = np.asarray(cdf, dtype=np.float64)[order]
    n = f.size
    i = np.arange(1, n + 1)
    d = float(max((i / n - f).max(), (f - (i - 1) / n).max()))
    return d, ks_pvalue(d, n)


def _mtw_cdf(n: int, d: float) -> float:
    """P(D_n < d), exactly (Marsaglia, Tsang & Wang 2003, "Evaluating Kolmogorov's distribution"); used where
    ``n·d² <= 4`` and n <= 140, so the matrix is small and nothing overflows."""
    k = int(n * d) + 1
    m = 2 * k - 1
    h = k - n * d
    idx = np.arange(m)
    diff = idx[:, None] - idx[None, :] + 1
    inv_fact = np.array([1.0 / math.factorial(i) for i in range(m + 1)])
    H = np.where(diff >= 0, inv_fact[np.clip(diff, 0, m)], 0.0)
    hp = h ** np.arange(1, m + 1)
    H[:, 0] -= hp * inv_fact[1 : m + 1]
    H[m - 1, :] -= hp[::-1] * inv_fact[m:0:-1]
    if 2 * h - 1 > 0:
        H[m - 1, 0] += (2 * h - 1) ** m * inv_fact[m]
    s = float(np.linalg.matrix_power(H, n)[k - 1, k - 1])
    for i in range(1, n + 1):
        s = s * i / n
    return s


def ks_pvalue(d: float, n: int) -> float:
    """P(D_n >= d) for the two-sided statistic of n values."""
    if d <= 0:
        return 1.0
    if d >= 1:
        return 0.0
    if d >= 0.5 or n * d * d > (4.0 if n <= 140 else 2.2):
        return float(min(1.0, 2.0 * special.smirnov(n, d)))  # P(D+ >= d and D- >= d) is negligible here
    if n <= 140:
        return float(min(1.0, max(0.0, 1.0 - _mtw_cdf(n, d))))
    sq = math.sqrt(n)
    return float(min(1.0, special.kolmogorov((sq + 0.12 + 0.11 / sq) * d)))


def _tick(gaps: np.ndarray) -> float | None:
    """The quantum of the timestamps when (nearly) every gap is a whole multiple of the smallest positive one."""
    positive = gaps[gaps > 0]
    if positive.size == 0:
        return None
    tick = float(positive.min())
    ratio = gaps / tick
    on_grid = np.abs(ratio - np.round(ratio)) < 1e-6 * np.maximum(1.0, ratio)
    return tick if on_grid.mean() > 0.99 else None


def _windows(ts: np.ndarray, window_s: float | None) -> list[tuple[float, float]]:
    t0, t1 = float(ts[0]), float(ts[-1])
    span = t1 - t0
    if span <= 0:
        return []
    if window_s is not None:
        if not (window_s > 0):
            raise ValueError(f"window must be > 0 s, got {window_s}")
        edges = list(np.arange(t0, t1, window_s)) + [t1]
        if len(edges) > 2 and edges[-1] - edges[-2] < window_s / 2:
            del edges[-2]  # fold a short tail into the last full window
    else:
        m = min(MAX_AUTO_WINDOWS, ts.size // MIN_ARRIVALS_PER_AUTO_WINDOW)
        if m < 2:
            return []
        edges = list(np.linspace(t0, t1, m + 1))
    return list(zip(edges[:-1], edges[1:], strict=True))


def _drift(
    windows: list[WindowFit], overall: GammaFit, notes: list[str]
) -> tuple[float | None, int | None, float | None, bool]:
    """Whether the windows' counts differ more than a renewal process of the overall cv allows (a dispersion-
    corrected chi-squared test): (statistic, df, p, drifting); a note when it drifts or cannot be tested."""
    drift_stat = drift_p = None
    drift_df = None
    drifting = False
    if len(windows) >= 2:
        counts = np.array([w.n_arrivals for w in windows], dtype=np.float64)
        lengths = np.array([w.end_s - w.start_s for w in windows])
        lam = counts.sum() / lengths.sum()
        expected = lam * lengths
        if expected.min() >= 20:
            # counts of a renewal process: var ≈ cv² · mean; the larger cv estimate keeps bursty traces from
            # reading as drift
            dispersion = max(overall.fitted_cv**2, overall.cv**2, 1e-6)
            drift_stat = float(((counts - expected) ** 2 / (dispersion * expected)).sum())
            drift_df = len(windows) - 1
            drift_p = float(special.chdtrc(drift_df, drift_stat))  # chi-squared survival
            drifting = drift_p < DRIFT_ALPHA
            if drifting:
                rates = counts / lengths
                notes.append(
                    f"the rate drifts (window rates {rates.min():.3g}-{rates.max():.3g}/s, p={drift_p:.2g}): "
                    "one --rate/--cv pair describes the average only; replay the trace (--arrival trace) to "
                    "keep the drift, or use a window's line"
                )
        else:
            notes.append("windows too short for a drift test (fewer than 20 expected arrivals in one)")
    return drift_stat, drift_df, drift_p, drifting


def fit_trace(
    timestamps_s: np.ndarray,
    window_s: float | None = None,
    *,
    seed: int = 0,
    dequantise: bool = True,
    source: str = "",
) -> FitResult:
    """Fit a Gamma renewal process to arrival times (seconds, any origin, any order); see the module docstring."""
    ts = np.sort(np.asarray(timestamps_s, dtype=np.float64))
    ts = ts[np.isfinite(ts)]
    if ts.size < 3:
        raise ValueError(f"need at least 3 arrivals to fit, got {ts.size}")
    notes: list[str] = []
    raw_gaps = np.diff(ts)
    zero = int((raw_gaps <= 0).sum())
    share = zero / raw_gaps.size
    tick = _tick(raw_gaps) if share > 0.01 else None
    if tick is not None and dequantise:
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xF17]))
        ts = np.sort(ts + rng.uniform(0.0, tick, size=ts.size))
        gaps = np.diff(ts)
        gaps[gaps <= 0] = FLOOR_S  # a tie left by the jitter has probability 0; guard anyway
        notes.append(
            f"timestamps are quantised to {tick:g} s ({100 * share:.1f}% of gaps are ties): each was spread "
            f"uniformly within its tick before fitting (seed {seed}); burstiness below {tick:g} s is not "
            "recoverable from this trace"
        )
    else:
        tick = None
        gaps = raw_gaps.copy()
        if zero:
            positive = raw_gaps[raw_gaps > 0]
            floor = min(FLOOR_S, float(positive.min())) if positive.size else FLOOR_S
            gaps[gaps <= 0] = floor  # only the ties: genuine sub-µs gaps of a bursty process stay as they are
            notes.append(f"{zero} zero gaps ({100 * share:.2f}%, ties) raised to {floor:.3g} s")
    overall = fit_gaps(gaps)
    duration = float(ts[-1] - ts[0])

    windows: list[WindowFit] = []
    edges = _windows(ts, window_s)
    for k, (a, b) in enumerate(edges):
        last = k == len(edges) - 1
        mask = (ts >= a) & ((ts <= b) if last else (ts < b))
        n = int(mask.sum())
        wg = np.diff(ts[mask])
        wg[wg <= 0] = FLOOR_S
        fit = fit_gaps(wg) if wg.size >= MIN_GAPS_TO_FIT else None
        windows.append(WindowFit(a - ts[0], b - ts[0], n, n / (b - a) if b > a else float("nan"), fit))

    drift_stat, drift_df, drift_p, drifting = _drift(windows, overall, notes)
    if overall.n_gaps > 100_000:
        notes.append("with this many gaps KS p-values reject any small misfit: compare the KS statistics")
    return FitResult(
        n_arrivals=int(ts.size),
        duration_s=duration,
        overall=overall,
        windows=tuple(windows),
        window_s=window_s,
        drift_stat=drift_stat,
        drift_df=drift_df,
        drift_p=drift_p,
        drifting=drifting,
        zero_gaps=zero,
        zero_gap_share=share,
        tick_s=tick,
        notes=tuple(notes),
        source=source,
    )


def _p(p: float) -> str:
    return f"{p:.3g}" if p >= 1e-4 else f"{p:.1e}"


def format_fit(result: FitResult) -> str:
    """The report ``loadgen fit`` prints: fit, goodness of fit, drift, per-window table, reproduce line."""
    g = result.overall
    better = "Gamma" if g.ks_gamma < g.ks_exp else "exponential (Poisson)"
    lines = [
        f"trace: {result.source or '-'}  arrivals {result.n_arrivals}  span {result.duration_s:.6g} s",
        f"rate {g.rate:.6g} req/s   mean gap {g.mean_gap_s:.6g} s   cv {g.cv:.4g} (sample)   "
        f"{g.fitted_cv:.4g} (fitted)",
        f"Gamma MLE (loc 0): shape {g.shape:.5g}  scale {g.scale:.5g} s",
        f"KS vs fitted Gamma:       D={g.ks_gamma:.4f}  p={_p(g.p_gamma)}",
        f"KS vs exponential (same rate): D={g.ks_exp:.4f}  p={_p(g.p_exp)}   closer fit: {better}",
        f"ties: {result.zero_gaps} zero gaps ({100 * result.zero_gap_share:.2f}%)"
        + (f", dequantised with tick {result.tick_s:g} s" if result.tick_s else ""),
    ]
    if result.drift_p is not None:
        verdict = "drifts" if result.drifting else "no significant drift"
        lines.append(
            f"drift test over {len(result.windows)} windows: chi2={result.drift_stat:.4g} "
            f"df={result.drift_df} p={_p(result.drift_p)} -> {verdict}"
        )
    if result.windows and (result.drifting or result.window_s is not None):
        lines.append(f"  {'window (s)':>23} {'n':>7} {'rate/s':>9} {'cv':>7} {'shape':>8}  reproduce")
        for w in result.windows:
            fit = w.fit
            rest = (
                f"{fit.fitted_cv:>7.3g} {fit.shape:>8.4g}  --rate {w.rate:.4g} --cv {fit.fitted_cv:.3g}"
                if fit
                else f"{'-':>7} {'-':>8}  (too few gaps)"
            )
            lines.append(f"  {w.start_s:>11.5g}-{w.end_s:<11.5g} {w.n_arrivals:>7} {w.rate:>9.4g} {rest}")
    lines.extend(f"note: {n}" for n in result.notes)
    lines.append(f"reproduce: {result.reproduce_args()}")
    return "\n".join(lines)
