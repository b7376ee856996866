"""How long the report and the comparison take on big inputs (moved here from the tests: a busy 2-core CI machine
misses time limits, so time is a number printed with the machine's load, never a pass/fail).

    python benchmarks/report_and_compare.py            # 20k requests / 4 h of scrapes, and 100k / 24 h
    python benchmarks/report_and_compare.py --quick    # the 20k case only

Budgets it reports against (the README's): a 100,000-request run with 24 h of 0.5 s scrapes reports in < 5 s into
< 10 MB; a hierarchical bootstrap of p99 over 4 x 25,000 requests (2,000 resamples) takes < 1 s.

The end of a run (``end_of_run``): its summary and its report, with requests.jsonl read once for both (the run's
way: ``read_run`` with the report's ``TokenBins``, the columns handed to ``write_run_report``) and, on the same
folder in the same process, read twice (the summary's read, then the report's own: the way before the one reader).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from loadgen.analysis.metrics import summarize  # noqa: E402
from loadgen.commands.compare import hierarchical_percentile_boot  # noqa: E402
from loadgen.report.html import write_run_report  # noqa: E402
from loadgen.report.run_data import TokenBins  # noqa: E402
from loadgen.report.synthetic_run import write_folder  # noqa: E402
from loadgen.results.summary import read_run, read_run_columns  # noqa: E402


def report_case(n: int, hours: float, interval_s: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run = write_folder(Path(tmp) / "big", n, hours=hours, interval_s=interval_s, seed=1)
        t = time.perf_counter()
        path = write_run_report(run)
        seconds = time.perf_counter() - t
        figures = sum(p.stat().st_size for p in (run / "figures").glob("*.svg"))
        return {"requests": n, "scrape_hours": hours, "report_s": round(seconds, 2),
                "report_mb": round(path.stat().st_size / 1e6, 2), "figures_mb": round(figures / 1e6, 2)}  # fmt: skip


def end_of_run_case(n: int, hours: float, interval_s: float) -> dict:
    """Summary + report of one folder: requests.jsonl read twice (summary, then report) vs once (shared)."""
    with tempfile.TemporaryDirectory() as tmp:
        run = write_folder(Path(tmp) / "end", n, hours=hours, interval_s=interval_s, seed=2)
        out = {"requests": n, "requests_jsonl_mb": round((run / "requests.jsonl").stat().st_size / 1e6, 1)}
        for name in ("read_twice_s", "read_once_s", "read_twice_s", "read_once_s"):  # each twice, interleaved
            t = time.perf_counter()
            if name == "read_twice_s":
                summarize(read_run_columns(run), straggler_k=3.0)
                write_run_report(run)
            else:
                read = read_run(run, reducers=(TokenBins(),))
                summarize(read.cols, straggler_k=3.0)
                write_run_report(run, read.cols)
            out[name] = min(out.get(name, 1e9), round(time.perf_counter() - t, 2))
        out["once_over_twice"] = round(out["read_once_s"] / out["read_twice_s"], 3)
        return out


def bootstrap_case() -> dict:
    rng = np.random.default_rng(0)
    runs = [rng.lognormal(4, 1, 25_000) for _ in range(4)]
    t = time.perf_counter()
    hierarchical_percentile_boot(runs, 99.0, 2000, np.random.default_rng(0))
    return {"requests": 100_000, "resamples": 2000, "seconds": round(time.perf_counter() - t, 3)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    out = {
        "load_before": os.getloadavg(),
        "bootstrap": bootstrap_case(),
        "report": [report_case(20_000, 4.0, 1.0)],
        "end_of_run": [end_of_run_case(20_000, 4.0, 1.0)],
    }
    if not args.quick:
        out["report"].append(report_case(100_000, 24.0, 0.5))
        out["end_of_run"].append(end_of_run_case(100_000, 24.0, 0.5))
    out["load_after"] = os.getloadavg()
    for r in out["report"]:
        print(f"report: {r['requests']:,} requests, {r['scrape_hours']:g} h of scrapes -> {r['report_s']} s, "
              f"{r['report_mb']} MB (+ {r['figures_mb']} MB figures)")  # fmt: skip
    for r in out["end_of_run"]:
        print(f"end of a run: {r['requests']:,} requests ({r['requests_jsonl_mb']} MB), summary + report: requests.jsonl "
              f"read twice {r['read_twice_s']} s, once {r['read_once_s']} s (ratio {r['once_over_twice']})")  # fmt: skip
    b = out["bootstrap"]
    print(
        f"compare: hierarchical bootstrap of p99, {b['requests']:,} requests x {b['resamples']} -> {b['seconds']} s"
    )
    print(
        f"load average before {out['load_before'][0]:.2f}, after {out['load_after'][0]:.2f} (cores: {os.cpu_count()})"
    )
    return out


if __name__ == "__main__":
    main()
