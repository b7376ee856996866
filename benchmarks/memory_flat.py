"""Does loadgen's memory stay flat over a long run? RSS of the client process, sampled while it runs.

An open-loop run at ``--rate`` requests/s (default 50) with ``--tokens``-token answers (default 1,000) against
``fast_server.py --mode burst`` (every token of a response in one write: the server costs almost nothing, the client
still parses and records every token event), for ``--minutes`` (default 30). Every ``--every-s`` seconds, from a
thread inside the client process (``python -m loadgen``'s own ``main``, started by a small runner): its RSS and its
live Python objects (``sys.getallocatedblocks()``). Printed: both at those times, the least-squares slope of each
after ``--warmup-s`` (MB/hour, blocks/hour) and the RSS slope extrapolated to 24 hours; the target is flat within
+-10 MB over a day. The end of the run (summary, written from requests.jsonl) is reported apart: its peak is
``max_rss_mb``.

Why both: RSS is what the machine sees, but it is a high-water mark. When the machine starves the client for a
while (this one is shared), responses pile up, are parsed together, and the allocator keeps the memory they used:
RSS steps up and stays, flat, at the new level. A leak grows the live objects steadily; a step does not move them
(they return to their level once the backlog is parsed). ``behind`` (planned so far minus finished; Poisson
arrivals make it wander by +-sqrt(n)) shows such backlogs.

``--stall-at S --stall-s D`` makes such an episode happen on purpose: the client is stopped (SIGSTOP) S seconds
into the run for D seconds, then continued, so that what a starved client does to its memory is measured the
same way every time, instead of whenever the machine happens to be busy.

``--loadgen-path DIR`` runs another checkout's loadgen (e.g. ``git archive main | tar -x -C /tmp/main``) with this
script, to measure before and after a change the same way.

    python benchmarks/memory_flat.py --minutes 5
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    CLIENT_CPU,
    PY,
    ROOT,
    CpuWindow,
    FastServer,
    machine_load,
    pinned,
    scratch_dir,
    write_result,
)

RUNNER = """
import json, os, sys, threading, time
out, every = sys.argv[1], float(sys.argv[2])
def sample():
    t0 = time.monotonic()
    with open(out, "a") as fh:
        while True:
            rss = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
            fh.write(json.dumps([time.monotonic() - t0, rss, sys.getallocatedblocks()]) + "\\n")
            fh.flush()
            time.sleep(every)
threading.Thread(target=sample, daemon=True).start()
from loadgen.__main__ import main
sys.exit(main(sys.argv[3:]))
"""


class LineCounter:
    """Lines appended to a file so far, counted incrementally (requests.jsonl grows to gigabytes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pos = 0
        self.lines = 0

    def count(self) -> int:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.pos)
                while chunk := fh.read(1 << 22):
                    self.lines += chunk.count(b"\n")
                    self.pos += len(chunk)
        except OSError:
            pass
        return self.lines


def slope_mb_per_hour(t_s: np.ndarray, mb: np.ndarray) -> float | None:
    if t_s.size < 3 or t_s[-1] <= t_s[0]:
        return None
    return float(np.polyfit(t_s, mb, 1)[0] * 3600)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(args.loadgen_path).resolve() if args.loadgen_path else ROOT
    env = dict(os.environ, PYTHONPATH=str(root))
    duration_s = args.minutes * 60
    samples: list[tuple[float, float, int, int]] = []  # (s since start, RSS MB, live blocks, requests behind)
    with scratch_dir("memflat-") as td, FastServer("burst", Path(td) / "server.jsonl") as srv:
        out = Path(td) / "run"
        inside = Path(td) / "inside.jsonl"
        cmd = [PY, "-c", RUNNER, str(inside), str(args.every_s)]
        cmd += ["--base-url", srv.base_url, "--rate", str(args.rate), "--cv", "1"]
        cmd += ["--duration", str(duration_s), "--warmup", "0", "--input-len", "32"]
        cmd += ["--max-tokens", str(args.tokens), "--no-scrape", "--no-report", "--quiet", "--no-live"]
        cmd += ["--seed", "1", "--output-dir", str(out)]
        load = CpuWindow()
        t0 = time.monotonic()
        proc = subprocess.Popen(pinned(cmd, CLIENT_CPU), cwd=root, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)  # fmt: skip
        finished = LineCounter(out / "requests.jsonl")
        stall = None if args.stall_at is None else (t0 + args.stall_at, t0 + args.stall_at + args.stall_s)
        stalled = False
        while True:
            now = time.monotonic()
            if stall is not None and not stalled and now >= stall[0]:
                os.kill(proc.pid, signal.SIGSTOP)
                stalled = True
            if stall is not None and stalled and now >= stall[1]:
                os.kill(proc.pid, signal.SIGCONT)
                stall = None
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if inside.exists():
                for line in inside.read_text().splitlines()[len(samples) :]:
                    t, mb, blocks = json.loads(line)
                    # behind: planned so far minus finished (in flight + the client's backlog)
                    behind = int(min(t, duration_s) * args.rate) - finished.count()
                    samples.append((t, mb, blocks, behind))
                    if t <= duration_s + 1:
                        print(f"  t={t:7.1f} s  RSS {mb:8.1f} MB  live blocks {blocks:>10,}  behind {behind:6d}",
                              flush=True)  # fmt: skip
            time.sleep(0.5)
        wall = time.monotonic() - t0
        code = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        srv.stop()
        lines = (out / "requests.jsonl").read_bytes().count(b"\n") if (out / "requests.jsonl").exists() else 0
        file_mb = (out / "requests.jsonl").stat().st_size / 1e6 if lines else 0.0
    if code != 0:
        raise RuntimeError(f"loadgen exited {code}: {err[-2000:]}")
    t = np.array([s[0] for s in samples])
    mb = np.array([s[1] for s in samples])
    blocks = np.array([s[2] for s in samples], dtype=np.float64)
    behind = np.array([s[3] for s in samples])
    during = (t >= args.warmup_s) & (t <= duration_s)
    slope = slope_mb_per_hour(t[during], mb[during])
    blocks_slope = slope_mb_per_hour(t[during], blocks[during])
    return {
        "loadgen_path": "." if root == ROOT else root.name,  # no path of this machine in a result file
        "rate": args.rate,
        "tokens": args.tokens,
        "minutes": args.minutes,
        "stall": None if args.stall_at is None else {"at_s": args.stall_at, "for_s": args.stall_s},
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
        "warmup_s": args.warmup_s,
        "requests": lines,
        "requests_jsonl_mb": round(file_mb, 1),
        # [s since start, RSS MB, live Python blocks, requests behind the plan]
        "samples": [[round(a, 1), round(b, 1), c, d] for a, b, c, d in samples],
        "live_blocks_after_warmup": int(blocks[during][0]) if during.any() else None,
        "live_blocks_at_end_of_sending": int(blocks[during][-1]) if during.any() else None,
        "live_blocks_slope_per_hour": None if blocks_slope is None else round(blocks_slope),
        "max_behind_after_warmup": int(behind[during].max()) if during.any() else None,
        "rss_after_warmup_mb": round(float(mb[during][0]), 1) if during.any() else None,
        "rss_at_end_of_sending_mb": round(float(mb[during][-1]), 1) if during.any() else None,
        "rss_range_after_warmup_mb": round(float(mb[during].max() - mb[during].min()), 1)
        if during.any()
        else None,
        "slope_mb_per_hour": None if slope is None else round(slope, 2),
        "extrapolated_24h_growth_mb": None if slope is None else round(slope * 24, 1),
        "max_rss_mb": round(ru.ru_maxrss / 1024, 1),
        "process_wall_s": round(wall, 1),
        "load": load.report(ru.ru_utime + ru.ru_stime),
        "machine": machine_load(),
    }


def main() -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=30.0, help="how long to send (default %(default)s)")
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--tokens", type=int, default=1000, help="tokens per answer")
    p.add_argument("--every-s", type=float, default=10.0, help="RSS sampling period")
    p.add_argument("--warmup-s", type=float, default=60.0, help="left out of the slope")
    p.add_argument("--stall-at", type=float, help="stop the client (SIGSTOP) this many seconds into the run")
    p.add_argument("--stall-s", type=float, default=10.0, help="for this long, then continue it (SIGCONT)")
    p.add_argument("--loadgen-path", help="the checkout whose loadgen runs (default: this one)")
    p.add_argument("--name", default="memory_flat", help="results/NAME.json")
    args = p.parse_args()
    r = measure(args)
    print(
        f"{r['requests']:,} requests ({r['requests_jsonl_mb']:,} MB of records) in {args.minutes:g} min: RSS after "
        f"warm-up {r['rss_after_warmup_mb']} MB, at the end of sending {r['rss_at_end_of_sending_mb']} MB (range "
        f"{r['rss_range_after_warmup_mb']} MB); slope "
        f"{r['slope_mb_per_hour']} MB/hour -> {r['extrapolated_24h_growth_mb']} MB over 24 h (target: flat within "
        f"+-10 MB); live Python blocks {r['live_blocks_after_warmup']:,} -> {r['live_blocks_at_end_of_sending']:,} "
        f"({r['live_blocks_slope_per_hour']:+,}/hour); at most {r['max_behind_after_warmup']} requests behind the "
        f"plan; peak incl. the end-of-run "
        f"summary {r['max_rss_mb']} MB; others' load "
        f"{r['load']['other_load_cores']} cores"
    )
    print(write_result(args.name, r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
