"""The HTML reports: one self-contained, offline file per run (``report.html``), per comparison and per sweep.

Each page has its module: :mod:`~loadgen.report.run_page`, :mod:`~loadgen.report.compare_page`,
:mod:`~loadgen.report.sweep_page`, on the skeleton of :mod:`~loadgen.report.page`; this module is their entry point.

``python -m loadgen report RESULT_DIR [--open]`` (re)writes a run's report and prints its path.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from loadgen.errors import ConfigError
from loadgen.records.files import REQUESTS, STAGING_DIR, SUMMARY, SWEEP_JSON
from loadgen.report.compare_page import write_compare_report
from loadgen.report.run_page import write_run_report
from loadgen.report.sweep_page import write_sweep_report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m loadgen report RESULT_DIR [--open]``: (re)write report.html and print its path."""
    p = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="python -m loadgen report",
        description="Write a results folder's report.html",
    )
    p.add_argument(
        "result_dir", type=Path, help="a loadgen results folder (with summary.json) or a sweep folder"
    )
    p.add_argument("--open", action="store_true", help="open the report in the default web browser")
    ns = p.parse_args(list(argv) if argv is not None else None)
    d: Path = ns.result_dir
    if (d / SWEEP_JSON).is_file() and not (d / SUMMARY).is_file():
        path = write_sweep_report(d)
    elif not (d / SUMMARY).is_file() and ((d / REQUESTS).is_file() or (d / STAGING_DIR).is_dir()):
        # a run killed before its summary (kill -9, OOM): rebuild it from what it left, and say what is missing
        from loadgen.report.run_data import TokenBins
        from loadgen.results.rebuild import write_rebuilt_summary

        rebuilt_summary, columns = write_rebuilt_summary(
            d, reducers=(TokenBins(),)
        )  # the one read of the records
        rebuilt = rebuilt_summary["rebuilt"]
        print(
            f"loadgen: {d}: no summary.json (the run did not finish): rebuilt it from "
            f"{', '.join(rebuilt['from'])}",
            file=sys.stderr,
        )
        for m in rebuilt["missing"]:
            print(f"loadgen:   missing: {m}", file=sys.stderr)
        path = write_run_report(d, columns)
    elif not (d / SUMMARY).is_file():
        raise ConfigError(f"{d}: no summary.json here: give a loadgen results folder")
    else:
        path = write_run_report(d)
    print(path)
    if ns.open:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())
    return 0


__all__ = ["main", "write_compare_report", "write_run_report", "write_sweep_report"]
