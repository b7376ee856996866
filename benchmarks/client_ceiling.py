"""Client ceiling: streamed tokens per client CPU-second, closed loop, 256 streams x 256 tokens, one write each.

loadgen runs through its CLI pinned to one core; ``fast_server.py --mode burst`` on the other writes every token of a
response at once, so the client is the bottleneck. The run window's CPU comes from the run's own ``summary.json``
(``client_check.cpu_s``: getrusage from the first send to the last response); start-up CPU is measured separately
as ``python -m loadgen --help`` and as the whole process's CPU outside the run window (imports, model lookup, plan,
summary). Target: >= 300,000 tokens per CPU-second and < 0.5 CPU-s start-up.

    python benchmarks/client_ceiling.py [--requests 5120] [--repeats 3]
    python benchmarks/client_ceiling.py --exporter [--repeats 4]   # the same runs without and with --metrics-port

``--exporter`` alternates runs without and with loadgen's live Prometheus endpoint (``--metrics-port``, scraped
every second by this process, as a Prometheus with a 1 s interval would) and reports both medians and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    PY,
    CpuWindow,
    FastServer,
    child_cpu_s,
    machine_load,
    run_loadgen,
    scratch_dir,
    write_result,
)

STREAMS = 256
TOKENS = 256


def one_run(n: int, tmp: Path, i: int, extra: list[str] = ()) -> dict:
    window = CpuWindow()
    with FastServer("burst", tmp / f"server{i}.jsonl") as srv:
        out = tmp / f"run{i}"
        r = run_loadgen(
            [
                *extra,
                "--base-url",
                srv.base_url,
                "--rate",
                "inf",
                "--max-concurrency",
                str(STREAMS),
                "-n",
                str(n),
                "--max-tokens",
                str(TOKENS),
                "--no-scrape",
            ],
            out,
        )
        srv.stop()
    load_during = window.report(r["process_cpu_s"] + srv.cpu_s)
    recs = r["records"]
    ok = [x for x in recs if x["status"] == "ok"]
    tokens = sum(x["completion_tokens"] or 0 for x in ok)
    cc = r["summary"]["client_check"]
    cpu = cc["cpu_s"]
    return {
        "requests_ok": len(ok),
        "requests_failed": len(recs) - len(ok),
        "streamed_tokens": tokens,
        "run_cpu_s": round(cpu, 3),
        "run_wall_s": round(cc["wall_s"], 3),
        "tokens_per_cpu_s": round(tokens / cpu),
        "tokens_per_wall_s": round(tokens / cc["wall_s"]),
        "process_cpu_s": round(r["process_cpu_s"], 3),
        "cpu_outside_run_window_s": round(r["process_cpu_s"] - cpu, 3),
        "max_rss_mb": round(r["max_rss_mb"], 1),
        "machine_load_during": load_during,
    }


class Scraper:
    """GETs a /metrics endpoint every ``every_s`` on a thread until stopped; counts the answers."""

    def __init__(self, port: int, every_s: float = 1.0) -> None:
        import threading

        self.url, self.every_s, self.answers = f"http://127.0.0.1:{port}/metrics", every_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        import urllib.request

        while not self._stop.wait(self.every_s):
            try:
                with urllib.request.urlopen(self.url, timeout=2) as resp:
                    resp.read()
                self.answers += 1
            except OSError:
                pass

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def exporter_ab(n: int, repeats: int) -> dict:
    """Alternate runs without and with --metrics-port (scraped every second): the exporter's cost."""
    import socket

    runs: dict[str, list[dict]] = {"without": [], "with": []}
    load_before = machine_load()
    with scratch_dir("ceiling-exporter-") as td:
        for i in range(repeats):
            for mode in ("without", "with") if i % 2 == 0 else ("with", "without"):
                k = len(runs["without"]) + len(runs["with"])
                if mode == "without":
                    runs[mode].append(one_run(n, Path(td), k))
                    print(f"run {k} {mode}: {runs[mode][-1]['tokens_per_cpu_s']}", file=sys.stderr)
                    continue
                with socket.socket() as s:
                    s.bind(("127.0.0.1", 0))
                    port = s.getsockname()[1]
                with Scraper(port) as scraper:
                    runs[mode].append(one_run(n, Path(td), k, ["--metrics-port", str(port)]))
                runs[mode][-1]["scrapes_answered"] = scraper.answers
                print(f"run {k} {mode}: {runs[mode][-1]['tokens_per_cpu_s']}", file=sys.stderr)
                continue
    med = {m: statistics.median(r["tokens_per_cpu_s"] for r in rs) for m, rs in runs.items()}
    # each alternation's two runs ran back to back, under the same load from the rest of the machine
    pairs = [
        w["tokens_per_cpu_s"] / o["tokens_per_cpu_s"]
        for w, o in zip(runs["with"], runs["without"], strict=True)
    ]
    result = {
        "benchmark": "client_ceiling_exporter",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "scenario": f"closed loop, {STREAMS} streams x {TOKENS} tokens, all tokens in one write, {n} requests; "
        f"{repeats} runs each without and with --metrics-port (scraped every 1 s), alternating",
        "tokens_per_cpu_s_median_without": round(med["without"]),
        "tokens_per_cpu_s_median_with": round(med["with"]),
        "with_over_without": round(med["with"] / med["without"], 4),
        "with_over_without_per_alternation": [round(x, 4) for x in pairs],
        "with_over_without_median_of_alternations": round(statistics.median(pairs), 4),
        "with_over_without_geomean_of_alternations": round(statistics.geometric_mean(pairs), 4),
        # the whole process tree (loadgen and, with --metrics-port, the exporter's child): what the child costs
        "process_cpu_s_median_without": statistics.median(r["process_cpu_s"] for r in runs["without"]),
        "process_cpu_s_median_with": statistics.median(r["process_cpu_s"] for r in runs["with"]),
        "target": "within 3 %",
        "runs": runs,
        "machine_load_before": load_before,
        "machine_load_after": machine_load(),
    }
    write_result("client_ceiling_exporter", result)
    return result


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--requests", type=int, default=5120)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--exporter", action="store_true", help="runs without and with --metrics-port, alternating"
    )
    args = p.parse_args(argv)
    if args.exporter:
        return exporter_ab(args.requests, args.repeats)
    load_before = machine_load()
    help_cpu = [child_cpu_s([PY, "-m", "loadgen", "--help"]) for _ in range(3)]
    runs = []
    with scratch_dir("ceiling-") as td:
        # start-up to first request, bounded above by a whole one-request run (imports, model lookup, plan,
        # one request, summary)
        one_cpu = []
        with FastServer("burst", Path(td) / "server-one.jsonl") as srv:
            for k in range(3):
                one_cpu.append(
                    child_cpu_s(
                        [PY, "-m", "loadgen", "--base-url", srv.base_url, "-n", "1", "--max-tokens", "8"]
                        + ["--no-scrape", "--quiet", "--no-live", "--output-dir", str(Path(td) / f"one{k}")]
                    )
                )
            srv.stop()
        for i in range(args.repeats):
            runs.append(one_run(args.requests, Path(td), i))
            print(f"run {i}: {runs[-1]}", file=sys.stderr)
    best = max(runs, key=lambda r: r["tokens_per_cpu_s"])
    result = {
        "benchmark": "client_ceiling",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "scenario": f"closed loop, {STREAMS} streams x {TOKENS} tokens, all tokens in one write, "
        f"{args.requests} requests",
        "tokens_per_cpu_s_median": round(statistics.median(r["tokens_per_cpu_s"] for r in runs)),
        "tokens_per_cpu_s_best": best["tokens_per_cpu_s"],
        "startup_cpu_s_help": round(statistics.median(help_cpu), 3),
        "one_request_run_cpu_s": round(statistics.median(one_cpu), 3),
        "cpu_outside_run_window_s_median": round(
            statistics.median(r["cpu_outside_run_window_s"] for r in runs), 3
        ),
        "targets": {"tokens_per_cpu_s": 300_000, "startup_cpu_s": 0.5},
        "runs": runs,
        "machine_load_before": load_before,
        "machine_load_after": machine_load(),
    }
    write_result("client_ceiling", result)
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
