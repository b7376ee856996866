"""A big run's report stays small: size budget and reductions on a synthetic results folder.

20,000 requests over 4 h of scrapes (a few seconds to generate). How long the report takes is a benchmark, not a
test (a busy 2-core CI machine misses time limits): ``python benchmarks/report_and_compare.py`` prints it for this
size and for 100,000 requests over 24 h of scrapes at 0.5 s.
"""

from __future__ import annotations

import re
from pathlib import Path

from loadgen.report import timeline as T
from loadgen.report.html import write_run_report
from loadgen.report.synthetic_run import write_folder

N, HOURS, INTERVAL = 20_000, 4.0, 1.0


def test_large_run_report_is_small(tmp_path: Path) -> None:
    run = write_folder(tmp_path / "big", N, hours=HOURS, interval_s=INTERVAL, seed=1)
    path = write_run_report(run)
    size = path.stat().st_size
    assert size < 10_000_000
    html = path.read_text()
    # the page says what it reduced
    assert f"{T.TIMELINE_MAX:,} of {N:,} requests are drawn" in html
    assert "min–max band" in html and "quantiles" in html
    assert html.count('class="req') == T.TIMELINE_MAX
    # the time series were bucketed: no more points than pixel columns per line
    for d in re.findall(r'class="series" d="([^"]+)"', html):
        assert d.count("L") + d.count("H") <= 2 * T.TIME_BUCKETS + 600
