"""Server state beside every request: poll engines' /metrics, map them onto one vocabulary, summarise, explain.

Public API (everything else in this package is private to it)::

    MetricsPoller(urls, interval_s=0.5, *, sink_path, t0_ns, dialect=None, timeout_s=None); await poller.run(stop)
    default_metrics_url(base_url) -> str
    load_samples(path, url=None) -> list[Sample]
    server_summary(samples, window=(start_ns, end_ns), url=None) -> dict
    explain_requests(samples, [(index, start_ns, end_ns), ...]) -> list[dict]
    DIALECTS, VOCABULARY, detect_dialect(text), parse_text(text, dialect), mapping_report(dialect)
    GaugeSeries, KvCacheSeries, CounterSeries, HistogramSeries, HistogramDelta
"""

from loadgen.scrape.dialects import DIALECTS, VOCABULARY, Dialect, detect_dialect, mapping_report
from loadgen.scrape.explain import VERDICTS, explain_requests
from loadgen.scrape.parse import parse_text
from loadgen.scrape.poller import MetricsPoller, default_metrics_url
from loadgen.scrape.series import (
    CounterSeries,
    GaugeSeries,
    HistogramDelta,
    HistogramSeries,
    KvCacheSeries,
    Sample,
    load_samples,
)
from loadgen.scrape.summary import server_summary

__all__ = [
    "DIALECTS",
    "VERDICTS",
    "VOCABULARY",
    "CounterSeries",
    "Dialect",
    "GaugeSeries",
    "HistogramDelta",
    "HistogramSeries",
    "KvCacheSeries",
    "MetricsPoller",
    "Sample",
    "default_metrics_url",
    "detect_dialect",
    "explain_requests",
    "load_samples",
    "mapping_report",
    "parse_text",
    "server_summary",
]
