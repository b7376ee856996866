"""Time series built from ``server_metrics.jsonl``: gauges as step functions, counters and histograms as deltas.

Conventions (all times are ns on the run clock, like every RequestRecord time):

* A sample's time is ``t_ns``, when its response completed; the server read its state somewhere in
  ``[t_start_ns, t_ns]``.
* A gauge holds its sampled value until the next sample (a step function); time-weighted statistics integrate
  that step function over the window, so a missed scrape does not silently re-weight the others.
* Series are identified by (vocabulary name, label string). Aggregating across label sets (engines, TP/DP ranks)
  is explicit: ``sum`` for counts and counters, ``mean`` or ``max`` for usage fractions.
* Counters and histograms are reset-corrected per series: a decrease means the server restarted its counter from
  zero, so the increment over that step is the new value itself (Prometheus ``increase()`` semantics).
* A window's delta runs from the last sample at/before its start to the first sample at/after its end (or the
  nearest samples inside when the run did not scrape that far).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

AGGREGATIONS = ("sum", "mean", "max")


@dataclass(slots=True, frozen=True)
class Sample:
    """One successful scrape."""

    t_ns: int
    t_start_ns: int
    url: str
    dialect: str
    values: dict[str, dict[str, Any]]


def load_samples(path: str | os.PathLike[str], url: str | None = None) -> list[Sample]:
    """Successful samples of ``server_metrics.jsonl`` in time order; error lines and a torn last line skipped."""
    out: list[Sample] = []
    with open(path, "rb") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                d = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if "error" in d or "values" not in d or (url is not None and d["url"] != url):
                continue
            out.append(
                Sample(d["t_ns"], d.get("t_start_ns", d["t_ns"]), d["url"], d.get("dialect", ""), d["values"])
            )
    out.sort(key=lambda s: s.t_ns)
    return out


def _window_indices(times: np.ndarray, start_ns: int, end_ns: int) -> tuple[int, int]:
    """Last sample at/before start (else the first) and first sample at/after end (else the last)."""
    i0 = int(np.searchsorted(times, start_ns, side="right")) - 1
    i1 = int(np.searchsorted(times, end_ns, side="left"))
    return max(i0, 0), min(i1, len(times) - 1)


class GaugeSeries:
    """A gauge aggregated across its label sets, as a step function of time."""

    def __init__(self, times_ns: np.ndarray, values: np.ndarray, name: str = "") -> None:
        self.name = name
        self.times_ns = np.asarray(times_ns, dtype=np.int64)
        self.values = np.asarray(values, dtype=np.float64)

    @classmethod
    def from_samples(cls, samples: list[Sample], name: str, agg: str = "sum") -> GaugeSeries:
        if agg not in AGGREGATIONS:
            raise ValueError(f"agg must be one of {AGGREGATIONS}")
        times, values = [], []
        for s in samples:
            series = s.values.get(name)
            if not series:
                continue
            vs = list(series.values())
            times.append(s.t_ns)
            values.append(sum(vs) if agg == "sum" else max(vs) if agg == "max" else sum(vs) / len(vs))
        return cls(np.array(times, dtype=np.int64), np.array(values, dtype=np.float64), name)

    def __len__(self) -> int:
        return len(self.times_ns)

    def _segments(self, start_ns: int, end_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """Values and durations of the step function clipped to [start, end); before the first sample: unknown."""
        if len(self) == 0 or end_ns <= start_ns:
            return np.empty(0), np.empty(0, dtype=np.int64)
        t = self.times_ns
        edges = np.append(t, max(end_ns, int(t[-1]))).astype(np.int64)
        lo = np.clip(edges[:-1], start_ns, end_ns)
        hi = np.clip(edges[1:], start_ns, end_ns)
        dur = hi - lo
        keep = dur > 0
        return self.values[keep], dur[keep]

    def covered_ns(self, start_ns: int, end_ns: int) -> int:
        """How much of the window the series says something about (it is unknown before the first sample)."""
        return int(self._segments(start_ns, end_ns)[1].sum())

    def mean(self, start_ns: int, end_ns: int) -> float | None:
        """Time-weighted mean over the covered part of the window."""
        v, d = self._segments(start_ns, end_ns)
        if d.sum() == 0:
            return self.value_at(start_ns)
        return float(np.dot(v, d) / d.sum())

    def max(self, start_ns: int, end_ns: int) -> float | None:
        v, _ = self._segments(start_ns, end_ns)
        if len(v) == 0:
            return self.value_at(start_ns)
        return float(v.max())

    def quantile(self, q: float, start_ns: int, end_ns: int) -> float | None:
        """Time-weighted quantile: the smallest value the gauge stayed at or below for a share >= q of the time."""
        v, d = self._segments(start_ns, end_ns)
        if len(v) == 0:
            return self.value_at(start_ns)
        order = np.argsort(v, kind="stable")
        cum = np.cumsum(d[order]) / d.sum()
        return float(v[order][min(int(np.searchsorted(cum, q - 1e-12, side="left")), len(v) - 1)])

    def time_above(self, threshold: float, start_ns: int, end_ns: int) -> tuple[int, float]:
        """Time (ns) strictly above ``threshold`` and its share of the covered window."""
        v, d = self._segments(start_ns, end_ns)
        total = int(d.sum())
        above = int(d[v > threshold].sum())
        return above, (above / total if total else 0.0)

    def value_at(self, t_ns: int) -> float | None:
        """The step function's value at ``t_ns`` (the latest sample at/before it), None before the first sample."""
        i = int(np.searchsorted(self.times_ns, t_ns, side="right")) - 1
        return float(self.values[i]) if i >= 0 else None


class KvCacheSeries(GaugeSeries):
    """KV-cache usage (0..1). Across engines: ``mean`` (the pool as a whole) or ``max`` (the most loaded engine)."""

    @classmethod
    def from_samples(
        cls, samples: list[Sample], name: str = "kv_cache_usage", agg: str = "mean"
    ) -> KvCacheSeries:
        g = GaugeSeries.from_samples(samples, name, agg)
        return cls(g.times_ns, g.values, name)


class CounterSeries:
    """A counter summed across its label sets after per-series reset correction."""

    def __init__(self, times_ns: np.ndarray, values: np.ndarray, name: str = "", resets: int = 0) -> None:
        self.name = name
        self.times_ns = np.asarray(times_ns, dtype=np.int64)
        self.values = np.asarray(values, dtype=np.float64)  # reset-corrected cumulative total
        self.resets = resets

    @classmethod
    def from_samples(cls, samples: list[Sample], name: str) -> CounterSeries:
        last: dict[str, float] = {}
        offset: dict[str, float] = {}
        times, values, resets = [], [], 0
        for s in samples:
            series = s.values.get(name)
            if series is None:
                continue
            for key, v in series.items():
                prev = last.get(key)
                if prev is not None and v < prev:
                    offset[key] = offset.get(key, 0.0) + prev
                    resets += 1
                last[key] = v
            times.append(s.t_ns)
            values.append(sum(last[k] + offset.get(k, 0.0) for k in last))
        return cls(np.array(times, dtype=np.int64), np.array(values, dtype=np.float64), name, resets)

    def __len__(self) -> int:
        return len(self.times_ns)

    def delta(self, start_ns: int, end_ns: int) -> float | None:
        """Increase over the window (see the module docstring for which samples bound it)."""
        if len(self) < 2:
            return None
        i0, i1 = _window_indices(self.times_ns, start_ns, end_ns)
        if i1 <= i0:
            return None
        return float(self.values[i1] - self.values[i0])

    def span_ns(self, start_ns: int, end_ns: int) -> int:
        """The time between the two samples that bound ``delta`` (the denominator of a rate)."""
        if len(self) < 2:
            return 0
        i0, i1 = _window_indices(self.times_ns, start_ns, end_ns)
        return int(self.times_ns[i1] - self.times_ns[i0]) if i1 > i0 else 0


@dataclass(slots=True)
class HistogramDelta:
    """Observations that fell inside a window: cumulative counts per finite upper bound, plus sum and count."""

    le: list[float]
    cum: list[float]
    sum: float
    count: float

    def quantile_bucket(self, q: float) -> tuple[float | None, float | None] | None:
        """The bucket holding rank ``q * count``, as ``(lower, upper)``: the quantile is > lower and <= upper.

        That is all a histogram knows. Prometheus' ``histogram_quantile`` interpolates linearly inside the bucket,
        which invents a point: with vLLM's first queue-time bucket of 0-0.3 s it answered p50 = 150 ms for a mean
        of 1.5 ms, and a rank above the last finite bound answered that bound (p99 = 10 s exactly, for a true
        maximum of 14.7 s). Here the first bucket's lower edge is 0 (None when its bound is <= 0: unbounded), and
        a rank in the ``+Inf`` bucket is ``(last bound, None)``.
        """
        if self.count <= 0 or not self.le:
            return None
        rank = q * self.count
        prev_le: float | None = None
        prev_cum = 0.0
        for le, cum in zip(self.le, self.cum, strict=True):
            if cum >= rank and cum > prev_cum:
                lower = prev_le if prev_le is not None else (0.0 if le > 0 else None)
                return lower, le
            prev_le, prev_cum = le, cum
        return self.le[-1], None

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count > 0 else None


class HistogramSeries:
    """A histogram summed across label sets after per-series reset correction.

    Only label sets whose bucket bounds equal the first one seen are summed (``skipped_series`` counts the rest).
    """

    def __init__(
        self,
        times_ns: np.ndarray,
        snaps: list[HistogramDelta],
        name: str = "",
        skipped: int = 0,
        resets: int = 0,
    ) -> None:
        self.name = name
        self.times_ns = np.asarray(times_ns, dtype=np.int64)
        self.snaps = snaps  # reset-corrected cumulative snapshots, one per sample
        self.skipped_series = skipped
        self.resets = resets

    @classmethod
    def from_samples(cls, samples: list[Sample], name: str) -> HistogramSeries:
        times: list[int] = []
        snaps: list[HistogramDelta] = []
        le_ref: list[float] | None = None
        last: dict[str, HistogramDelta] = {}
        offset: dict[str, HistogramDelta] = {}
        skipped_keys: set[str] = set()
        resets = 0
        for s in samples:
            series = s.values.get(name)
            if not series:
                continue
            for key, h in series.items():
                le_ref = le_ref if le_ref is not None else list(h["le"])
                if list(h["le"]) != le_ref:
                    skipped_keys.add(key)
                    continue
                cur = HistogramDelta(le_ref, list(h["cum"]), h["sum"], h["count"])
                prev = last.get(key)
                if prev is not None and cur.count < prev.count:  # the server restarted this series from zero
                    offset[key] = _add(offset[key], prev) if key in offset else prev
                    resets += 1
                last[key] = cur
            if not last or le_ref is None:
                continue
            merged = HistogramDelta(le_ref, [0.0] * len(le_ref), 0.0, 0.0)
            for key, h in last.items():
                merged = _add(merged, h)
                if key in offset:
                    merged = _add(merged, offset[key])
            times.append(s.t_ns)
            snaps.append(merged)
        return cls(np.array(times, dtype=np.int64), snaps, name, len(skipped_keys), resets)

    def __len__(self) -> int:
        return len(self.times_ns)

    def delta(self, start_ns: int, end_ns: int) -> HistogramDelta | None:
        """Observations between the samples that bound the window."""
        if len(self) < 2:
            return None
        i0, i1 = _window_indices(self.times_ns, start_ns, end_ns)
        if i1 <= i0:
            return None
        a, b = self.snaps[i0], self.snaps[i1]
        return HistogramDelta(
            list(a.le), [y - x for x, y in zip(a.cum, b.cum, strict=True)], b.sum - a.sum, b.count - a.count
        )


def _add(a: HistogramDelta, b: HistogramDelta) -> HistogramDelta:
    return HistogramDelta(
        a.le, [x + y for x, y in zip(a.cum, b.cum, strict=True)], a.sum + b.sum, a.count + b.count
    )
