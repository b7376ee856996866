"""The summary of a huge run in bounded memory: a synthetic ``requests.jsonl`` of ``--requests`` (default
1,000,000) requests, summarised the way a finished run is (``loadgen.results.summary.read_run``: one pass for
the columns, the engine-timings cross-check and, with ``--report``, the report's token bins; then
``loadgen.analysis.metrics.summarize``), in a fresh process whose time and peak RSS are printed. The target is a peak
below 1 GB whatever the file's size: records are read as columns, their chunk arrays a bounded block at a time.

The file is written first (``loadgen.report.synthetic_run.generate_records``: lognormal output lengths of
``--mean-tokens``, one token per chunk, arrivals over ``--hours``) to ``/dev/shm`` when there is one, and removed.

    python benchmarks/summary_bounded.py [--requests 1000000] [--mean-tokens 200] [--keep DIR] [--report]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PY, ROOT, scratch_dir, write_result  # noqa: E402

CHILD = """
import json, resource, sys, time
from pathlib import Path
t = time.perf_counter()
from loadgen.analysis.metrics import summarize
from loadgen.results.summary import read_run
reducers = ()
if sys.argv[2:] == ["report"]:
    from loadgen.report.run_data import TokenBins
    reducers = (TokenBins(),)
cols = read_run(Path(sys.argv[1]), reducers=reducers).cols
read_s = time.perf_counter() - t
m = summarize(cols, straggler_k=3.0, slo_ms={"ttft": 100.0, "itl": 50.0})
print(json.dumps({"read_s": read_s, "total_s": time.perf_counter() - t, "rows": len(cols),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "itl_per_token": m["latency_ms"]["itl_per_token"], "ttft": m["latency_ms"]["ttft"],
                  "requests": m["requests"], "stragglers": m["stragglers"]["count"]}))
"""


def write_file(out: Path, n: int, hours: float, mean_tokens: int) -> float:
    from loadgen.report.synthetic_run import generate_records

    t = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "requests.jsonl", "wb", buffering=1 << 20) as fh:
        for r in generate_records(n, hours * 3600, seed=0, mean_tokens=mean_tokens):
            fh.write(r.to_json() + b"\n")
    return time.perf_counter() - t


def main() -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=1_000_000)
    p.add_argument("--mean-tokens", type=int, default=200, help="mean output tokens (one chunk each)")
    p.add_argument("--hours", type=float, default=24.0)
    p.add_argument("--keep", type=Path, help="write (or reuse) the file in this folder and keep it")
    p.add_argument("--name", default="summary_bounded", help="results/NAME.json")
    p.add_argument(
        "--report",
        action="store_true",
        help="with the report's reducer in the pass, as a run that writes one",
    )
    args = p.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with scratch_dir("summary1m-") as td:
        d = args.keep or Path(td) / "run"
        gen_s = None
        if not (d / "requests.jsonl").is_file():
            print(f"writing {args.requests:,} synthetic requests to {d} ...", flush=True)
            gen_s = write_file(d, args.requests, args.hours, args.mean_tokens)
        size_mb = (d / "requests.jsonl").stat().st_size / 1e6
        print(
            f"requests.jsonl: {size_mb:,.0f} MB" + (f" (written in {gen_s:.0f} s)" if gen_s else ""),
            flush=True,
        )
        child = [PY, "-c", CHILD, str(d), *(["report"] if args.report else [])]
        out = subprocess.run(child, cwd=ROOT, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr[-3000:], file=sys.stderr)
            return 1
        r = json.loads(out.stdout.strip().splitlines()[-1])
        if args.keep is None:
            shutil.rmtree(d, ignore_errors=True)
    r.update(
        requests_jsonl_mb=round(size_mb, 1), mean_tokens=args.mean_tokens, write_s=gen_s, report=args.report
    )
    print(
        f"summary of {r['rows']:,} requests ({size_mb:,.0f} MB): {r['total_s']:.1f} s (reading {r['read_s']:.1f} s), "
        f"peak RSS {r['peak_rss_mb']:.0f} MB (target < 1,024 MB); ITL per token from "
        f"{'a histogram' if r['itl_per_token'].get('binned') else 'exact values'} "
        f"({r['itl_per_token']['count']:,} gaps, p99 {r['itl_per_token']['p99']:.3f} ms)"
    )
    print(write_result(args.name, r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
