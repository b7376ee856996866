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

The file is read once, as columns (:func:`loadgen.records.columns.read_server`); every series here is built from those
columns (``from_columns``, vectorised), or from a list of :class:`Sample` (``from_samples``, turned into columns
first), so the aggregation is defined once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from loadgen.records.columns import ServerColumns, read_server

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
    """Successful samples of ``server_metrics.jsonl`` in time order, as objects (error lines and a torn last line
    skipped). For inspection and tests: summaries read columns (:func:`loadgen.records.columns.read_server`)."""
    return to_samples(read_server(path, url=url))


def to_samples(cols: ServerColumns) -> list[Sample]:
    return [
        Sample(int(cols.t_ns[i]), int(cols.t_start_ns[i]), cols.url.value(i) or "", cols.dialect.value(i) or "",
               cols.values_of(i))
        for i in range(len(cols))
    ]  # fmt: skip


def as_server_columns(samples: Sequence[Sample] | ServerColumns) -> ServerColumns:
    """Columns as they are, or samples turned into columns."""
    return samples if isinstance(samples, ServerColumns) else ServerColumns.from_samples(samples)


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
    def from_samples(
        cls, samples: Sequence[Sample] | ServerColumns, name: str, agg: str = "sum"
    ) -> GaugeSeries:
        return cls.from_columns(as_server_columns(samples), name, agg)

    @classmethod
    def from_columns(cls, cols: ServerColumns, name: str, agg: str = "sum") -> GaugeSeries:
        """The gauge ``name`` at each sample that has any series of it, aggregated across them with ``agg``."""
        if agg not in AGGREGATIONS:
            raise ValueError(f"agg must be one of {AGGREGATIONS}")
        parts = cols.series_of(name)
        n = len(cols)
        if not parts or n == 0:
            return cls(np.empty(0, dtype=np.int64), np.empty(0), name)
        idx = np.concatenate([p[1] for p in parts])
        val = np.concatenate([p[2] for p in parts])
        order = np.argsort(idx, kind="stable")  # each sample's series in the order the file listed them
        idx, val = idx[order], val[order]
        cnt = np.bincount(idx, minlength=n)
        if agg == "max":
            out = np.full(n, -np.inf)
            np.maximum.at(out, idx, val)
        else:
            out = np.bincount(idx, weights=val, minlength=n)
            if agg == "mean":
                out = out / np.maximum(cnt, 1)
        have = cnt > 0
        return cls(cols.t_ns[have], out[have], name)

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
        cls, samples: Sequence[Sample] | ServerColumns, name: str = "kv_cache_usage", agg: str = "mean"
    ) -> KvCacheSeries:
        g = GaugeSeries.from_columns(as_server_columns(samples), name, agg)
        return cls(g.times_ns, g.values, name)

    @classmethod
    def from_columns(
        cls, cols: ServerColumns, name: str = "kv_cache_usage", agg: str = "mean"
    ) -> KvCacheSeries:
        g = GaugeSeries.from_columns(cols, name, agg)
        return cls(g.times_ns, g.values, name)


class CounterSeries:
    """A counter summed across its label sets after per-series reset correction."""

    def __init__(self, times_ns: np.ndarray, values: np.ndarray, name: str = "", resets: int = 0) -> None:
        self.name = name
        self.times_ns = np.asarray(times_ns, dtype=np.int64)
        self.values = np.asarray(values, dtype=np.float64)  # reset-corrected cumulative total
        self.resets = resets

    @classmethod
    def from_samples(cls, samples: Sequence[Sample] | ServerColumns, name: str) -> CounterSeries:
        return cls.from_columns(as_server_columns(samples), name)

    @classmethod
    def from_columns(cls, cols: ServerColumns, name: str) -> CounterSeries:
        """At each sample that carries ``name``: the sum over its series of their reset-corrected totals, each
        series holding its last value until its next sample (0 before it first appears)."""
        present = cols.present.get(name)
        if present is None or present.size == 0:
            return cls(np.empty(0, dtype=np.int64), np.empty(0), name, 0)
        total = np.zeros(present.size)
        resets = 0
        for _, idx, val in cols.series_of(name):
            inc = np.diff(val)
            dropped = inc < 0  # a decrease is a restart from zero: the increase is the new value itself
            resets += int(dropped.sum())
            inc = np.where(dropped, val[1:], inc)
            corrected = np.concatenate((val[:1], val[0] + np.cumsum(inc)))
            pos = np.searchsorted(idx, present, side="right") - 1
            total += np.where(pos >= 0, corrected[np.maximum(pos, 0)], 0.0)
        return cls(cols.t_ns[present], total, name, resets)

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
        self._snaps: list[HistogramDelta] | None = list(snaps) if snaps or not len(self.times_ns) else None
        self._le: list[float] = []
        self._cum = np.empty((0, 0))
        self._sum = np.empty(0)
        self._count = np.empty(0)
        self.skipped_series = skipped
        self.resets = resets

    @classmethod
    def from_samples(cls, samples: Sequence[Sample] | ServerColumns, name: str) -> HistogramSeries:
        return cls.from_columns(as_server_columns(samples), name)

    @classmethod
    def from_columns(cls, cols: ServerColumns, name: str) -> HistogramSeries:
        """At each sample with a series of ``name``: the sum over its series (those whose bucket bounds are the
        first seen) of their reset-corrected snapshots, each held until its next sample."""
        series = cols.hist_series_of(name)
        if not series:
            return cls(np.empty(0, dtype=np.int64), [], name)
        # the reference layout: the first histogram of the name in time order
        le_ref = min(
            ((h.idx[0], h.le) for _, layouts in series for h in layouts if h.idx.size), default=(0, ())
        )[1]
        kept = []
        skipped = 0
        for _, layouts in series:
            skipped += any(h.le != le_ref for h in layouts)
            kept += [h for h in layouts if h.le == le_ref]
        if not kept:
            return cls(np.empty(0, dtype=np.int64), [], name, skipped)
        at = np.unique(np.concatenate([h.idx for h in kept]))  # samples where a kept series reported
        width = len(le_ref)
        cum = np.zeros((at.size, width))
        sums = np.zeros(at.size)
        counts = np.zeros(at.size)
        resets = 0
        for h in kept:
            dropped = np.diff(h.count) < 0  # the server restarted this series from zero
            resets += int(dropped.sum())
            # the offset after a restart is everything counted before it: a running sum of the values dropped
            carry = np.concatenate(([False], dropped))
            k_off = np.cumsum(np.where(carry, np.roll(h.count, 1), 0.0))
            s_off = np.cumsum(np.where(carry, np.roll(h.sum, 1), 0.0))
            c_off = np.cumsum(np.where(carry[:, None], np.roll(h.cum, 1, axis=0), 0.0), axis=0)
            pos = np.searchsorted(h.idx, at, side="right") - 1
            seen = pos >= 0
            p = np.maximum(pos, 0)
            counts += np.where(seen, h.count[p] + k_off[p], 0.0)
            sums += np.where(seen, h.sum[p] + s_off[p], 0.0)
            cum += np.where(seen[:, None], h.cum[p] + c_off[p], 0.0)
        out = cls(cols.t_ns[at], [], name, skipped, resets)
        out._le, out._cum, out._sum, out._count = list(le_ref), cum, sums, counts
        return out

    @property
    def snaps(self) -> list[HistogramDelta]:
        """Reset-corrected cumulative snapshots, one per sample."""
        if self._snaps is None:
            self._snaps = [
                HistogramDelta(self._le, self._cum[i].tolist(), float(self._sum[i]), float(self._count[i]))
                for i in range(len(self.times_ns))
            ]
        return self._snaps

    def _snap(self, i: int) -> HistogramDelta:
        if self._snaps is not None:
            return self._snaps[i]
        return HistogramDelta(self._le, self._cum[i].tolist(), float(self._sum[i]), float(self._count[i]))

    def __len__(self) -> int:
        return len(self.times_ns)

    def delta(self, start_ns: int, end_ns: int) -> HistogramDelta | None:
        """Observations between the samples that bound the window."""
        if len(self) < 2:
            return None
        i0, i1 = _window_indices(self.times_ns, start_ns, end_ns)
        if i1 <= i0:
            return None
        a, b = self._snap(i0), self._snap(i1)
        return HistogramDelta(
            list(a.le), [y - x for x, y in zip(a.cum, b.cum, strict=True)], b.sum - a.sum, b.count - a.count
        )
