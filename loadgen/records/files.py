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

from pathlib import Path
from typing import Any

import orjson

from loadgen.errors import ConfigError

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
    "get",
    "read_summary",
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


def read_summary(folder: Path | str, what: str = "not a finished loadgen run") -> dict[str, Any]:
    """A run folder's summary.json: the one reader of it. A folder without one (or with a broken one) is a user
    mistake: one line, ``what`` saying why it was expected."""
    path = Path(folder) / SUMMARY
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{folder}: no {SUMMARY} ({what})") from None
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None


def get(d: Any, *path: str) -> Any:
    """``d[path[0]][path[1]]...``, or None where a key is missing or a level is not a mapping (an older file)."""
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d
