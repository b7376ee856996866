"""Run every client benchmark and write ``benchmarks/results/latest.json`` (numbers, not pass/fail).

    python benchmarks/run_all.py            # ~4 minutes on 2 cores
    python benchmarks/run_all.py --quick    # smaller runs, for a smoke check

Each benchmark also writes its own ``benchmarks/results/<name>.json``. Pinning: client on CPU 0, server on CPU 1
(``taskset``). Check ``uptime`` first: numbers taken while something else loads the machine are not comparable,
and every result records the load average and busiest processes before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import client_ceiling  # noqa: E402
import schedule_fidelity  # noqa: E402
import timing_accuracy  # noqa: E402
from _common import BENCH, ROOT, write_result  # noqa: E402


def _machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadgen_commit": commit.stdout.strip(),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    q = args.quick
    t = time.perf_counter()
    out = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": _machine(),
        "client_ceiling": client_ceiling.main(
            ["--requests", "1024" if q else "5120", "--repeats", "1" if q else "3"]
        ),
        "timing_accuracy": timing_accuracy.main(
            ["--high-seconds", "5" if q else "20", "--low-requests", "40" if q else "200"]
        ),
        "schedule_fidelity": schedule_fidelity.main(["--requests", "300" if q else "1500"]),
    }
    out["elapsed_s"] = round(time.perf_counter() - t, 1)
    write_result("latest", out)
    print(json.dumps(headline(out), indent=2))
    return out


def headline(out: dict) -> dict:
    """The numbers the README table shows."""
    c, a, f = out["client_ceiling"], out["timing_accuracy"], out["schedule_fidelity"]
    lg = f["loadgen"]
    h = {
        "ceiling_tokens_per_cpu_s_median": c["tokens_per_cpu_s_median"],
        "startup_cpu_s_help": c["startup_cpu_s_help"],
        "one_request_run_cpu_s": c.get("one_request_run_cpu_s"),
    }
    for k in ("high", "low"):
        s = a[k]
        h[f"accuracy_{k}"] = {
            "rate": s["rate"],
            "in_flight": s["mean_streams_in_flight"],
            "ttft_err_p50_p99_ms": (s["ttft_error_ms"]["p50"], s["ttft_error_ms"]["p99"]),
            "token_err_p50_p99_ms": (
                s["token_delivery_error_ms"]["p50"],
                s["token_delivery_error_ms"]["p99"],
            ),
            "itl_err_abs_p50_p99_ms": (
                s["inter_token_abs_error_ms"]["p50"],
                s["inter_token_abs_error_ms"]["p99"],
            ),
            "server_lateness_ms": s["server_write_lateness_ms"],
        }
    h["fidelity_loadgen"] = {
        "rate_vs_target": lg["rate"]["received_vs_target"],
        "rate_vs_planned": lg["rate"]["received_vs_planned"],
        "residual_p99_ms": lg["arrival_residual_ms"]["p99"],
        "ks_ge_1ms": lg["gaps"]["ks_received_vs_gamma_ge_1ms"],
        "ks_planned_ge_1ms": lg["gaps"]["ks_planned_vs_gamma_ge_1ms"],
        "mass_below_1ms": lg["gaps"]["mass_below_1ms"],
    }
    for key in ("naive_sleep_until_baseline", "naive_sleep_relative_baseline"):
        if key in f:
            h[key] = {
                "residual_p99_ms": f[key]["arrival_residual_ms"]["p99"],
                "ks_ge_1ms": f[key]["gaps"]["ks_received_vs_gamma_ge_1ms"],
                "rate_vs_planned": f[key]["rate"]["received_vs_planned"],
            }
    return h


def markdown(out: dict) -> str:
    """The README's table, from a latest.json."""
    c, a, f = out["client_ceiling"], out["timing_accuracy"], out["schedule_fidelity"]

    def load(r: dict) -> str:
        m = r.get("machine_load_during") or {}
        return f"{m.get('other_load_cores', '?')}"

    def ms(d: dict, k: str) -> str:
        return f"{d[k]:.3f}" if d.get(k) is not None else "-"

    rows = [
        "| benchmark | measured | target | others' load (cores) |",
        "| --- | --- | --- | --- |",
    ]
    runs = c["runs"]
    rows.append(
        f"| ceiling: streamed tokens per client CPU-s (256 x 256, median of {len(runs)}) | "
        f"{c['tokens_per_cpu_s_median']:,} | >= 300,000 | {', '.join(load(r) for r in runs)} |"
    )
    rows.append(f"| start-up: `python -m loadgen --help` CPU-s | {c['startup_cpu_s_help']} | < 0.5 | - |")
    rows.append(
        f"| start-up + 1 request + summary, whole process CPU-s | {c.get('one_request_run_cpu_s')} | < 0.5 | - |"
    )
    for k, label, t50, t99 in (("high", "360 req/s", 2, 10), ("low", "5 req/s", 0.5, 1)):
        s = a[k]
        r = s["rate"]
        rows.append(
            f"| {label}: rate planned / sent / received by server | {r['planned']:.1f} / {r['achieved_send']:.1f}"
            f" / {r['received_by_server']:.1f} ({s['mean_streams_in_flight']:.0f} in flight) | full rate | "
            f"{load(s)} |"
        )
        for key, name in (
            ("ttft_error_ms", "TTFT error"),
            ("token_delivery_error_ms", "per-token delivery error"),
            ("inter_token_abs_error_ms", "inter-token error (abs)"),
            ("token_error_after_write_returned_ms", "per-token error past the server's write call"),
        ):
            if key not in s:
                continue
            d = s[key]
            rows.append(
                f"| {label}: {name} p50 / p99 / p99.9 ms | {ms(d, 'p50')} / {ms(d, 'p99')} / {ms(d, 'p99.9')} | "
                f"< {t50} / < {t99} | {load(s)} |"
            )
        sl = s["server_write_lateness_ms"] or {}
        rows.append(
            f"| {label}: fast_server's own write lateness p50 / p99 ms | {ms(sl, 'p50')} / {ms(sl, 'p99')} | "
            f"(server check) | {load(s)} |"
        )
        wc = s.get("server_write_call_ms")
        if wc:
            rows.append(
                f"| {label}: fast_server's write call duration p50 / p99 / max ms | {ms(wc, 'p50')} / "
                f"{ms(wc, 'p99')} / {ms(wc, 'max')} | (server check) | {load(s)} |"
            )
    for key, name in (
        ("loadgen", "loadgen"),
        ("naive_sleep_until_baseline", "naive sleep-to-deadline"),
        ("naive_sleep_relative_baseline", "naive sleep(gap)"),
    ):
        if key not in f:
            continue
        g = f[key]
        rows.append(
            f"| Gamma 50/s cv 2, {name}: rate vs target / vs plan; residual p99 ms; KS >= 1 ms; mass < 1 ms | "
            f"{g['rate']['received_vs_target']:+.2%} / {g['rate']['received_vs_planned']:+.2%}; "
            f"{g['arrival_residual_ms']['p99']:.3f}; {g['gaps']['ks_received_vs_gamma_ge_1ms']:.4f} "
            f"(plan itself {g['gaps']['ks_planned_vs_gamma_ge_1ms']:.4f}); "
            f"{g['gaps']['mass_below_1ms']['received']:.3f} (plan {g['gaps']['mass_below_1ms']['planned']:.3f}, "
            f"Gamma {g['gaps']['mass_below_1ms']['gamma']:.3f}) | 2%; 1 ms; 0.03 | {load(g)} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    if sys.argv[1:] == ["--table"]:
        print(markdown(json.loads((BENCH / "results" / "latest.json").read_text())))
    else:
        main()
        print(f"wrote {BENCH / 'results' / 'latest.json'}", file=sys.stderr)
