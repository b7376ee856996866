"""Distributions: exact (one numpy pass over the values) or, for any number of values in fixed memory, a log
histogram with exact count, sum, min and max. Every latency table of loadgen has the same columns:
count, mean, min, p50, p90, p95, p99, p99.9, max.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["Gaps", "LogHistogram", "distribution"]

PERCENTILES = (50, 90, 95, 99, 99.9)


def distribution(values: Iterable[float] | np.ndarray) -> dict[str, float | int | None]:
    """count, mean, min, p50..p99.9, max of ``values`` (one numpy pass); empty input gives count 0 and Nones."""
    arr = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.float64)
    if arr.size == 0:
        return _empty_distribution()
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


def _empty_distribution() -> dict[str, float | int | None]:
    return {"count": 0, "mean": None, "min": None, **{_pkey(p): None for p in PERCENTILES}, "max": None}


def _pkey(p: float) -> str:
    return f"p{p:g}".replace(".", "_")


class LogHistogram:
    """A distribution of any length in fixed memory: counts in log-spaced bins, with exact count, sum, min, max.

    ``PER_DECADE`` bins per decade (400: 0.58 % wide) from 10**LOG_MIN to 10**LOG_MAX (in the caller's unit; for
    ms: 1 µs to 2.8 h); values below fall in the first bin, above in the last. A quantile is interpolated inside
    its bin (in log space) and clamped to [min, max]: within one bin width (0.6 %) of the exact one.
    """

    LOG_MIN, LOG_MAX, PER_DECADE = -3.0, 7.0, 400
    BINS = int((LOG_MAX - LOG_MIN) * PER_DECADE)
    EDGES = np.linspace(LOG_MIN, LOG_MAX, BINS + 1)  # log10 of the bin edges

    def __init__(self) -> None:
        self.counts = np.zeros(self.BINS, dtype=np.float64)
        self.n = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    @classmethod
    def bins_of(cls, values: np.ndarray) -> np.ndarray:
        lv = np.log10(np.maximum(values, 10**cls.LOG_MIN))
        return np.clip(((lv - cls.LOG_MIN) * cls.PER_DECADE).astype(np.int64), 0, cls.BINS - 1)

    def add(self, values: np.ndarray, weights: np.ndarray | None = None) -> None:
        values = np.asarray(values, dtype=np.float64)
        if values.size == 0:
            return
        w = None if weights is None else np.asarray(weights, dtype=np.float64)
        self.counts += np.bincount(self.bins_of(values), weights=w, minlength=self.BINS)
        self.n += int(values.size if w is None else w.sum())
        self.total += float(values.sum() if w is None else np.dot(values, w))
        self.min = min(self.min, float(values.min()))
        self.max = max(self.max, float(values.max()))

    def add_one(self, v: float) -> None:
        """One value, without numpy's per-call overhead (for a sampler that adds one at a time)."""
        lv = math.log10(v) if v > 10**self.LOG_MIN else self.LOG_MIN
        b = min(max(int((lv - self.LOG_MIN) * self.PER_DECADE), 0), self.BINS - 1)
        self.counts[b] += 1
        self.n += 1
        self.total += v
        if v < self.min:
            self.min = v
        if v > self.max:
            self.max = v

    def merge(self, other: LogHistogram) -> None:
        """Add ``other``'s values (as if they had been added here)."""
        if other.n == 0:
            return
        self.counts += other.counts
        self.n += other.n
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-able form (the non-empty bins only), e.g. for a sender to send to the driver."""
        nz = np.flatnonzero(self.counts)
        return {
            "bins": nz.tolist(),
            "counts": self.counts[nz].tolist(),
            "n": self.n,
            "total": self.total,
            "min": self.min if self.n else None,
            "max": self.max if self.n else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LogHistogram:
        h = cls()
        if d.get("n"):
            h.counts[np.asarray(d["bins"], dtype=np.int64)] = np.asarray(d["counts"], dtype=np.float64)
            h.n, h.total = int(d["n"]), float(d["total"])
            h.min, h.max = float(d["min"]), float(d["max"])
        return h

    def quantile(self, q: float) -> float | None:
        if self.n == 0:
            return None
        cum = np.cumsum(self.counts)
        r = q * (cum[-1] - 1) + 0.5  # the continuous rank of the q-th value
        i = min(int(np.searchsorted(cum, r, side="right")), self.BINS - 1)
        before = cum[i - 1] if i else 0.0
        frac = (r - before) / self.counts[i] if self.counts[i] else 0.5
        x = 10 ** (self.EDGES[i] + min(max(frac, 0.0), 1.0) / self.PER_DECADE)
        return float(min(max(x, self.min), self.max))

    def distribution(self) -> dict[str, float | int | None]:
        """As :func:`distribution`, the percentiles from the bins; ``binned`` says so."""
        if self.n == 0:
            return _empty_distribution()
        out: dict[str, float | int | None] = {"count": self.n, "mean": self.total / self.n, "min": self.min}
        for p in PERCENTILES:
            out[_pkey(p)] = self.quantile(p / 100)
        out["max"] = self.max
        out["binned"] = True
        return out


class Gaps:
    """Gap values kept exactly up to ``exact_max``, and always in a :class:`LogHistogram`."""

    def __init__(self, exact_max: int) -> None:
        self.hist = LogHistogram()
        self.exact: list[np.ndarray] | None = []
        self.n_exact = 0
        self.exact_max = exact_max

    def add(self, values: np.ndarray, weights: np.ndarray | None = None) -> None:
        self.hist.add(values, weights)
        if self.exact is None:
            return
        v = values if weights is None else np.repeat(values, weights)
        if self.n_exact + v.size > self.exact_max:
            self.exact = None  # from here on the histogram answers
            return
        self.exact.append(v)
        self.n_exact += v.size

    def distribution(self) -> dict[str, float | int | None]:
        if self.exact is None:
            return self.hist.distribution()
        return distribution(np.concatenate(self.exact) if self.exact else np.empty(0))
