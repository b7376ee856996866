"""``python -m loadgen sweep --rates 1,2,4,8 --cvs 0.5,1,2,4 [run options...]``: a rate × burstiness grid.

Each cell is a normal, bounded run (``--num-requests`` or ``--duration`` is required) into
``<sweep dir>/rate-R_cv-C/``; the sweep dir is ``--output-dir`` (default ``results/<UTC time>-sweep``). For each cv
the rates run in increasing order, and once a cell saturates the server the higher rates of that cv are skipped
(their cells say why), so a sweep never spends its time queueing behind a server that cannot keep up.

Stop rule (a cell is *saturated* when either holds):

1. errors: more than 10% of its measured requests failed; or
2. overload: the achieved request throughput is below 90% of the offered (planned) rate **and** the queue grows
   across the run. Throughput here (and the cell's goodput) counts successful completions inside the arrival
   window shifted later by the median E2E (``loadgen.analysis.metrics.steady_rates``), so a short cell's fill and drain do
   not read as a shortfall; the whole-run figures of each run's summary are kept beside them. The queue test: over the arrival window (first to last intended start, minus a warm-up of one median E2E at the
   start), the mean of the server's waiting queue (``num_waiting``, when scraped) — or else the client's
   in-flight count — in the second half is at least 1.5 × that of the first half and at least one request more.
   A stable queue is stationary, so its halves agree; an overloaded one grows about linearly (second-half mean
   ≈ 3 × the first). Throughput alone is not enough: a short cell with long E2Es still reads low.

Without ``--base-url`` every cell runs against its own built-in simulator (started and stopped by the run).
Writes ``sweep.json`` after every cell, prints a table of goodput and p99 TTFT from the intended start (corrected
for coordinated omission; rows rate, columns cv) with cells whose client check failed marked, and ``sweep.html``
through the report module when it is available.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from loadgen.analysis.metrics import INTERVAL, STEADY_WINDOW, ChunkStats, as_columns, steady_rates
from loadgen.config import RunConfig, check_output_dir
from loadgen.errors import ConfigError
from loadgen.records.columns import RequestColumns
from loadgen.records.files import REQUESTS, SERVER_METRICS, SWEEP_JSON
from loadgen.report.sweep_figures import cell_key

__all__ = [
    "STOP_RULE",
    "format_sweep",
    "goodput_label",
    "in_flight_series",
    "main",
    "read_cell",
    "run_sweep",
    "saturation",
    "sweep_slo",
]

log = logging.getLogger(__name__)

ERROR_SHARE_LIMIT = 0.10
THROUGHPUT_RATIO_LIMIT = 0.90
QUEUE_GROWTH_RATIO = 1.5
QUEUE_GROWTH_MIN = 1.0
# the latency quantiles of each cell: sweep.json's p99_ttft_ms, p99_ttft_from_intended_ms, ..., p50_e2e_ms
CELL_LATENCIES = (
    ("ttft", "p99"),
    ("ttft_from_intended", "p99"),
    ("ttfvt", "p99"),
    ("ttfvt_from_intended", "p99"),
    ("e2e", "p50"),
)
STOP_RULE = (
    f"saturated when error share > {ERROR_SHARE_LIMIT:.0%}, or when throughput < {THROUGHPUT_RATIO_LIMIT:.0%} of the "
    f"offered rate (throughput over the {STEADY_WINDOW}) AND the waiting queue (server num_waiting when scraped, else client in-flight) has a "
    f"second-half mean >= {QUEUE_GROWTH_RATIO} x the first half's and >= {QUEUE_GROWTH_MIN:g} more, over the "
    "arrival window after one median E2E; higher rates of a saturated cv are skipped"
)


def _floats(text: str, flag: str) -> list[float]:
    try:
        out = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected comma-separated numbers") from None
    if not out:
        raise ConfigError(f"{flag} must list at least one value")
    return out


def _label(x: float) -> str:
    """A number as a flag value and in a folder name: short (4, not 4.0) but never rounded.

    ``f"{x:g}"`` alone keeps 6 significant digits, which ran rates 1.0000001 and 1.0000002 both at 1 into one
    folder; where it would round, the shortest exact form (``repr``) is used.
    """
    g = f"{x:g}"
    return g if float(g) == x else repr(x)


# ------------------------------------------------------------------------------------------- saturation
def _halves_mean(t_ns: np.ndarray, v: np.ndarray, start: float, end: float) -> tuple[float, float] | None:
    """Time-weighted means of a step series (value v[i] from t[i] on) over the two halves of [start, end]."""
    if end <= start or t_ns.size == 0:
        return None
    mid = (start + end) / 2

    def mean(a: float, b: float) -> float:
        edges = np.clip(np.append(t_ns, np.inf), a, b)
        dur = np.diff(edges)
        # the value before the first sample is taken as the first sample's
        before = max(0.0, min(t_ns[0], b) - a)
        total = float((v * dur).sum() + v[0] * before)
        return total / (b - a)

    return mean(start, mid), mean(mid, end)


def in_flight_series(records: Sequence[Any] | RequestColumns) -> tuple[np.ndarray, np.ndarray]:
    """The client's in-flight count as a step series (times ns, counts), measured requests only."""
    c = as_columns(records)
    send, end = c.t["send_ns"], c.t["end_ns"]
    sent = c.measured & ~np.isnan(send)
    sends, ends = send[sent], end[sent & ~np.isnan(end)]
    if not sends.size:
        return np.zeros(0), np.zeros(0)
    t = np.concatenate([sends, ends])
    d = np.concatenate([np.ones(sends.size), -np.ones(ends.size)])
    order = np.argsort(t, kind="stable")
    return t[order], np.cumsum(d[order])


def read_cell(cell_dir: Path) -> RequestColumns:
    """A cell's requests as columns (its ITL only as far as an ``itl`` SLO needs)."""
    from loadgen.records.columns import read_requests

    return read_requests(cell_dir / REQUESTS, reducers=[ChunkStats(exact_max=0)])


def _server_waiting(out_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    path = out_dir / SERVER_METRICS
    if not path.exists():
        return None
    try:
        from loadgen.records.columns import read_server
        from loadgen.scrape.series import GaugeSeries

        g = GaugeSeries.from_columns(read_server(path, names=("num_waiting",)), "num_waiting", "sum")
    except Exception as exc:  # the scrape is auxiliary
        log.debug("num_waiting unavailable: %s", exc)
        return None
    if not len(g):
        return None
    return g.times_ns.astype(float), g.values


def saturation(
    summary: dict[str, Any], records: Sequence[Any] | RequestColumns, out_dir: Path
) -> dict[str, Any]:
    """The stop rule's inputs and verdict for one finished cell (see the module docstring)."""
    records = as_columns(records)
    m = summary["metrics"]
    req = m["requests"]
    measured = req["measured"] or 0
    error_share = req["failed"] / measured if measured else 0.0
    offered = m["rate"]["planned"] or m["rate"]["target"]
    steady = steady_rates(records, (m.get("goodput") or {}).get("slo_ms"))
    throughput = steady["requests_per_s"]
    if throughput is None:  # too few requests for the window: the whole run's figure
        throughput = m["throughput"]["requests_per_s"]
    intended = records.t["intended_ns"][records.measured]
    e2e_p50 = m["latency_ms"]["e2e"]["p50"] or 0.0
    queue: dict[str, Any] = {"source": None, "first_half": None, "second_half": None, "growing": False}
    if len(intended) >= 4:
        a, b = float(intended.min()), float(intended.max())
        a = min(a + e2e_p50 * 1e6, a + (b - a) / 4)
        series = _server_waiting(out_dir)
        source = "server num_waiting"
        if series is None:
            series, source = in_flight_series(records), "client in-flight"
        halves = _halves_mean(*series, a, b)
        if halves is not None:
            h1, h2 = halves
            queue.update(
                source=source,
                first_half=round(h1, 3),
                second_half=round(h2, 3),
                growing=bool(h2 >= QUEUE_GROWTH_RATIO * h1 and h2 - h1 >= QUEUE_GROWTH_MIN),
            )
    ratio = throughput / offered if offered else None
    reasons = []
    if error_share > ERROR_SHARE_LIMIT:
        reasons.append(f"error share {error_share:.0%} > {ERROR_SHARE_LIMIT:.0%}")
    if ratio is not None and ratio < THROUGHPUT_RATIO_LIMIT and queue["growing"]:
        reasons.append(
            f"throughput {throughput:.2f}/s is {ratio:.0%} of the offered {offered:.2f}/s and the "
            f"{queue['source']} grew from {queue['first_half']:.1f} to {queue['second_half']:.1f} (half means)"
        )
    return {
        "offered_rate": offered,
        "throughput": throughput,
        "throughput_ratio": ratio,
        "error_share": error_share,
        "queue": queue,
        "saturated": bool(reasons),
        "reason": "; ".join(reasons) or None,
        "steady": steady,
    }


# ------------------------------------------------------------------------------------------- running
def _cell_row(rate: float, cv: float, cell_dir: Path) -> dict[str, Any]:
    return {
        "rate": rate,
        "cv": cv,
        "dir": cell_dir.name,
        "status": "planned",
        "offered_rate": None,
        "throughput": None,
        "goodput_rps": None,
        "rate_window": None,
        **{cell_key(key, q): None for key, q in CELL_LATENCIES},
        "error_share": None,
        "saturated": False,
        "reason": None,
    }


def _new_doc(
    rates: list[float],
    cvs: list[float],
    run_args: list[str],
    probe: RunConfig,
    stop_on_saturation: bool,
    sweep_dir: Path,
) -> tuple[dict[str, Any], dict[tuple[float, float], dict[str, Any]]]:
    """sweep.json before the first cell: the grid, every cell waiting; and each cell's row by (rate, cv)."""
    doc: dict[str, Any] = {
        "loadgen_sweep_version": 1,
        "config": {
            "rates": list(rates),
            "cvs": list(cvs),
            "run_args": run_args,
            "run_config": probe.public_dict(),
            "stop_on_saturation": stop_on_saturation,
            "stop_rule": STOP_RULE,
        },
        "status": "running",
        "started_unix": time.time(),
        "cells": [],
    }
    rows: dict[tuple[float, float], dict[str, Any]] = {}
    for cv in cvs:
        for rate in rates:
            row = _cell_row(rate, cv, sweep_dir / f"rate-{_label(rate)}_cv-{_label(cv)}")
            rows[(rate, cv)] = row
            doc["cells"].append(row)

    return doc, rows


def run_sweep(
    rates: Sequence[float],
    cvs: Sequence[float],
    run_argv: Sequence[str],
    sweep_dir: Path,
    *,
    stop_on_saturation: bool = True,
    console: Any = None,
    install_signal_handlers: bool = True,
) -> dict[str, Any]:
    """Run the grid; returns (and writes) the ``sweep.json`` document.

    ``run_argv`` (the run options) is parsed once; each cell is that configuration with its rate and cv.
    """
    from loadgen.options import bounded, build_config, mask_secrets, options_from_argv
    from loadgen.run.runner import run as run_once

    rates = sorted(set(rates))
    cvs = list(dict.fromkeys(cvs))
    opts = options_from_argv(run_argv)
    base = build_config(opts)
    probe = _with_arrivals(base, rates[0], cvs[0])
    # a sweep runs many cells: their size must be chosen, not defaulted (100 requests at 0.5/s is 200 s a cell)
    if not bounded(opts) and probe.workload.kind != "dataset":
        raise ConfigError("a sweep needs bounded cells: give --num-requests or --duration")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    doc, rows = _new_doc(rates, cvs, mask_secrets(run_argv), probe, stop_on_saturation, sweep_dir)

    def write() -> None:
        tmp = sweep_dir / "sweep.json.tmp"
        tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        tmp.replace(sweep_dir / SWEEP_JSON)

    write()
    interrupted = False
    for cv in cvs:
        saturated_at: float | None = None
        for rate in rates:
            row = rows[(rate, cv)]
            if interrupted:
                row.update(status="skipped", reason="sweep interrupted")
                continue
            if saturated_at is not None:
                row.update(
                    status="skipped", reason=f"cv {_label(cv)} saturated at rate {_label(saturated_at)}"
                )
                continue
            cell_dir = sweep_dir / row["dir"]
            cfg = _with_arrivals(base, rate, cv).unattended(cell_dir, row["dir"])
            row["status"] = "running"
            write()
            t0 = time.monotonic()
            try:
                res = run_once(cfg, console=None, install_signal_handlers=install_signal_handlers)
            except KeyboardInterrupt:
                row.update(status="interrupted")
                interrupted = True
                continue
            except Exception as exc:  # a failed cell is data; the sweep goes on
                row.update(status="failed", reason=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
                log.debug("sweep cell failed", exc_info=True)
                write()
                continue
            finally:
                row["seconds"] = round(time.monotonic() - t0, 2)
            sat = _fill_row(row, res, cell_dir)
            if res.interrupted:
                interrupted = True
            if console is not None:
                _say_cell(console, rate, cv, row, sat)
            if sat["saturated"] and stop_on_saturation:
                saturated_at = rate
            write()
    doc["status"] = "interrupted" if interrupted else "done"
    doc["finished_unix"] = time.time()
    write()
    return doc


def _fill_row(row: dict[str, Any], res: Any, cell_dir: Path) -> dict[str, Any]:
    """A finished cell's numbers into its row; returns its saturation verdict."""
    m = res.summary["metrics"]
    lat = m["latency_ms"]
    sat = saturation(res.summary, read_cell(cell_dir), cell_dir)
    steady = sat["steady"]
    check = res.summary.get("client_check", {})
    row.update(
        status="interrupted" if res.interrupted else "ok",
        offered_rate=sat["offered_rate"],
        throughput=sat["throughput"],
        goodput_rps=steady["goodput_per_s"]
        if steady["goodput_per_s"] is not None
        else m["goodput"]["requests_per_s"],
        rate_window={k: steady[k] for k in ("window", "duration_s", "shift_ms", "short") if k in steady},
        throughput_whole_run=m["throughput"]["requests_per_s"],
        goodput_whole_run=m["goodput"]["requests_per_s"],
        **{cell_key(key, q): lat[key][q] for key, q in CELL_LATENCIES},
        error_share=sat["error_share"],
        saturated=sat["saturated"],
        reason=sat["reason"],
        queue=sat["queue"],
        trustworthy=check.get("trustworthy"),
        client_check_reasons=list(check.get("reasons") or []),
    )
    return sat


def _say_cell(console: Any, rate: float, cv: float, row: dict[str, Any], sat: dict[str, Any]) -> None:
    """One line per finished cell: goodput, p99 TTFT, errors, and whether it saturated or was untrustworthy."""
    flag = " [red]saturated[/]" if sat["saturated"] else ""
    if row["trustworthy"] is False:
        flag += " [yellow]untrustworthy: " + "; ".join(row["client_check_reasons"]) + "[/]"
    console.print(
        f"rate {_label(rate)} cv {_label(cv)}: goodput {_f(row['goodput_rps'])}/s, p99 TTFT "
        f"{_f(row[cell_key('ttft_from_intended')])} ms from intended start, errors "
        f"{row['error_share']:.0%}{flag}"
    )


def _with_arrivals(cfg: RunConfig, rate: float, cv: float) -> RunConfig:
    return replace(cfg, schedule=replace(cfg.schedule, rate=rate, cv=cv))


def _f(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"


def sweep_slo(doc: dict[str, Any]) -> dict[str, float]:
    """The sweep's --slo in ms (empty when none was set: its 'goodput' is then every successful request)."""
    return dict(((doc.get("config") or {}).get("run_config") or {}).get("analysis", {}).get("slo_ms") or {})


def goodput_label(slo_ms: dict[str, float]) -> str:
    """What the goodput numbers are: requests meeting the SLO, or, without one, successful requests."""
    from loadgen.report import words

    return f"goodput (req/s meeting {words.slo(slo_ms)})" if slo_ms else "successful req/s (no --slo set)"


def format_sweep(doc: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    cvs = doc["config"]["cvs"]
    rates = doc["config"]["rates"]
    by = {(c["rate"], c["cv"]): c for c in doc["cells"]}
    t = Table(
        title=f"{goodput_label(sweep_slo(doc))} / p99 {INTERVAL['ttft'].name} from intended start (ms)",
        header_style="bold",
        show_lines=True,
    )
    t.add_column("rate (req/s)", justify="right")
    for cv in cvs:
        t.add_column(f"cv {_label(cv)}", justify="right")
    for rate in rates:
        cells = []
        for cv in cvs:
            c = by[(rate, cv)]
            if c["status"] in ("ok", "interrupted"):
                text = f"{_f(c['goodput_rps'])} / {_f(c.get(cell_key('ttft_from_intended')))}"
                if c["saturated"]:
                    text = f"[red]{text}\nsaturated[/]"
                if c.get("trustworthy") is False:
                    text += "\n[yellow]untrustworthy[/]"
                if (c.get("rate_window") or {}).get("short") and not c["saturated"]:
                    text += "\n[dim]short: reads low[/]"
            else:
                text = f"[dim]{c['status']}[/]"
            cells.append(text)
        t.add_row(_label(rate), *cells)
    console.print(t)
    for c in doc["cells"]:
        if c["reason"] and c["status"] != "skipped":
            console.print(f"rate {_label(c['rate'])} cv {_label(c['cv'])}: {c['status']}: {c['reason']}")
        if c.get("trustworthy") is False:
            why = "; ".join(c.get("client_check_reasons") or []) or "see its summary.json"
            console.print(
                f"[yellow]rate {_label(c['rate'])} cv {_label(c['cv'])}: client check failed, its latencies "
                f"include loadgen's own delay: {why}[/]"
            )
    console.print(
        f"rates (goodput, throughput) count completions over the {STEADY_WINDOW}; 'short' cells (latency spread "
        "above a fifth of that window) read low."
    )
    console.print(f"stop rule: {doc['config']['stop_rule']}")


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m loadgen sweep",
        allow_abbrev=False,
        description="Run a rate x cv grid of bounded runs with a saturation stop rule; any run option passes through "
        "(python -m loadgen --help).",
    )
    p.add_argument("--rates", required=True, help="comma-separated request rates, e.g. 1,2,4,8")
    p.add_argument("--cvs", default="1", help="comma-separated coefficients of variation (default 1)")
    p.add_argument("--no-stop", action="store_true", help="run every cell even after saturation")
    ns, rest = p.parse_known_args(list(argv))
    for flag in ("--rate", "--cv", "--label"):
        if any(a == flag or a.startswith(flag + "=") for a in rest):
            raise ConfigError(f"sweep sets {flag} per cell; use --rates/--cvs")
    rates, cvs = _floats(ns.rates, "--rates"), _floats(ns.cvs, "--cvs")
    if any(r <= 0 or math.isinf(r) for r in rates):
        raise ConfigError("--rates must be finite and > 0")
    out = _pop_output_dir(rest)
    sweep_dir = Path(out) if out else _default_dir()
    check_output_dir(sweep_dir)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    doc = run_sweep(rates, cvs, rest, sweep_dir, stop_on_saturation=not ns.no_stop, console=console)
    format_sweep(doc, console)
    try:
        from loadgen.report.html import write_sweep_report  # type: ignore[attr-defined]
    except ImportError:
        pass
    else:
        try:
            console.print(f"report: {write_sweep_report(sweep_dir)}")
        except Exception as exc:  # the HTML is a view; sweep.json is the result
            console.print(f"[yellow]sweep report not written: {exc}[/]")
    console.print(f"results: {sweep_dir}/sweep.json")
    return 130 if doc["status"] == "interrupted" else 0


def _pop_output_dir(rest: list[str]) -> str | None:
    out = None
    i = 0
    while i < len(rest):
        a = rest[i]
        if a == "--output-dir" and i + 1 < len(rest):
            out = rest[i + 1]
            del rest[i : i + 2]
            continue
        if a.startswith("--output-dir="):
            out = a.split("=", 1)[1]
            del rest[i]
            continue
        i += 1
    return out


def _default_dir() -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return Path("results") / f"{stamp}-sweep"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
