"""The names of the files in a results folder, written once: every reader and writer takes them from here.

A run's folder::

    run.json               what the run is, written before its first request (a killed run is rebuilt from it)
    requests.jsonl         one line per finished request (``records.RequestRecord``), as each finishes
    server_metrics.jsonl   the scraped /metrics samples (``scrape``)
    summary.json           every number of the run, written at its end (``summary``)
    report.html            the report (``report``)
    .senders/              the senders' own files while several send (``fleet.merge``), merged and removed

A sweep's folder holds ``sweep.json`` and ``sweep.html`` beside a folder per cell; an experiment's ``compare.html``.
"""

from __future__ import annotations

__all__ = [
    "COMPARE_HTML",
    "REPORT_HTML",
    "REQUESTS",
    "RUN_JSON",
    "SERVER_METRICS",
    "STAGING_DIR",
    "SUMMARY",
    "SWEEP_HTML",
    "SWEEP_JSON",
]

RUN_JSON = "run.json"
REQUESTS = "requests.jsonl"
SERVER_METRICS = "server_metrics.jsonl"
SUMMARY = "summary.json"
REPORT_HTML = "report.html"
STAGING_DIR = ".senders"
SWEEP_JSON = "sweep.json"
SWEEP_HTML = "sweep.html"
COMPARE_HTML = "compare.html"
