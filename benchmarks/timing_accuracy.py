"""Timing accuracy: the error loadgen adds to TTFT and inter-token times, against the server's own write times.

``fast_server.py --mode timed`` writes the first token ``--ttft-ms`` after a request arrives and then one token
every ``--itl-ms`` on absolute deadlines, logging ``perf_counter_ns()`` just before each ``transport.write``.
loadgen stamps each read with ``perf_counter_ns()`` too (same CLOCK_MONOTONIC, other process, other core), so
for every token: added error = client arrival stamp − server write stamp. Reported per scenario:
  * rate: planned, achieved by the client's sends and as received by the server;
  * TTFT error (first token), per-token delivery error (every token) and inter-token error
    (client gap − server gap), p50/p99/p99.9/max in ms;
  * the server's own lateness (write − plan) and how long its write calls took, so its error is not blamed on
    the client; and the error measured from the end of the server's write call (the bytes reach the client's
    socket inside it on loopback), the part that is surely the client's.
loadgen stamps reads in the event loop by default; with ``LOADGEN_KERNEL_TIMESTAMPS=1`` (Linux) it uses the kernel's
receive time (SO_TIMESTAMPNS) instead, e.g. ``LOADGEN_KERNEL_TIMESTAMPS=1 python benchmarks/timing_accuracy.py``.
Targets: 360 req/s with ~500 in flight: p50 < 2 ms, p99 < 10 ms; 5 req/s: p50 < 0.5 ms, p99 < 1 ms.

    python benchmarks/timing_accuracy.py [--high-seconds 20] [--low-requests 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CpuWindow, FastServer, machine_load, pct, run_loadgen, scratch_dir, write_result  # noqa: E402

TTFT_MS = 100.0
ITL_MS = 10.0


def scenario(
    name: str,
    rate: float,
    n: int,
    tokens: int,
    tmp: Path,
    cv: float = 1.0,
    src: Path | None = None,
) -> dict[str, Any]:
    load_before = machine_load()
    tmp = tmp / f"{name}-{time.monotonic_ns()}"
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
                "-n",
                str(n),
                "--max-tokens",
                str(tokens),
                "--no-scrape",
                "--seed",
                "1",
            ],
            tmp / "loadgen",
            src=src,
        )
        log = srv.stop()
    load_during = window.report(r["process_cpu_s"] + srv.cpu_s)
    summary = r["summary"]
    t0 = summary["clock"]["t0_ns"]
    server = log["requests"]
    ttft_err, tok_err, itl_err, in_flight_ends = [], [], [], []
    past_end, write_dur = [], []
    missing = bad = 0
    events = reads = single = 0
    for rec in r["records"]:
        stamps = rec["chunk_ns"] or []
        events += len(stamps)
        per_read = np.unique(np.asarray(stamps, dtype=np.int64), return_counts=True)[1]
        reads += len(per_read)
        single += int(np.count_nonzero(per_read == 1))
        if rec["status"] != "ok" or rec["server_request_id"] is None:
            bad += 1
            continue
        s = server.get(int(rec["server_request_id"]))
        if s is None:
            missing += 1
            continue
        w = np.asarray(s["write_ns"], dtype=np.int64)
        c = np.asarray(rec["chunk_ns"], dtype=np.int64) + t0
        if len(c) != len(w):
            bad += 1
            continue
        d = (c - w) / 1e6
        ttft_err.append(d[0])
        tok_err.append(d)
        we = np.asarray(s.get("write_end_ns") or s["write_ns"], dtype=np.int64)
        past_end.append(np.maximum(c - we, 0) / 1e6)
        write_dur.append((we - w) / 1e6)
        itl_err.append(np.diff(c) / 1e6 - np.diff(w) / 1e6)
        in_flight_ends.append((s["arrival_ns"], w[-1]))
    tok = np.concatenate(tok_err) if tok_err else np.zeros(0)
    itl = np.concatenate(itl_err) if itl_err else np.zeros(0)
    arrivals = np.sort(np.asarray([s["arrival_ns"] for s in server.values()], dtype=np.int64))
    server_rate = (len(arrivals) - 1) / ((arrivals[-1] - arrivals[0]) / 1e9) if len(arrivals) > 1 else None
    # mean streams in flight at the server over the middle of the run
    if in_flight_ends:
        ev = np.asarray(in_flight_ends, dtype=np.int64)
        mid = np.linspace(ev[:, 0].min(), ev[:, 1].max(), 200)[50:150]
        in_flight = float(np.mean([np.sum((ev[:, 0] <= t) & (ev[:, 1] > t)) for t in mid]))
    else:
        in_flight = 0.0
    m = summary["metrics"]
    cc = summary["client_check"]
    return {
        "scenario": f"{rate:g} req/s (cv {cv:g}), {n} requests, TTFT {TTFT_MS:g} ms, {ITL_MS:g} ms/token, "
        f"{tokens} tokens",
        "requests_ok": len(ttft_err),
        "requests_failed_or_unmatched": bad + missing,
        "rate": {
            "planned": m["rate"].get("planned"),
            "achieved_send": m["rate"].get("achieved_send"),
            "received_by_server": round(server_rate, 3) if server_rate else None,
        },
        "mean_streams_in_flight": round(in_flight, 1),
        "ttft_error_ms": pct(ttft_err),
        "token_delivery_error_ms": pct(tok),
        "inter_token_error_ms": pct(itl),
        "inter_token_abs_error_ms": pct(np.abs(itl)),
        # the part of the error that is surely the client's: how long after the server's write *returned* the
        # client's stamp is (on loopback the bytes reach the client's socket inside the write call)
        "token_error_after_write_returned_ms": pct(np.concatenate(past_end) if past_end else []),
        "server_write_call_ms": pct(np.concatenate(write_dur) if write_dur else []),
        "server_write_lateness_ms": log["summary"].get("write_lateness_ms"),
        "client": {
            "send_lag_ms": cc["send_lag_ms"],
            "event_loop_lag_ms": cc["event_loop_lag_ms"],
            "cpu_share": round(cc["cpu_share"], 3),
            "cpu_share_excluding_pacing_spin": round(cc["cpu_share_excluding_pacing_spin"], 3),
            "pacing_spin_s": round(cc["pacing_spin_s"], 3),
            "trustworthy": cc["trustworthy"],
            "reasons": cc["reasons"],
        },
        # the client's cost per token event: CPU from the first send to the last response (getrusage)
        "client_cost": {
            "token_events": events,
            "reads_with_tokens": reads,
            "single_token_reads_share": round(single / reads, 4) if reads else None,
            "run_cpu_s": round(cc["cpu_s"], 3),
            "events_per_cpu_s": round(events / cc["cpu_s"]) if cc["cpu_s"] else None,
            "us_per_event": round(cc["cpu_s"] / events * 1e6, 2) if events else None,
            "process_user_s": round(r["process_user_s"], 3),
            "process_sys_s": round(r["process_sys_s"], 3),
        },
        "machine_load_during": load_during,
        "machine_load_before": load_before,
        "machine_load_after": machine_load(),
    }


def quietest(run, attempts: int, max_other_cores: float) -> dict[str, Any]:
    """Run up to ``attempts`` times while something else loads the machine; keep the quietest attempt."""
    tried = []
    for _ in range(max(attempts, 1)):
        res = run()
        tried.append(res)
        if res["machine_load_during"]["other_load_cores"] <= max_other_cores:
            break
    best = min(tried, key=lambda r: r["machine_load_during"]["other_load_cores"])
    best["attempts_other_load_cores"] = [r["machine_load_during"]["other_load_cores"] for r in tried]
    return best


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--high-rate", type=float, default=360.0)
    p.add_argument("--high-seconds", type=float, default=20.0)
    p.add_argument("--low-rate", type=float, default=5.0)
    p.add_argument("--low-requests", type=int, default=200)
    p.add_argument("--only", choices=("high", "low"))
    p.add_argument("--attempts", type=int, default=3, help="re-run a scenario while the machine is busy")
    p.add_argument(
        "--max-other-load", type=float, default=0.15, help="cores used by others that count as busy"
    )
    args = p.parse_args(argv)
    # ~500 in flight at 360/s: each stream lasts 500/360 = 1.39 s = 100 ms + (tokens - 1) x 10 ms
    tokens = round((500 / args.high_rate - TTFT_MS / 1000) / (ITL_MS / 1000)) + 1
    out: dict[str, Any] = {
        "benchmark": "timing_accuracy",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "targets": {
            "high": {"ttft_p50_ms": 2, "ttft_p99_ms": 10},
            "low": {"ttft_p50_ms": 0.5, "ttft_p99_ms": 1},
        },
    }
    with scratch_dir("accuracy-") as td:
        if args.only in (None, "low"):
            out["low"] = quietest(
                lambda: scenario("low", args.low_rate, args.low_requests, tokens, Path(td)),
                args.attempts,
                args.max_other_load,
            )
            print(f"low: {out['low']['ttft_error_ms']}", file=sys.stderr)
        if args.only in (None, "high"):
            n = int(args.high_rate * args.high_seconds)
            out["high"] = quietest(
                lambda: scenario("high", args.high_rate, n, tokens, Path(td)),
                args.attempts,
                args.max_other_load,
            )
            print(f"high: {out['high']['ttft_error_ms']}", file=sys.stderr)
    write_result("timing_accuracy" + (f"_{args.only}" if args.only else ""), out)
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
