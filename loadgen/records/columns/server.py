"""``server_metrics.jsonl`` as columns: the successful scrapes in time order, and per series (vocabulary name,
label string) the sample indices and values; histograms as 2-D arrays of cumulative counts (see
:mod:`loadgen.records.columns`; the aggregation semantics live in :mod:`loadgen.scrape.series`)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from loadgen.records.columns.arrays import Categorical, Codes, Grow

__all__ = ["HistRows", "ServerColumns", "read_server"]


# --------------------------------------------------------------------------------------------- server_metrics.jsonl
@dataclass
class HistRows:
    """One histogram series (name, labels) with one bucket layout: a row per sample that reported it."""

    le: tuple[float, ...]
    idx: np.ndarray  # sample index
    cum: np.ndarray  # (rows, len(le)) cumulative counts
    sum: np.ndarray
    count: np.ndarray


@dataclass
class ServerColumns:
    """The successful scrapes of ``server_metrics.jsonl`` in time order, and their series as columns."""

    t_ns: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    t_start_ns: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    url: Categorical = field(default_factory=lambda: Categorical(np.empty(0, dtype=np.int32), []))
    dialect: Categorical = field(default_factory=lambda: Categorical(np.empty(0, dtype=np.int32), []))
    # (name, labels) -> (sample indices, values), indices increasing
    numbers: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    # (name, labels) -> one HistRows per bucket layout, in order of first appearance
    hists: dict[tuple[str, str], list[HistRows]] = field(default_factory=dict)
    # name -> indices of the samples that carried the name (even with no series under it)
    present: dict[str, np.ndarray] = field(default_factory=dict)
    first_url: str | None = None  # the url of the first successful line in file order
    skipped_lines: int = 0

    def __len__(self) -> int:
        return len(self.t_ns)

    @property
    def names(self) -> set[str]:
        return set(self.present)

    def series_of(self, name: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """(labels, sample indices, values) of every numeric series of ``name``."""
        return [(lab, i, v) for (nm, lab), (i, v) in self.numbers.items() if nm == name]

    def hist_series_of(self, name: str) -> list[tuple[str, list[HistRows]]]:
        return [(lab, rows) for (nm, lab), rows in self.hists.items() if nm == name]

    def for_url(self, url: str | None) -> ServerColumns:
        """Only the samples of one server (all of them when ``url`` is None or the only one)."""
        if url is None or self.url.values == [url]:
            return self
        keep = self.url.equals(url)
        pos = np.flatnonzero(keep)
        renum = np.full(len(self), -1, dtype=np.int64)
        renum[pos] = np.arange(pos.size)

        def sub(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            m = keep[idx]
            return m, renum[idx[m]]

        numbers = {}
        for key, (idx, v) in self.numbers.items():
            m, new = sub(idx)
            if new.size:
                numbers[key] = (new, v[m])
        hists: dict[tuple[str, str], list[HistRows]] = {}
        for key, layouts in self.hists.items():
            for h in layouts:
                m, new = sub(h.idx)
                if new.size:
                    hists.setdefault(key, []).append(HistRows(h.le, new, h.cum[m], h.sum[m], h.count[m]))
        present = {}
        for name, idx in self.present.items():
            _, new = sub(idx)
            if new.size:
                present[name] = new
        return ServerColumns(
            self.t_ns[keep], self.t_start_ns[keep], self.url.take(pos), self.dialect.take(pos), numbers, hists,
            present, url, self.skipped_lines,
        )  # fmt: skip

    @classmethod
    def from_samples(cls, samples: Iterable[Any]) -> ServerColumns:
        """Columns of ``loadgen.scrape.series.Sample`` objects (taken in their given order)."""
        b = _ServerBuilder()
        for s in samples:
            b.add(s.t_ns, s.t_start_ns, s.url, s.dialect, s.values)
        return b.finish(sort=False)

    def values_of(self, i: int) -> dict[str, dict[str, Any]]:
        """Sample ``i``'s values as in the file: {name: {labels: number or histogram dict}} (slow: one sample)."""
        out: dict[str, dict[str, Any]] = {}
        for name, idx in self.present.items():
            j = np.searchsorted(idx, i)
            if j < idx.size and idx[j] == i:
                out[name] = {}
        for (name, lab), (idx, v) in self.numbers.items():
            j = np.searchsorted(idx, i)
            if j < idx.size and idx[j] == i:
                out.setdefault(name, {})[lab] = float(v[j])
        for (name, lab), layouts in self.hists.items():
            for h in layouts:
                j = np.searchsorted(h.idx, i)
                if j < h.idx.size and h.idx[j] == i:
                    out.setdefault(name, {})[lab] = {
                        "le": list(h.le),
                        "cum": h.cum[j].tolist(),
                        "sum": float(h.sum[j]),
                        "count": float(h.count[j]),
                    }
        return out


class _HistGrow:
    __slots__ = ("count", "cum", "idx", "sum")

    def __init__(self) -> None:
        self.idx = Grow(np.int64)
        self.cum = Grow(np.float64)
        self.sum = Grow(np.float64)
        self.count = Grow(np.float64)


class _ServerBuilder:
    def __init__(self) -> None:
        self.t = Grow(np.int64)
        self.t_start = Grow(np.int64)
        self.urls = Codes()
        self.dialects = Codes()
        self.numbers: dict[tuple[str, str], tuple[Grow, Grow]] = {}
        self.hists: dict[tuple[str, str], dict[tuple[float, ...], _HistGrow]] = {}
        self.present: dict[str, Grow] = {}
        self.first_url: str | None = None
        self.n = 0

    def add(self, t: int, t_start: int, url: str, dialect: str, values: dict[str, Any]) -> None:
        i = self.n
        self.n += 1
        if self.first_url is None:
            self.first_url = url
        self.t.append(t)
        self.t_start.append(t_start)
        self.urls.codes.append(self.urls.code(url))
        self.dialects.codes.append(self.dialects.code(dialect))
        for name, series in values.items():
            p = self.present.get(name)
            if p is None:
                p = self.present[name] = Grow(np.int64)
            p.append(i)
            if not series:
                continue
            for lab, v in series.items():
                if isinstance(v, dict):
                    le = tuple(v.get("le") or ())
                    layouts = self.hists.get((name, lab))
                    if layouts is None:
                        layouts = self.hists[(name, lab)] = {}
                    cum = v.get("cum") or []
                    if len(cum) != len(le):
                        continue  # a malformed histogram: its buckets do not match its bounds
                    h = layouts.get(le)
                    if h is None:
                        h = layouts[le] = _HistGrow()
                    h.idx.append(i)
                    h.cum.append(cum)
                    h.sum.append(v.get("sum") or 0.0)
                    h.count.append(v.get("count") or 0.0)
                else:
                    col = self.numbers.get((name, lab))
                    if col is None:
                        col = self.numbers[(name, lab)] = (Grow(np.int64), Grow(np.float64))
                    col[0].append(i)
                    col[1].append(v)

    def finish(self, sort: bool = True, skipped: int = 0) -> ServerColumns:
        t = self.t.array()
        order = np.argsort(t, kind="stable") if sort else np.arange(t.size)
        rank = np.empty(t.size, dtype=np.int64)
        rank[order] = np.arange(t.size)
        url_codes = np.asarray(self.urls.codes, dtype=np.int32)
        dia_codes = np.asarray(self.dialects.codes, dtype=np.int32)

        def renumber(idx: np.ndarray, *cols: np.ndarray) -> tuple[np.ndarray, ...]:
            new = rank[idx]
            o = np.argsort(new, kind="stable")
            return (new[o], *(c[o] for c in cols))

        numbers = {}
        for key, (gi, gv) in self.numbers.items():
            idx, v = renumber(gi.array(), gv.array())
            numbers[key] = (idx, v)
        hists: dict[tuple[str, str], list[HistRows]] = {}
        for key, layouts in self.hists.items():
            for le, h in layouts.items():
                cum = h.cum.array().reshape(-1, len(le)) if le else np.empty((0, 0))
                idx, cum, s, c = renumber(h.idx.array(), cum, h.sum.array(), h.count.array())
                hists.setdefault(key, []).append(HistRows(le, idx, cum, s, c))
        present = {name: np.sort(rank[g.array()]) for name, g in self.present.items()}
        return ServerColumns(
            t_ns=t[order],
            t_start_ns=self.t_start.array()[order],
            url=Categorical(url_codes[order], self.urls.values),
            dialect=Categorical(dia_codes[order], self.dialects.values),
            numbers=numbers,
            hists=hists,
            present=present,
            first_url=self.first_url,
            skipped_lines=skipped,
        )


_VALUES = b',"values":{'


def _scan_scrape_line(line: bytes, keys: tuple[tuple[str, bytes], ...]) -> dict[str, Any] | None:
    """The line with only the wanted names' values parsed (histograms are most of a line's bytes); None for an
    error line or a torn one. Any unusual shape (a '}' inside a label, a histogram among the names) falls back to
    parsing the whole line."""
    v = line.find(_VALUES)
    if v < 0:
        return None  # an error line (or a torn one)
    pieces = [line[:v], b',"values":{']
    first = True
    for name, key in keys:
        p = line.find(key, v)
        if p >= 0:
            pieces.append(
                (b"" if first else b",")
                + b'"'
                + name.encode()
                + b'":'
                + line[p + len(key) - 1 : line.find(b"}", p) + 1]
            )
            first = False
    pieces.append(b"}}")
    try:
        d = orjson.loads(b"".join(pieces))
        if all(isinstance(x, (int, float)) for s in d["values"].values() for x in s.values()):
            return d
    except (orjson.JSONDecodeError, AttributeError):
        pass
    try:
        full = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if "values" not in full:
        return None
    full["values"] = {n: full["values"][n] for n, _ in keys if n in full["values"]}
    return full


def read_server(
    path: str | os.PathLike[str], *, names: Iterable[str] | None = None, url: str | None = None
) -> ServerColumns:
    """``server_metrics.jsonl`` as :class:`ServerColumns`: successful scrapes only, sorted by time.

    ``names``: only these vocabulary names (parsed out of each line without decoding the rest: a day of
    scrapes reads in about a second). ``url``: only that server's lines."""
    b = _ServerBuilder()
    skipped = 0
    keys = tuple((n, b'"' + n.encode() + b'":{') for n in names) if names is not None else None
    loads = orjson.loads
    with open(path, "rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            if keys is not None:
                d = _scan_scrape_line(line, keys)
                if d is None:
                    skipped += 1
                    continue
            else:
                try:
                    d = loads(line)
                except orjson.JSONDecodeError:
                    skipped += 1
                    continue
                if "error" in d or "values" not in d:
                    skipped += 1
                    continue
            if "error" in d:
                skipped += 1
                continue
            if url is not None and d.get("url") != url:
                continue
            b.add(
                d["t_ns"], d.get("t_start_ns", d["t_ns"]), d.get("url", ""), d.get("dialect", ""), d["values"]
            )
    return b.finish(skipped=skipped)
