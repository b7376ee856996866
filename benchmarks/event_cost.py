"""Event cost: one-token events per client CPU-second, a token per write (the 360 req/s timing scenario).

``client_ceiling.py`` has the server write all 256 tokens of a response at once, so the client pays for a read, a
wake-up and a de-framing step once per response. A real engine writes one token per write: every token is a read
of its own. This runs the high-rate scenario of ``timing_accuracy.py`` (Poisson 360 req/s, 130 tokens at 10 ms
each, ~500 streams in flight, ``fast_server --mode timed``) and reports, besides the timing error against the
server's write times, what each token event cost the client: CPU from the first send to the last response (the
run's own ``client_check.cpu_s``, getrusage) over the token events received, and how many reads carried them
(``single_token_reads_share``: a client that falls behind reads several tokens at once, which is cheaper per
token, so read the number together with that share and the machine's load).

``--compare DIR`` runs another checkout's loadgen (e.g. main's code, ``git worktree add`` or ``git archive``)
in the same session, alternating with this one, so before and after see the same machine.

    python benchmarks/event_cost.py [--seconds 10] [--repeats 3] [--compare DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    BENCH,
    CLIENT_CPU,
    PY,
    CpuWindow,
    FastServer,
    machine_load,
    pinned,
    scratch_dir,
    write_result,
)
from timing_accuracy import ITL_MS, TTFT_MS, scenario  # noqa: E402

TARGET_EVENTS_PER_CPU_S = 150_000


def _row(res: dict[str, Any]) -> dict[str, Any]:
    c = res["client_cost"]
    return {
        "events_per_cpu_s": c["events_per_cpu_s"],
        "us_per_event": c["us_per_event"],
        "single_token_reads_share": c["single_token_reads_share"],
        "run_cpu_s": c["run_cpu_s"],
        "token_events": c["token_events"],
        "process_user_s": c["process_user_s"],
        "process_sys_s": c["process_sys_s"],
        "rate_received_by_server": res["rate"]["received_by_server"],
        "ttft_error_ms": res["ttft_error_ms"],
        "token_delivery_error_ms": res["token_delivery_error_ms"],
        "inter_token_abs_error_ms": res["inter_token_abs_error_ms"],
        "event_loop_lag_ms": res["client"]["event_loop_lag_ms"],
        # CPU the pacer spent yielding with sleep(0) up to each send deadline (part of run_cpu_s)
        "pacing_spin_s": res["client"]["pacing_spin_s"],
        "other_load_cores": res["machine_load_during"]["other_load_cores"],
        "requests_ok": res["requests_ok"],
        "requests_failed_or_unmatched": res["requests_failed_or_unmatched"],
    }


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    if not rows:
        return {}
    med = statistics.median

    def p(key: str, q: str) -> float:
        return round(med(r[key][q] for r in rows), 4)

    return {
        "events_per_cpu_s_median": round(med(r["events_per_cpu_s"] for r in rows)),
        "events_per_cpu_s_all": [r["events_per_cpu_s"] for r in rows],
        "us_per_event_median": round(med(r["us_per_event"] for r in rows), 2),
        "single_token_reads_share_median": round(med(r["single_token_reads_share"] for r in rows), 4),
        "ttft_error_ms_median_of_runs": {q: p("ttft_error_ms", q) for q in ("p50", "p99", "p99.9")},
        "token_delivery_error_ms_median_of_runs": {
            q: p("token_delivery_error_ms", q) for q in ("p50", "p99", "p99.9")
        },
        "inter_token_abs_error_ms_median_of_runs": {
            q: p("inter_token_abs_error_ms", q) for q in ("p50", "p99", "p99.9")
        },
        "other_load_cores": [r["other_load_cores"] for r in rows],
    }


def floor_run(rate: float, n: int, tokens: int, tmp: Path) -> dict[str, Any]:
    """``stamp_floor.py`` (a bare uvloop client that only stamps and keeps bytes) against the same server load."""
    window = CpuWindow()
    with FastServer(
        "timed", tmp / f"floor-{time.monotonic_ns()}.jsonl", ttft_ms=TTFT_MS, itl_ms=ITL_MS
    ) as srv:
        cmd = [PY, str(BENCH / "stamp_floor.py"), "--port", str(srv.port), "--rate", str(rate)]
        cmd += ["--requests", str(n), "--tokens", str(tokens)]
        out = subprocess.run(pinned(cmd, CLIENT_CPU), capture_output=True, text=True, check=True, timeout=900)
        srv.stop()
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["other_load_cores"] = window.report(res["run_cpu_s"] + srv.cpu_s)["other_load_cores"]
    return res


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rate", type=float, default=360.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compare", type=Path, help="another checkout whose loadgen is measured alternately")
    p.add_argument("--compare-label", default="compared")
    p.add_argument("--name", default="event_cost", help="results/NAME.json")
    p.add_argument(
        "--no-floor", action="store_true", help="skip the bare stamp-only client (stamp_floor.py) runs"
    )
    args = p.parse_args(argv)
    # ~500 in flight at 360/s, as in timing_accuracy.py
    tokens = round((500 / args.rate - TTFT_MS / 1000) / (ITL_MS / 1000)) + 1
    n = int(args.rate * args.seconds)
    sides: dict[str, Path | None] = {"this": None}
    if args.compare is not None:
        sides[args.compare_label] = args.compare.resolve()
    rows: dict[str, list[dict[str, Any]]] = {k: [] for k in sides}
    floor: list[dict[str, Any]] = []
    load_before = machine_load()
    with scratch_dir("event-cost-") as td:
        for i in range(args.repeats):
            if not args.no_floor:
                floor.append(floor_run(args.rate, n, tokens, Path(td)))
                f = floor[-1]
                print(
                    f"floor run {i}: {f['events_per_cpu_s']:,} events/CPU-s ({f['us_per_event']} us/event, "
                    f"user {f['user_s']} s, sys {f['sys_s']} s), others' load {f['other_load_cores']} cores",
                    file=sys.stderr,
                )
            for label, src in sides.items():
                res = scenario(f"{label}{i}", args.rate, n, tokens, Path(td), src=src)
                rows[label].append(_row(res))
                r = rows[label][-1]
                print(
                    f"{label} run {i}: {r['events_per_cpu_s']:,} events/CPU-s ({r['us_per_event']} us/event, "
                    f"{r['single_token_reads_share']:.1%} single-token reads), TTFT error p50/p99 "
                    f"{r['ttft_error_ms']['p50']:.3f}/{r['ttft_error_ms']['p99']:.3f} ms, "
                    f"others' load {r['other_load_cores']} cores",
                    file=sys.stderr,
                )
    out: dict[str, Any] = {
        "benchmark": "event_cost",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "scenario": f"Poisson {args.rate:g} req/s, {n} requests, TTFT {TTFT_MS:g} ms, {ITL_MS:g} ms/token, "
        f"{tokens} tokens, one token per write (fast_server --mode timed)",
        "target": {"events_per_cpu_s": TARGET_EVENTS_PER_CPU_S},
        "sides": {label: {"summary": _summary(r), "runs": r} for label, r in rows.items()},
        # the same load on a client that only stamps reads and keeps their bytes: what no client change removes
        "floor_stamp_only": {
            "events_per_cpu_s_median": round(statistics.median(f["events_per_cpu_s"] for f in floor))
            if floor
            else None,
            "runs": floor,
        },
        "machine_load_before": load_before,
        "machine_load_after": machine_load(),
    }
    if args.compare is not None:
        out["compare_dir"] = str(args.compare)
    write_result(args.name, out)
    return out


if __name__ == "__main__":
    res = main()
    print(json.dumps({k: v["summary"] for k, v in res["sides"].items()}, indent=2))
    print(json.dumps({"floor_stamp_only": res["floor_stamp_only"]["events_per_cpu_s_median"]}))
