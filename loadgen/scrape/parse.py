"""Parse one /metrics text into vocabulary values, cheaply.

``prometheus_client``'s text parser costs tens of milliseconds on a real vLLM text (~100 KB, most of it histogram
buckets of families loadgen never reads). So the text is first cut down to the lines of the dialect's known
families with one C-level ``str.startswith(tuple)`` per line, and only that remainder is parsed. The result is
plain data, ready for one JSON line:

    {vocabulary name: {label string: value}}                      gauges and counters
    {vocabulary name: {label string: {"le": [...], "cum": [...], "sum": s, "count": n}}}   histograms

``le`` holds the finite upper bounds in ascending order and ``cum`` their cumulative counts; the ``+Inf`` bucket
is ``count``. A label string is the series' labels (without ``le``/``quantile``) as ``k="v"`` pairs sorted by key,
so series stay apart per engine / model and aggregation across them is an explicit later step.
"""

from __future__ import annotations

import math
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from loadgen.scrape.dialects import Dialect

Values = dict[str, dict[str, Any]]


_PREFIXES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}


def _prefixes(dialect: Dialect) -> tuple[tuple[str, ...], tuple[str, ...]]:
    cached = _PREFIXES.get(dialect.name)
    if cached is None:
        keep: list[str] = []
        drop: list[str] = []
        for src in dialect.table.values():
            for n in src.names:
                keep.append(f"# TYPE {n}")
                drop += [f"{n}_created", f"# TYPE {n}_created"]
                if src.read in ("histogram_sum", "histogram_count"):
                    keep += [f"{n}_sum", f"{n}_count"]  # skip the buckets nobody reads
                else:
                    keep.append(n)
        cached = _PREFIXES[dialect.name] = (tuple(dict.fromkeys(keep)), tuple(dict.fromkeys(drop)))
    return cached


def filter_text(text: str, dialect: Dialect) -> str:
    """Only the sample and ``# TYPE`` lines of the dialect's families (``_created`` and ``# HELP`` dropped)."""
    keep, drop = _prefixes(dialect)
    return "\n".join(
        line for line in text.splitlines() if line.startswith(keep) and not line.startswith(drop)
    )


def label_key(labels: dict[str, str]) -> str:
    """Canonical series key: ``k="v"`` pairs sorted by key, without the bucket/quantile label."""
    parts = []
    for k in sorted(labels):
        if k in ("le", "quantile"):
            continue
        v = labels[k].replace("\\", "\\\\").replace('"', '\\"')
        parts.append(f'{k}="{v}"')
    return ",".join(parts)


def parse_text(text: str, dialect: Dialect, *, prefiltered: bool = False) -> Values:
    """Vocabulary values of one scrape; names the server does not expose are simply absent.

    Raises ``ValueError`` when the text is not valid Prometheus exposition format.
    """
    body = text if prefiltered else filter_text(text, dialect)
    families = {fam.name: fam for fam in text_string_to_metric_families(body + "\n")}
    out: Values = {}
    for vocab, src in dialect.table.items():
        fam = None
        for name in src.names:
            fam = families.get(name) or families.get(f"{name}_total")
            if fam is not None:
                break
        if fam is None:
            continue
        if src.read == "histogram":
            series = _histograms(fam.samples, src.scale)
        elif src.read in ("histogram_sum", "histogram_count"):
            suffix = "_sum" if src.read == "histogram_sum" else "_count"
            series = {
                label_key(s.labels): s.value * src.scale
                for s in fam.samples
                if s.name.endswith(suffix) and math.isfinite(s.value)
            }
        else:
            series = {
                label_key(s.labels): s.value * src.scale
                for s in fam.samples
                if not s.name.endswith("_created") and math.isfinite(s.value)
            }
        if series:
            out[vocab] = series
    return out


def _histograms(samples: list[Any], scale: float) -> dict[str, dict[str, Any]]:
    acc: dict[str, dict[str, Any]] = {}
    for s in samples:
        key = label_key(s.labels)
        h = acc.setdefault(key, {"b": [], "sum": 0.0, "count": None})
        if s.name.endswith("_bucket"):
            le = float(s.labels["le"])
            if math.isinf(le):
                h["inf"] = s.value
            else:
                h["b"].append((le * scale, s.value))
        elif s.name.endswith("_sum"):
            h["sum"] = s.value * scale
        elif s.name.endswith("_count"):
            h["count"] = s.value
    out: dict[str, dict[str, Any]] = {}
    for key, h in acc.items():
        buckets = sorted(h["b"])
        count = h["count"] if h["count"] is not None else h.get("inf", buckets[-1][1] if buckets else 0.0)
        out[key] = {
            "le": [b[0] for b in buckets],
            "cum": [b[1] for b in buckets],
            "sum": h["sum"],
            "count": count,
        }
    return out
