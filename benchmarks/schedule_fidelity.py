"""Schedule fidelity: Gamma arrivals (50 req/s, cv 2, 1,500 requests) as the *server* received them.

loadgen runs through its CLI (client core); ``fast_server.py --mode timed`` (server core) logs when the first byte
of each request arrived (``perf_counter_ns``, the same CLOCK_MONOTONIC as the client's plan). Requests are joined
by ``x-request-id``. Reported:
  * achieved rate as received vs the target (within 2%);
  * per-request arrival − intended time, after removing the constant offset (the median): p50/p99/max |residual|
    (target p99 < 1 ms);
  * KS distance between the received gaps and the intended Gamma(1/cv², cv²/rate), over gaps >= 1 ms:
    sup over x >= 1 ms of |F_received(x) − F_gamma(x)|, plus the mass below 1 ms on both sides (target < 0.03).
    For reference the same statistic for the planned gaps themselves (the schedule's own sampling noise at
    n = 1,500) and the two-sample KS distance received vs planned (what the sender alone adds).
The same schedule is also sent by two naive dispatchers (aiohttp, uvloop, one task per request), the baseline the
issue quotes (~0.06 KS, ~3 ms): ``until`` sleeps to each absolute deadline with a plain ``asyncio.sleep``;
``relative`` sleeps each gap (``asyncio.sleep(gap)``), which also drifts.

    python benchmarks/schedule_fidelity.py [--requests 1500] [--rate 50] [--cv 2]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import CpuWindow, FastServer, machine_load, pct, run_loadgen, scratch_dir, write_result  # noqa: E402

SEED = 7
TTFT_MS = 2.0
ITL_MS = 2.0
TOKENS = 4


def gap_stats(received_ns: np.ndarray, planned_ns: np.ndarray, rate: float, cv: float) -> dict[str, Any]:
    """KS over gaps >= 1 ms against the intended Gamma, and the mass below 1 ms."""
    shape, scale = 1.0 / cv**2, cv**2 / rate
    dist = stats.gamma(shape, scale=scale)

    def ks_tail(gaps_s: np.ndarray) -> tuple[float, float]:
        g = np.sort(gaps_s)
        n = len(g)
        ecdf_hi = np.arange(1, n + 1) / n
        ecdf_lo = np.arange(0, n) / n
        cdf = dist.cdf(g)
        keep = g >= 1e-3
        d = max(
            float(np.max(np.abs(ecdf_hi[keep] - cdf[keep]), initial=0.0)),
            float(np.max(np.abs(ecdf_lo[keep] - cdf[keep]), initial=0.0)),
        )
        below = float(np.mean(g < 1e-3))
        d = max(d, abs(below - float(dist.cdf(1e-3))))  # the step at 1 ms itself
        return d, below

    rg = np.diff(np.sort(received_ns)) / 1e9
    pg = np.diff(planned_ns) / 1e9
    d_recv, below_recv = ks_tail(rg)
    d_plan, below_plan = ks_tail(pg)
    both = (rg >= 1e-3, pg >= 1e-3)
    two = stats.ks_2samp(rg[both[0]], pg[both[1]]).statistic
    return {
        "ks_received_vs_gamma_ge_1ms": round(d_recv, 4),
        "ks_planned_vs_gamma_ge_1ms": round(d_plan, 4),
        "ks_received_vs_planned_ge_1ms": round(float(two), 4),
        "mass_below_1ms": {
            "gamma": round(float(dist.cdf(1e-3)), 4),
            "planned": round(below_plan, 4),
            "received": round(below_recv, 4),
        },
    }


def residuals(arrival_ns: np.ndarray, intended_abs_ns: np.ndarray) -> dict[str, Any]:
    off = (arrival_ns - intended_abs_ns) / 1e6
    med = float(np.median(off))
    res = np.abs(off - med)
    out = pct(res)
    out["constant_offset_ms"] = round(med, 4)
    return out


def rate_stats(arrival_ns: np.ndarray, planned_ns: np.ndarray, target: float) -> dict[str, Any]:
    a = np.sort(arrival_ns)
    received = float((len(a) - 1) / ((a[-1] - a[0]) / 1e9))
    planned = float((len(planned_ns) - 1) / ((planned_ns[-1] - planned_ns[0]) / 1e9))
    return {
        "target": target,
        "planned_by_schedule": round(planned, 3),
        "received": round(received, 3),
        "received_vs_planned": round(received / planned - 1, 5),
        "received_vs_target": round(received / target - 1, 5),
    }


def run_loadgen_case(n: int, rate: float, cv: float, tmp: Path) -> dict[str, Any]:
    tmp = tmp / f"lg-{time.monotonic_ns()}"
    tmp.mkdir()
    srv = FastServer("timed", tmp / "server.jsonl", ttft_ms=TTFT_MS, itl_ms=ITL_MS)
    window = CpuWindow()
    with srv:
        r = run_loadgen(
            [
                "--base-url",
                srv.base_url,
                "--rate",
                str(rate),
                "--cv",
                str(cv),
                "--seed",
                str(SEED),
                "-n",
                str(n),
                "--max-tokens",
                str(TOKENS),
                "--input-len",
                "32",
                "--no-scrape",
            ],
            tmp / "lg",
        )
        log = srv.stop()
    load_during = window.report(r["process_cpu_s"] + srv.cpu_s)
    t0 = r["summary"]["clock"]["t0_ns"]
    server = log["requests"]
    pairs = []
    for rec in r["records"]:
        if rec["server_request_id"] is None:
            continue
        s = server.get(int(rec["server_request_id"]))
        if s is not None:
            pairs.append(
                (rec["intended_ns"] + t0, s["arrival_ns"], rec["dispatched_ns"] - rec["intended_ns"])
            )
    pairs.sort()
    p = np.asarray(pairs, dtype=np.int64)
    cc = r["summary"]["client_check"]
    return {
        "matched": len(pairs),
        "intended_abs": p[:, 0],
        "arrival": p[:, 1],
        "send_lag_ms": pct(p[:, 2] / 1e6),
        "machine_load_during": load_during,
        "client": {
            "cpu_share": round(cc["cpu_share"], 4),
            "pacing_spin_s": round(cc["pacing_spin_s"], 3),
            "event_loop_lag_ms": cc["event_loop_lag_ms"],
        },
    }


async def _naive(base_url: str, offsets_ns: np.ndarray, mode: str) -> tuple[int, list[tuple[int, int]]]:
    """The baselines, one task per request (aiohttp): ``until``: ``await asyncio.sleep(deadline - now)`` (plain
    sleep to an absolute deadline, uvloop's millisecond timer); ``relative``: ``await asyncio.sleep(gap)``."""
    import aiohttp
    import orjson

    body = orjson.dumps(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hello " * 32}],
            "max_tokens": TOKENS,
            "stream": True,
        }
    )
    got: list[tuple[int, int]] = []
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> None:
            async with session.post(base_url + "/v1/chat/completions", data=body) as resp:
                got.append((i, int(resp.headers["x-request-id"])))
                await resp.read()

        tasks = []
        gaps = np.diff(offsets_ns) / 1e9
        t0 = time.perf_counter_ns()
        tasks.append(asyncio.create_task(one(0)))
        for i, g in enumerate(gaps, start=1):
            if mode == "relative":
                await asyncio.sleep(g)
            else:
                delay = (t0 + int(offsets_ns[i]) - time.perf_counter_ns()) / 1e9
                if delay > 0:
                    await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return t0, got


def run_naive_case(offsets_ns: np.ndarray, tmp: Path, mode: str) -> dict[str, Any]:
    import subprocess

    tmp = tmp / f"naive-{mode}-{time.monotonic_ns()}"
    tmp.mkdir()
    srv = FastServer("timed", tmp / "server.jsonl", ttft_ms=TTFT_MS, itl_ms=ITL_MS)
    window = CpuWindow()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with srv:
        np.save(tmp / "offsets.npy", offsets_ns)
        code = (
            "import sys, json, numpy as np, uvloop; sys.path.insert(0, sys.argv[1]);"
            "import schedule_fidelity as s;"
            "t0, got = uvloop.run(s._naive(sys.argv[2], np.load(sys.argv[3]), sys.argv[4]));"
            "print(json.dumps({'t0': t0, 'got': got}))"
        )
        from _common import CLIENT_CPU, PY, pinned

        out = subprocess.run(
            pinned(
                [
                    PY,
                    "-c",
                    code,
                    str(Path(__file__).resolve().parent),
                    srv.base_url,
                    str(tmp / "offsets.npy"),
                    mode,
                ],
                CLIENT_CPU,
            ),
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        log = srv.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    load_during = window.report(client_cpu + srv.cpu_s)
    import json

    res = json.loads(out.stdout)
    t0 = res["t0"]
    server = log["requests"]
    pairs = sorted(
        (int(offsets_ns[i]) + t0, server[sid]["arrival_ns"]) for i, sid in res["got"] if sid in server
    )
    p = np.asarray(pairs, dtype=np.int64)
    return {
        "matched": len(pairs),
        "intended_abs": p[:, 0],
        "arrival": p[:, 1],
        "machine_load_during": load_during,
    }


def quietest(run: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Run up to ``--attempts`` times while something else loads the machine; keep the quietest attempt."""
    tried = []
    for _ in range(max(args.attempts, 1)):
        res = run()
        tried.append(res)
        if res["machine_load_during"]["other_load_cores"] <= args.max_other_load:
            break
    best = min(tried, key=lambda r: r["machine_load_during"]["other_load_cores"])
    best["attempts_other_load_cores"] = [r["machine_load_during"]["other_load_cores"] for r in tried]
    return best


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--requests", type=int, default=1500)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--cv", type=float, default=2.0)
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--attempts", type=int, default=3, help="re-run a case while the machine is busy")
    ap.add_argument(
        "--max-other-load", type=float, default=0.15, help="cores used by others that count as busy"
    )
    args = ap.parse_args(argv)
    from loadgen.plan.schedule import GammaSchedule

    planned = GammaSchedule(args.rate, args.cv, SEED).offsets_ns(args.requests)
    out: dict[str, Any] = {
        "benchmark": "schedule_fidelity",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "scenario": f"{args.requests} Gamma arrivals, {args.rate:g} req/s, cv {args.cv:g}, seed {SEED}",
        "targets": {"rate_within": 0.02, "residual_p99_ms": 1.0, "ks_ge_1ms": 0.03},
        "machine_load_before": machine_load(),
    }
    with scratch_dir("fidelity-") as td:
        tmp = Path(td)
        lg = quietest(lambda: run_loadgen_case(args.requests, args.rate, args.cv, tmp), args)
        out["loadgen"] = {
            "machine_load_during": lg["machine_load_during"],
            "attempts_other_load_cores": lg["attempts_other_load_cores"],
            "matched": lg["matched"],
            "rate": rate_stats(lg["arrival"], planned, args.rate),
            "arrival_residual_ms": residuals(lg["arrival"], lg["intended_abs"]),
            "gaps": gap_stats(lg["arrival"], planned, args.rate, args.cv),
            "send_lag_ms": lg["send_lag_ms"],
            "client": lg["client"],
        }
        print(f"loadgen: {out['loadgen']}", file=sys.stderr)
        if not args.skip_naive:
            for mode in ("until", "relative"):
                nv = quietest(lambda mode=mode: run_naive_case(planned, tmp, mode), args)
                key = f"naive_sleep_{mode}_baseline"
                out[key] = {
                    "machine_load_during": nv["machine_load_during"],
                    "attempts_other_load_cores": nv["attempts_other_load_cores"],
                    "matched": nv["matched"],
                    "rate": rate_stats(nv["arrival"], planned, args.rate),
                    "arrival_residual_ms": residuals(nv["arrival"], nv["intended_abs"]),
                    "gaps": gap_stats(nv["arrival"], planned, args.rate, args.cv),
                }
                print(f"{key}: {out[key]}", file=sys.stderr)
    out["machine_load_after"] = machine_load()
    write_result("schedule_fidelity", out)
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
