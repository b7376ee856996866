"""The collector while thousands of streams open before any finishes: the dispatcher's policy before and now.

No network: ``--streams`` stand-ins for an open stream, each keeping ~100 tracked container objects alive (what a
request in flight holds: its task, coroutine frames, connection, record, lists, dicts) and making short-lived
garbage, are opened one after another, as a sender opens them during the first stream length, when nothing has
finished yet. Policies:

- ``before``: the collector's thresholds during sending were (10,000, 10, 10) and survivors were frozen only every
  1,000 *finished* requests, i.e. never here;
- ``now``: ``loadgen.run.dispatch.quiet_gc()`` (no full pass while sending) and a ``gc.freeze()`` every 1,000 *sent*
  requests, as the dispatcher does.

Reported per generation: the passes, the longest in wall and in this thread's CPU time. A pass holds the event
loop: every read waiting meanwhile is stamped late by as much.

    python benchmarks/gc_open_streams.py --streams 10000,20000
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class _Stream:
    __slots__ = ("lists", "meta", "own")

    def __init__(self) -> None:
        self.lists = [[i] for i in range(90)]
        self.meta = {"k": [1], "h": {"a": "b"}}
        self.own = [self]


def one(policy: str, streams: int) -> dict[str, object]:
    sys.path.insert(0, str(ROOT))
    from loadgen.run import dispatch

    passes: list[tuple[int, float, float]] = []
    start = [0.0, 0.0]

    def cb(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            start[0], start[1] = time.perf_counter(), time.thread_time()
        else:
            passes.append(
                (
                    info["generation"],
                    (time.perf_counter() - start[0]) * 1e3,
                    (time.thread_time() - start[1]) * 1e3,
                )
            )

    workload = [{"x": i} for i in range(200_000)]  # what exists before sending (frozen at its start)
    live: list[_Stream] = []
    if policy == "before":
        saved = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(10_000, 10, 10)
    ctx = dispatch.quiet_gc() if policy == "now" else None
    if ctx is not None:
        ctx.__enter__()
    gc.callbacks.append(cb)
    try:
        for i in range(streams):
            live.append(_Stream())
            for _ in range(20):
                [{}]  # noqa: B018 - short-lived garbage, as a request makes
            if policy == "now" and (i + 1) % dispatch._GC_FREEZE_EVERY == 0:
                gc.freeze()
    finally:
        gc.callbacks.remove(cb)
        if ctx is not None:
            ctx.__exit__(None, None, None)
        else:
            gc.set_threshold(*saved)
            gc.unfreeze()
    del workload
    out: dict[str, object] = {"policy": policy, "streams": streams}
    for g in range(3):
        p = [x for x in passes if x[0] == g]
        out[f"gen{g}"] = {
            "passes": len(p),
            "max_wall_ms": round(max((x[1] for x in p), default=0.0), 1),
            "max_cpu_ms": round(max((x[2] for x in p), default=0.0), 1),
        }
    return out


def main() -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    p.add_argument("--streams", default="10000,20000", help="open streams per case, comma-separated")
    p.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]))))
        return 0
    rows = []
    for n in (int(x) for x in args.streams.split(",")):
        for policy in ("before", "now"):  # each in a fresh process: the collector's state is per process
            r = subprocess.run(
                [sys.executable, __file__, "--one", policy, str(n)], capture_output=True, text=True
            )
            if r.returncode:
                raise RuntimeError(r.stderr[-2000:])
            rows.append(json.loads(r.stdout))
            print(rows[-1], flush=True)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _common import machine_load, write_result

    print(write_result("gc_open_streams", {"cases": rows, "machine": machine_load()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
