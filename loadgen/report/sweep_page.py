"""``sweep.html`` from a sweep's ``sweep.json``: goodput and p99 TTFT/TTFVT against the offered rate per cv, and
a table of the cells, those whose client check failed marked."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

import orjson

from loadgen.analysis.metrics import INTERVAL
from loadgen.errors import ConfigError
from loadgen.records.files import REPORT_HTML, SUMMARY, SWEEP_HTML, SWEEP_JSON, get
from loadgen.report import words
from loadgen.report.page import cell, fig_block, fmt, page, table, write_figures
from loadgen.report.svg import esc
from loadgen.report.sweep_figures import cell_key, sweep_figures

__all__ = ["write_sweep_report"]


def _column(key: str, q: str) -> tuple[str, str]:
    """(cell field, column head) of a latency quantile: p99_ttft_from_intended_ms, "p99 TTFT ms (intended)"."""
    iv = INTERVAL[key]
    side = (
        "" if iv.from_intended is None and not iv.corrected else " (intended)" if iv.corrected else " (send)"
    )
    return cell_key(key, q), f"{q} {iv.name} ms{side}"


TABLE_LATENCIES = tuple(
    _column(k, q)
    for k, q in (
        ("ttft_from_intended", "p99"),
        ("ttft", "p99"),
        ("ttfvt_from_intended", "p99"),
        ("e2e", "p50"),
    )
)


def write_sweep_report(sweep_dir: Path | str) -> Path:
    """``sweep_dir/sweep.html`` from ``sweep_dir/sweep.json``: goodput and p99 TTFT/TTFVT against rate, per cv."""
    sweep_dir = Path(sweep_dir)
    sp = sweep_dir / SWEEP_JSON
    if not sp.is_file():
        raise ConfigError(f"{sweep_dir}: no sweep.json")
    sweep = orjson.loads(sp.read_bytes())
    cells = sweep.get("cells") or []
    cfg = sweep.get("config") or {}
    slo = get(cfg, "run_config", "analysis", "slo_ms") or {}
    figs = sweep_figures(cells, slo)
    window = next((w.get("window") for c in cells if isinstance(w := c.get("rate_window"), dict)), None)
    parts = ["<h1>loadgen sweep: rate × burstiness</h1>"]
    parts.append(
        f'<p class="sub">{len(cells)} cells; rates {esc(", ".join(fmt(r) for r in sorted({c.get("rate") for c in cells if c.get("rate") is not None})))}'
        f'; cv {esc(", ".join(fmt(r) for r in sorted({c.get("cv") for c in cells if c.get("cv") is not None})))}'
        f'; SLO {esc(words.slo(slo) or "none set (so the first figure shows successful requests, not goodput)")}.</p>'
    )  # fmt: skip
    untrusted = [c for c in cells if c.get("trustworthy") is False]
    if untrusted:
        items = "".join(
            f"<li>rate {esc(fmt(c.get('rate')))}, cv {esc(fmt(c.get('cv')))}: "
            f"{esc('; '.join(c.get('client_check_reasons') or []) or 'see its summary.json')}</li>"
            for c in untrusted
        )
        parts.append(
            f'<div class="verdict bad" id="untrusted" data-count="{len(untrusted)}"><b>{len(untrusted)} of '
            f"{len(cells)} cells are not trustworthy:</b> loadgen itself fell behind in them, so their latencies "
            f"include the client's own delay (crossed out in the figures, marked in the table).<ul>{items}</ul></div>"
        )
    parts.append(
        '<p class="note">One line per burstiness (cv of inter-arrival gaps; 1 = Poisson, larger = burstier). Where '
        "goodput stops following the offered rate is the knee; the vertical distance between lines is the cost of "
        "burstiness. Hollow red rings: saturated cells (queue or errors growing without bound); cells after a "
        "saturated one were not run. Black crosses: cells whose client check failed. "
        f"Throughput and goodput count successful completions over the {esc(window or 'whole run')}, not over "
        "the whole run, whose drain would make a short cell read low; cells marked “short” have latencies spread "
        "over more than a fifth of that window and still read low. p99 latencies are from each request's intended "
        "start (corrected for coordinated omission); the table also gives TTFT from the actual send.</p>"
    )  # fmt: skip
    parts.append('<div class="grid">' + "".join(fig_block(s) for s in figs.values()) + "</div>")
    rows = _cell_rows(sweep_dir, cells)
    parts.append(
        '<h2 id="cells">Cells</h2><div class="fig">'
        + table(
            [
                "rate",
                "cv",
                "status",
                "offered/s",
                "throughput/s",
                "goodput/s" if slo else "ok req/s",
                *(label for _, label in TABLE_LATENCIES),
                "errors",
                "saturated",
                "client check",
                "run",
            ],
            rows,
            "cells",
        )  # fmt: skip
        + "</div>"
        + f"<details><summary>sweep configuration</summary><pre>{escape(orjson.dumps(cfg, option=orjson.OPT_INDENT_2).decode())}</pre></details>"
    )
    write_figures(sweep_dir, figs)
    path = sweep_dir / SWEEP_HTML
    path.write_text(page("loadgen sweep", "".join(parts)), encoding="utf-8")
    return path


def _cell_rows(sweep_dir: Path, cells: list[dict[str, Any]]) -> list[str]:
    """The cells table's rows: a cell's numbers, and its reason (saturated, failed) on a line of its own."""
    rows = []
    for i, c in enumerate(cells):
        bad = c.get("trustworthy") is False
        check = (
            f'<td class="bad" title="{esc("; ".join(c.get("client_check_reasons") or []))}"><b>NOT trustworthy</b></td>'
            if bad else f"<td>{'ok' if c.get('trustworthy') else '–'}</td>"
        )  # fmt: skip
        short = " (short)" if (c.get("rate_window") or {}).get("short") and not c.get("saturated") else ""
        rows.append(
            f'<tr class="{"untrusted" if bad else ""}">{cell(c.get("rate"), f"cells.{i}.rate")}'
            f"{cell(c.get('cv'), f'cells.{i}.cv')}<td>{esc(c.get('status'))}{esc(short)}</td>"
            f"{cell(c.get('offered_rate'), f'cells.{i}.offered_rate')}{cell(c.get('throughput'), f'cells.{i}.throughput')}"
            f"{cell(c.get('goodput_rps'), f'cells.{i}.goodput_rps')}"
            + "".join(cell(c.get(k), f"cells.{i}.{k}") for k, _ in TABLE_LATENCIES)
            + f"{cell(c.get('error_share'), f'cells.{i}.error_share', 'pct')}<td>{'yes' if c.get('saturated') else ''}</td>"
            f"{check}<td class=\"run\">{_link(sweep_dir, c.get('dir'))}</td></tr>"
        )  # fmt: skip
        if c.get("reason"):  # a sentence: on its own line under the cell's numbers
            rows.append(f'<tr class="why {"untrusted" if bad else ""}"><td></td><td colspan="13" class="what">'
                        f"{'saturated' if c.get('saturated') else esc(c.get('status'))}: {esc(c['reason'])}</td></tr>")  # fmt: skip
    return rows


def _link(base: Path, d: Any) -> str:
    if not d:
        return "–"
    p = Path(d)
    full = p if p.is_absolute() else base / p
    if not (full / SUMMARY).is_file():
        return "–"  # a skipped or failed cell has no run to link to
    rel = p if not p.is_absolute() else (p.relative_to(base) if p.is_relative_to(base) else p)
    rep = rel / REPORT_HTML
    return f'<a href="{esc(rep.as_posix())}">{esc(rel.as_posix())}</a>'
