"""A big run's report stays small and quick: size/time budgets on a synthetic results folder.

By default 20,000 requests over 4 h of scrapes (a few seconds to generate); LOADGEN_REPORT_BENCH=1 runs the full
benchmark: 100,000 requests and 24 h of scrapes at 0.5 s (~30 s to generate, ~900 MB of input), which must report
in < 5 s into < 10 MB.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from loadgen.report import figures as F
from loadgen.report.html import write_run_report
from loadgen.report.synthetic_run import write_folder

FULL = bool(os.environ.get("LOADGEN_REPORT_BENCH"))
N, HOURS, INTERVAL = (100_000, 24.0, 0.5) if FULL else (20_000, 4.0, 1.0)


def test_large_run_report_is_small_and_quick(tmp_path: Path) -> None:
    run = write_folder(tmp_path / "big", N, hours=HOURS, interval_s=INTERVAL, seed=1)
    t = time.perf_counter()
    path = write_run_report(run)
    elapsed = time.perf_counter() - t
    size = path.stat().st_size
    figs = sum(p.stat().st_size for p in (run / "figures").glob("*.svg"))
    print(
        f"\n{N:,} requests, {HOURS:g} h of scrapes: report in {elapsed:.2f} s, {size / 1e6:.2f} MB (+ {figs / 1e6:.2f} MB figures)"
    )
    assert size < 10_000_000
    assert elapsed < (5.0 if FULL else 5.0 * N / 100_000 + 2.0)
    html = path.read_text()
    # the page says what it reduced
    assert f"{F.TIMELINE_MAX:,} of {N:,} requests are drawn" in html
    assert "min–max band" in html and "quantiles" in html
    assert html.count('class="req') == F.TIMELINE_MAX
    # the time series were bucketed: no more points than pixel columns per line
    for d in re.findall(r'class="series" d="([^"]+)"', html):
        assert d.count("L") + d.count("H") <= 2 * F.TIME_BUCKETS + 600
