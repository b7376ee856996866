"""Markdown tables of GPU experiment results: per-cell numbers from each run's summary.json, and the differences
against the baseline with their bootstrap intervals from ``python -m loadgen compare --json``.

    python benchmarks/gpu_tables.py cells EXPERIMENT_DIR...          > cells.md
    python benchmarks/gpu_tables.py diffs COMPARE.json [METRIC...]   > diffs.md

Numbers only; what they mean is said in the README's "Measured on a GPU".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def get(d: Any, *path: str) -> Any:
    for k in path:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def fmt(v: Any, nd: int = 1, pct: bool = False) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "ok" if v else "NOT ok"
    if pct:
        return f"{100 * v:.{nd}f}%"
    return f"{v:,.{nd}f}"


CELL_COLUMNS = (
    ("requests ok", lambda s: get(s, "metrics", "requests", "ok"), 0, False),
    ("TTFT p50 ms", lambda s: get(s, "metrics", "latency_ms", "ttft", "p50"), 1, False),
    ("TTFT p99 ms", lambda s: get(s, "metrics", "latency_ms", "ttft", "p99"), 1, False),
    ("TPOT p50 ms", lambda s: get(s, "metrics", "latency_ms", "tpot", "p50"), 2, False),
    ("E2E p50 s", lambda s: (get(s, "metrics", "latency_ms", "e2e", "p50") or 0) / 1000 or None, 2, False),
    ("output tok/s", lambda s: get(s, "metrics", "throughput", "output_tokens_per_s"), 0, False),
    ("KV mean", lambda s: get(s, "server", "kv_cache_usage", "mean"), 1, True),
    ("KV max", lambda s: get(s, "server", "kv_cache_usage", "max"), 1, True),
    ("slots busy mean", lambda s: get(s, "server", "slots", "busy_mean"), 1, False),
    ("prefix hits", lambda s: get(s, "server", "prefix_cache", "hit_rate"), 1, True),
    ("spec. acceptance", lambda s: get(s, "server", "spec_decode", "acceptance_rate"), 1, True),
    ("GPU util mean", lambda s: get(s, "server", "gpu", "gpu_utilization", "mean"), 0, True),
    (
        "GPU mem max GiB",
        lambda s: (get(s, "server", "gpu", "gpu_memory_used_bytes", "max") or 0) / 2**30 or None,
        1,
        False,
    ),  # fmt: skip
    ("GPU W mean", lambda s: get(s, "server", "gpu", "gpu_power_watts", "mean"), 0, False),
    ("TTFT−prompt_ms p50", lambda s: get(s, "engine_timings", "ttft_minus_prompt_ms", "p50"), 1, False),
    ("TPOT−server p50 ms", lambda s: get(s, "engine_timings", "tpot_minus_server_ms", "p50"), 2, False),
    ("client check", lambda s: get(s, "client_check", "trustworthy"), 0, False),
)


def cells(dirs: list[Path]) -> str:
    head = ["cell", *(c[0] for c in CELL_COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for d in dirs:
        for summary in sorted(d.glob("*/summary.json")):
            s = json.loads(summary.read_text())
            row = [summary.parent.name] + [fmt(f(s), nd, pct) for _, f, nd, pct in CELL_COLUMNS]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


DIFF_METRICS = ("ttft_p50", "ttft_p99", "tpot_p50", "tpot_p99", "e2e_p50", "output_tok_s", "kv_usage_mean",
                "prefix_hit_rate", "spec_acceptance")  # fmt: skip


def diffs(compare: dict[str, Any], metrics: tuple[str, ...] = DIFF_METRICS) -> str:
    info = compare["metrics"]
    lines = [
        "| config | metric | value | baseline | difference [95% CI] | significant |",
        "|---|---|---|---|---|---|",
    ]
    for d in compare["differences"]:
        if d["metric"] not in metrics:
            continue
        m = info[d["metric"]]
        pct = m["unit"] == "share"
        ci = f" [{fmt(d['ci_low'], 2, pct)}, {fmt(d['ci_high'], 2, pct)}]" if d["ci_low"] is not None else ""
        rel = f" ({100 * d['rel_diff']:+.0f}%)" if d.get("rel_diff") is not None and not pct else ""
        sig = {True: "yes", False: "no", None: "– (1 run)"}[d["significant"]]
        lines.append(
            f"| {d['config']} | {m['label']} ({m['unit']}) | {fmt(d['value'], 2, pct)} | "
            f"{fmt(d['baseline_value'], 2, pct)} | {fmt(d['diff'], 2, pct)}{rel}{ci} | {sig} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("cells", "diffs"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "cells":
        sys.stdout.write(cells([Path(a) for a in argv[1:]]))
    else:
        sys.stdout.write(diffs(json.loads(Path(argv[1]).read_text()), tuple(argv[2:]) or DIFF_METRICS))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
