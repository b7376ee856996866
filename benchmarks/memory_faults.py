"""Does a failed request cost memory that stays? RSS of the client with and without server faults, in one run.

Several cases run side by side for ``--minutes`` (default 15), each a ``python -m loadgen`` process against its own
built-in simulator (no ``--base-url``): an open loop at ``--rate`` req/s (Poisson) with ``--max-tokens``-token
answers and ``--timeout`` seconds per request. The cases differ only in the simulator's faults (``--sim-arg``):

- ``none``: no faults (the baseline),
- ``stall30``: 30 % of streams stall for 3 s, longer than ``--timeout``: each is aborted by the client (timeout),
- ``mixed5``: 5 % mixed faults, 1 % each of HTTP 429, HTTP 500, a stream cut half-way (the connection aborted),
  a stall past ``--timeout``, and a malformed chunk.

``--before DIR`` adds the stall case run by another checkout's loadgen (``git archive REV | tar -x -C DIR``), so a
fix and what it fixes are measured side by side, under the same load. Side by side, not one after the other: the
machine's load changes over a quarter of an hour, and every case sees the same.

Every ``--every-s`` seconds a thread inside each client process (``memory_flat.RUNNER``) samples its RSS and its
live Python blocks (``sys.getallocatedblocks()``). Reported per case: the least-squares slope after ``--warmup-s``
of each, in MB/min and blocks/min, the requests and how many failed, and the kept memory per failed request the
slope implies (slope / failed requests per minute). The dispatcher freezes what survives every 1,000 requests
(``gc.freeze()``), so anything a failed request leaves in a reference cycle is kept for the rest of the run: a
leak shows as a straight line here, whatever the collector does.

    nice python benchmarks/memory_faults.py --minutes 15 --before /tmp/main
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PY, ROOT, CpuWindow, machine_load, scratch_dir, write_result  # noqa: E402
from memory_flat import RUNNER  # noqa: E402

CASES = {
    "none": "",
    "stall30": "--fault-stall 0.3 --stall-ms 3000",
    "mixed5": "--fault-429 0.01 --fault-500 0.01 --fault-cut 0.01 --fault-stall 0.01 --stall-ms 3000 "
    "--fault-malformed 0.01",
}


def slope_per_min(t_s: np.ndarray, y: np.ndarray) -> float | None:
    if t_s.size < 3 or t_s[-1] <= t_s[0]:
        return None
    return float(np.polyfit(t_s, y, 1)[0] * 60)


def _start(name: str, sim_args: str, root: Path, td: Path, args: argparse.Namespace) -> dict[str, Any]:
    out = td / name
    inside = td / f"{name}.inside.jsonl"
    cmd = [PY, "-c", RUNNER, str(inside), str(args.every_s)]
    cmd += ["--rate", str(args.rate), "--cv", "1", "--duration", str(args.minutes * 60), "--warmup", "0"]
    cmd += ["--input-len", "32", "--max-tokens", str(args.max_tokens), "--timeout", str(args.timeout)]
    cmd += ["--no-scrape", "--no-report", "--quiet", "--no-live", "--seed", "1", "--output-dir", str(out)]
    if sim_args:
        cmd += ["--sim-arg", sim_args]
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return {"name": name, "sim_args": sim_args, "root": root, "proc": proc, "out": out, "inside": inside}


def _result(case: dict[str, Any], args: argparse.Namespace, status: int, ru: Any) -> dict[str, Any]:
    duration_s = args.minutes * 60
    rows = (
        [json.loads(line) for line in case["inside"].read_text().splitlines()]
        if case["inside"].exists()
        else []
    )
    t = np.array([r[0] for r in rows])
    mb = np.array([r[1] for r in rows])
    blocks = np.array([r[2] for r in rows], dtype=np.float64)
    during = (t >= args.warmup_s) & (t <= duration_s)
    records = case["out"] / "requests.jsonl"
    n = failed = 0
    kinds: dict[str, int] = {}
    if records.exists():
        for line in records.read_bytes().splitlines():
            rec = json.loads(line)
            n += 1
            if rec.get("status") != "ok":
                failed += 1
                kinds[rec.get("error_kind") or "?"] = kinds.get(rec.get("error_kind") or "?", 0) + 1
    slope = slope_per_min(t[during], mb[during])
    bslope = slope_per_min(t[during], blocks[during])
    failed_per_min = failed / args.minutes if args.minutes else 0
    err = case["proc"].stderr.read().decode(errors="replace") if case["proc"].stderr else ""
    return {
        "case": case["name"],
        "loadgen_path": "." if case["root"] == ROOT else case["root"].name,  # no path of this machine
        "sim_args": case["sim_args"],
        "exit_code": os.waitstatus_to_exitcode(status),
        "stderr_tail": err[-500:],
        "requests": n,
        "failed": failed,
        "error_kinds": kinds,
        "rss_after_warmup_mb": round(float(mb[during][0]), 1) if during.any() else None,
        "rss_at_end_of_sending_mb": round(float(mb[during][-1]), 1) if during.any() else None,
        "rss_slope_mb_per_min": None if slope is None else round(slope, 3),
        "live_blocks_slope_per_min": None if bslope is None else round(bslope),
        "kept_kb_per_failed_request": round(slope * 1024 / failed_per_min, 2)
        if slope is not None and failed_per_min
        else None,
        "max_rss_mb": round(ru.ru_maxrss / 1024, 1),
        "samples": [[round(a, 1), round(b, 1), c] for a, b, c in rows],
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    cases = [(name, CASES[name], ROOT) for name in args.cases.split(",")]
    if args.before:
        cases.append(("stall30_before", CASES["stall30"], Path(args.before).resolve()))
    load = CpuWindow()
    with scratch_dir("memfaults-") as td:
        running = [_start(name, sim, root, Path(td), args) for name, sim, root in cases]
        results = []
        t0 = time.monotonic()
        while running:
            for case in list(running):
                pid, status, ru = os.wait4(case["proc"].pid, os.WNOHANG)
                if pid:
                    running.remove(case)
                    results.append(_result(case, args, status, ru))
            time.sleep(2.0)
            if int(time.monotonic() - t0) % 60 < 2:
                print(f"  {time.monotonic() - t0:6.0f} s: {len(running)} cases running", flush=True)
    return {
        "minutes": args.minutes,
        "rate": args.rate,
        "max_tokens": args.max_tokens,
        "timeout_s": args.timeout,
        "warmup_s": args.warmup_s,
        "cases": sorted(results, key=lambda r: r["case"]),
        "load": load.report(),
        "machine": machine_load(),
    }


def main() -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    p.add_argument(
        "--minutes", type=float, default=15.0, help="how long each case sends (default %(default)s)"
    )
    p.add_argument("--rate", type=float, default=10.0, help="req/s per case (default %(default)s)")
    p.add_argument("--max-tokens", type=int, default=64, help="tokens per answer (default %(default)s)")
    p.add_argument("--timeout", type=float, default=1.5, help="loadgen --timeout, below the 3 s stall")
    p.add_argument("--cases", default=",".join(CASES), help="which of: " + ", ".join(CASES))
    p.add_argument("--before", help="also run the stall case with this checkout's loadgen")
    p.add_argument("--every-s", type=float, default=10.0, help="RSS sampling period")
    p.add_argument("--warmup-s", type=float, default=60.0, help="left out of the slope")
    p.add_argument("--name", default="memory_faults", help="results/NAME.json")
    args = p.parse_args()
    r = measure(args)
    for c in r["cases"]:
        print(
            f"{c['case']:>15} ({c['loadgen_path']}; sim {shlex.quote(c['sim_args']) or '-'}): exit {c['exit_code']}, "
            f"{c['requests']:,} requests, {c['failed']:,} failed {c['error_kinds']}; RSS {c['rss_after_warmup_mb']} "
            f"-> {c['rss_at_end_of_sending_mb']} MB, slope {c['rss_slope_mb_per_min']} MB/min, live blocks "
            f"{c['live_blocks_slope_per_min']}/min, {c['kept_kb_per_failed_request']} KB per failed request"
        )
    print(write_result(args.name, r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
