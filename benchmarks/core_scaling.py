"""How the machine's own per-core speed holds up as more cores get busy: the control for a scaling curve.

Runs K copies of ``event_micro.py`` (loadgen's per-event Python work, in process: no I/O, no sockets) at once,
copy i pinned to the i-th core of ``--cores``, and reports each copy's us per token event. On a machine whose cores
slow down when their neighbours work (turbo budget shared by the package, virtual CPUs that are two hyperthreads of
one physical core, a shared L3), K senders cannot reach K x one sender's throughput however independent they
are; this says by how much.

    python benchmarks/core_scaling.py [--ks 1,2,4,8] [--cores 0-11]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import PY, pinned, write_result  # noqa: E402


def _cores(spec: str) -> list[str]:
    out: list[str] = []
    for part in spec.split(","):
        a, _, b = part.partition("-")
        out += [str(c) for c in range(int(a), int(b or a) + 1)]
    return out


def main() -> None:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__)
    p.add_argument("--ks", default="1,2,4,8", help="how many copies at once")
    p.add_argument("--cores", default="0-7", help="cores to pin the copies to, in order")
    p.add_argument("--repeats", type=int, default=5, help="event_micro.py --repeats")
    p.add_argument("--name", default="core_scaling")
    args = p.parse_args()
    cores = _cores(args.cores)
    rows = []
    for k in [int(x) for x in args.ks.split(",")]:
        cmd = [PY, str(HERE / "event_micro.py"), "--repeats", str(args.repeats)]
        procs = [
            subprocess.Popen(pinned(cmd, cores[i % len(cores)]), stdout=subprocess.PIPE, text=True)
            for i in range(k)
        ]
        us = [json.loads(pr.communicate()[0].strip().splitlines()[-1])["total_us_per_event"] for pr in procs]
        rows.append(
            {"copies": k, "cores": cores[:k], "us_per_event_each": us, "median": statistics.median(us)}
        )
        print(f"{k} copies: us per event {us}", file=sys.stderr)
    one = rows[0]["median"]
    for r in rows:
        r["slowdown_vs_one"] = round(r["median"] / one, 3)
    out = {
        "benchmark": "core_scaling",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rows": rows,
    }
    write_result(args.name, out)
    print(json.dumps([{k: r[k] for k in ("copies", "median", "slowdown_vs_one")} for r in rows]))


if __name__ == "__main__":
    main()
