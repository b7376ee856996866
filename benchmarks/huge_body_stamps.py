"""Other streams' stamps while one response is huge and /metrics is huge: what still runs on the event loop?

One run (in this process, on uvloop) against ``tests/scripted_server.py`` in its own process (its write times are
the truth, same CLOCK_MONOTONIC): request 0 gets a ``--big-tokens``-token answer (default 100,000, ~20 MB of SSE,
written in one go after 0.25 s), the next ``--small`` requests (default 13, 40 req/s) get 40 tokens 10 ms apart, and
/metrics is ``--metrics-mb`` MB of vLLM metrics (default 10), scraped every 0.5 s (``--no-scrape``: not at all).
Reported: the small streams' token lateness (client stamp - server write) p50/p99/max, and the client's own
event-loop lag p99/max (``client_check``), over ``--repeats`` runs (each number the median of the repeats, and
every repeat listed). ``--loadgen-path DIR`` runs another checkout's loadgen (and its tests/scripted_server.py) the
same way: before and after a change, alternately, in one invocation.

    python benchmarks/huge_body_stamps.py --loadgen-path /tmp/main --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


async def _tick(stalls: list[tuple[float, float, float]]) -> None:
    import time

    last, last_cpu = time.perf_counter(), time.thread_time()
    while True:
        await asyncio.sleep(0.001)
        now, cpu = time.perf_counter(), time.thread_time()
        if now - last > 0.005:
            stalls.append((now, round((now - last) * 1e3, 1), round((cpu - last_cpu) * 1e3, 1)))
        last, last_cpu = now, cpu


class GcPauses:
    """The garbage collector's passes during the run (``gc.callbacks``): how many per generation, the longest."""

    def __init__(self) -> None:
        self.events: list[tuple[int, float]] = []
        self._start = 0.0

    def _cb(self, phase: str, info: dict[str, int]) -> None:
        import time

        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.events.append((info["generation"], (time.perf_counter() - self._start) * 1e3))

    def __enter__(self) -> GcPauses:
        import gc

        gc.callbacks.append(self._cb)
        return self

    def __exit__(self, *exc: object) -> None:
        import gc

        gc.callbacks.remove(self._cb)

    def counts(self) -> dict[str, int]:
        return {f"gen{g}": sum(1 for e in self.events if e[0] == g) for g in range(3)}

    def max_ms(self) -> dict[str, float]:
        return {
            f"gen{g}": round(max([d for e, d in self.events if e == g], default=0.0), 2) for g in range(3)
        }


def one_run(args: argparse.Namespace) -> dict[str, Any]:
    """Runs inside the checkout being measured (PYTHONPATH): imports its loadgen and its scripted server."""
    import numpy as np
    import uvloop

    from loadgen.config import (
        EndpointConfig,
        OutputConfig,
        RunConfig,
        SamplingConfig,
        ScheduleConfig,
        ScrapeConfig,
    )
    from loadgen.run.runner import run_async
    from loadgen.workload.spec import RequestSpec
    from tests.scripted_server import DONE, Script, ServerProcess, chat_chunk, usage_chunk

    def cum(c: int) -> dict[str, int]:
        return {"prompt_tokens": 4, "completion_tokens": c, "total_tokens": 4 + c}

    body = b"".join(chat_chunk(content="tok ", usage=cum(i + 1)) for i in range(args.big_tokens))
    big = Script(
        [(0, chat_chunk(role=True, usage=cum(0))), (0.25, body), (0, usage_chunk(4, args.big_tokens) + DONE)]
    )
    small = [(0.0, chat_chunk(role=True, usage=cum(0)))]
    small += [(0.01, chat_chunk(content="c", usage=cum(i + 1))) for i in range(40)]
    small.append((0, chat_chunk(finish="stop", usage=cum(40)) + usage_chunk(4, 40) + DONE))
    standin = (Path("tests") / "data" / "metrics" / "vllm_standin_load.txt").read_text()
    metrics, k = [], 0
    while sum(map(len, metrics)) < args.metrics_mb * 1e6:
        metrics.append(re.sub(r'engine="(\d+)"', f'engine="{k}"', standin))
        k += 1
    specs = [RequestSpec(prompt="big", extra_body={"model": "big"})]
    specs += [RequestSpec(prompt="small", extra_body={"model": "small"}) for _ in range(args.small)]
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as td:
        cfg = RunConfig(
            endpoint=EndpointConfig(base_url="http://127.0.0.1:1", model="scripted"),
            schedule=ScheduleConfig(arrival="constant", rate=40.0, num_requests=len(specs)),
            sampling=SamplingConfig(max_tokens=args.big_tokens),
            scrape=ScrapeConfig(enabled=not args.no_scrape, interval_s=0.5),
            output=OutputConfig(output_dir=str(Path(td) / "out"), report=False),
        )
        scripts = {"big": big, "small": Script(small)}
        with ServerProcess(Path(td) / "srv", scripts=scripts, metrics_body="".join(metrics).encode()) as srv:
            cfg = replace(cfg, endpoint=replace(cfg.endpoint, base_url=srv.base_url))
            pauses = GcPauses()

            async def traced() -> Any:
                ticker = asyncio.get_running_loop().create_task(_tick(stalls))
                try:
                    return await run_async(cfg, specs=specs, install_signal_handlers=False)
                finally:
                    ticker.cancel()

            stalls: list[tuple[float, float, float]] = []
            with pauses:
                res = uvloop.run(traced())
        recs = sorted(res.records, key=lambda r: r.index)  # read back from the folder before it goes
    t0 = res.summary["clock"]["t0_ns"]
    smalls = sorted(recs[1:], key=lambda r: r.send_ns)
    if len(smalls) != args.small or recs[0].index != 0:
        raise RuntimeError([(r.index, r.status, r.error_message) for r in recs])
    arrivals = sorted((a for a in srv.arrivals if a.body.get("model") == "small"), key=lambda a: a.t_ns)
    late: list[float] = []
    for r, a in zip(smalls, arrivals, strict=True):
        w = np.asarray(a.writes_ns[1 : 1 + len(r.chunk_ns)], dtype=np.int64)
        late.extend(((np.asarray(r.chunk_ns, dtype=np.int64) + t0) - w) / 1e6)
    lag = res.summary.get("client_check", {})
    # the stalls between the first send and the last end (the ticker's clock is perf_counter, t0 is in ns)
    lo, hi = (t0 + min(r.send_ns for r in recs)) / 1e9, (t0 + max(r.end_ns for r in recs)) / 1e9
    measured = [(w, c) for t, w, c in stalls if lo <= t <= hi]
    arr = np.asarray(late)
    return {
        "ok": sum(r.status == "ok" for r in recs),
        "requests": len(recs),
        "big_tokens": recs[0].completion_tokens,
        "late_p50_ms": round(float(np.median(arr)), 2),
        "late_p99_ms": round(float(np.percentile(arr, 99)), 2),
        "late_max_ms": round(float(arr.max()), 2),
        "gc_collections": pauses.counts(),
        "gc_pause_max_ms": pauses.max_ms(),
        # gaps over 5 ms between 1 ms ticks of the loop: (wall ms, the loop thread's own CPU ms in it); CPU close
        # to wall: the loop was busy with loadgen's work; CPU far below it: the process waited for a core
        "stalls_wall_cpu_ms": sorted(measured, reverse=True)[:5],
        "stall_cpu_max_ms": max((c for _, c in measured), default=0.0),
        "loop_lag_p99_ms": lag.get("event_loop_lag_ms", {}).get("p99"),
        "loop_lag_max_ms": lag.get("event_loop_lag_ms", {}).get("max"),
    }


def _run_in(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--inner", "--big-tokens", str(args.big_tokens)]
    cmd += ["--small", str(args.small), "--metrics-mb", str(args.metrics_mb)] + (
        ["--no-scrape"] * args.no_scrape
    )
    env = dict(os.environ, PYTHONPATH=str(path))
    r = subprocess.run(cmd, cwd=path, env=env, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    p.add_argument("--big-tokens", type=int, default=100_000)
    p.add_argument("--small", type=int, default=13)
    p.add_argument("--metrics-mb", type=float, default=10.0)
    p.add_argument("--no-scrape", action="store_true")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--loadgen-path", help="also measure this checkout, alternately with this one")
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--name", default="huge_body_stamps")
    args = p.parse_args()
    if args.inner:
        print(json.dumps(one_run(args)))
        return 0
    paths = {"this": ROOT} | ({"other": Path(args.loadgen_path).resolve()} if args.loadgen_path else {})
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in paths}
    for i in range(args.repeats):
        for name, path in paths.items():
            r = _run_in(path, args)
            runs[name].append(r)
            print(f"  repeat {i + 1} {name:>5}: {r}", flush=True)
    out: dict[str, Any] = {"big_tokens": args.big_tokens, "small": args.small, "metrics_mb": args.metrics_mb,
                           "scrape": not args.no_scrape, "repeats": args.repeats}  # fmt: skip
    for name, rs in runs.items():
        keys = [k for k in rs[0] if k.endswith("_ms") and not isinstance(rs[0][k], (dict, list))]
        med = {k: sorted(r[k] for r in rs if r[k] is not None)[len(rs) // 2] for k in keys}
        out[name] = {"median": med, "runs": rs}
        print(f"{name:>5} ({'.' if paths[name] == ROOT else paths[name].name}): median of {len(rs)}: {med}")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _common import machine_load, write_result

    out["machine"] = machine_load()
    print(write_result(args.name, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
