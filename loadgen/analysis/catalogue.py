"""The catalogue of what loadgen reports, beyond one request's latencies (``metrics.INTERVALS``): the metrics of
a run as compare, sweep and the report show them (label, unit, direction, table), and the labels of error kinds.

Each label and unit is written here once; the console, the HTML pages, the compare view, the sweep and the figures
take theirs from here (and the latencies' from ``metrics.INTERVALS``).
"""

from __future__ import annotations

from dataclasses import dataclass

from loadgen.analysis.metrics import INTERVAL
from loadgen.errors import ErrorKind

__all__ = [
    "ERROR_LABELS",
    "GROUP_LATENCIES",
    "METRICS",
    "METRIC_BY_KEY",
    "REQUEST_LATENCIES",
    "REQUEST_METRICS",
    "Metric",
    "error_label",
    "latency_column",
    "metric_label",
]


@dataclass(frozen=True)
class Metric:
    """One metric of a run as compared and shown: its key in a run's numbers, label, unit, how it is compared
    (over requests or over runs), which way is better, and the table it belongs to."""

    key: str
    label: str
    unit: str
    level: str  # "request" (hierarchical bootstrap) | "run" (bootstrap over runs)
    better: str  # "lower" | "higher" | "" (no direction)
    group: str  # table the metric is shown in


# request-level latencies compared: (latency key of loadgen.analysis.metrics.INTERVALS, percentile)
REQUEST_LATENCIES = ("ttft", "ttfvt", "tpot", "e2e")
REQUEST_METRICS = {  # key -> (latency, percentile)
    f"{lat}_{p}": (lat, q) for lat in REQUEST_LATENCIES for p, q in (("p50", 50.0), ("p99", 99.0))
}

METRICS: tuple[Metric, ...] = (
    *(
        Metric(
            k,
            f"{INTERVAL[lat].name} {k.rsplit('_', 1)[1]}",
            INTERVAL[lat].unit,
            "request",
            "lower",
            "latency",
        )
        for k, (lat, _) in REQUEST_METRICS.items()
    ),
    Metric("throughput_rps", "throughput", "req/s", "run", "higher", "throughput"),
    Metric("output_tok_s", "output tokens", "tok/s", "run", "higher", "throughput"),
    Metric("goodput_rps", "goodput", "req/s", "run", "higher", "throughput"),
    Metric("error_share", "errors", "share", "run", "lower", "throughput"),
    Metric("straggler_share", "stragglers", "share", "run", "lower", "throughput"),
    Metric("accuracy", "accuracy", "share", "run", "higher", "throughput"),
    # share of runs whose client self-check passed: below 1, latencies may include the client's own queueing
    Metric("client_trustworthy", "client check ok", "share", "run", "higher", "throughput"),
    Metric("kv_usage_mean", "KV usage mean", "share", "run", "", "server"),
    Metric("kv_usage_max", "KV usage max", "share", "run", "", "server"),
    Metric("kv_capacity_tokens", "KV capacity", "tokens", "run", "higher", "server"),
    Metric("preemptions", "preemptions", "count", "run", "lower", "server"),
    Metric("prefix_hit_rate", "prefix-cache hits", "share", "run", "higher", "server"),
    Metric("spec_acceptance", "spec. acceptance", "share", "run", "higher", "server"),
    Metric("spec_accepted_length", "spec. accepted length", "tokens", "run", "higher", "server"),
)
METRIC_BY_KEY = {m.key: m for m in METRICS}


# the latencies of a group of requests (by dataset, by token budget), in the console's and the HTML's tables
GROUP_LATENCIES: tuple[tuple[str, str], ...] = tuple(
    (lat, q) for lat in ("ttft", "ttfvt", "e2e") for q in ("p50", "p99")
)


def latency_column(lat: str, q: str) -> str:
    """A latency percentile as a table's column names it: ("ttft", "p99") -> "TTFT p99"."""
    return f"{INTERVAL[lat].name} {q}"


# the closed set of error kinds as a person names them (``ErrorKind.label``)
ERROR_LABELS: dict[str, str] = {k.value: k.label for k in ErrorKind}


def error_label(kind: str) -> str:
    """An error kind as a person names it; an unknown kind (an older file) as its key, spaced."""
    return ERROR_LABELS.get(kind, kind.replace("_", " "))


def metric_label(key: str, *, unit: bool = False) -> str:
    """A run metric's label (``goodput_rps`` -> "goodput"), with its unit where asked ("goodput (req/s)")."""
    m = METRIC_BY_KEY[key]
    return f"{m.label} ({m.unit})" if unit and m.unit not in ("share", "count") else m.label
