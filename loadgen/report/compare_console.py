"""The comparison in a terminal: rich tables (wide where they fit, else a row per metric and configuration) or
plain text for pipes; ``*`` marks differences whose interval excludes 0. The numbers are
:func:`loadgen.commands.compare.compare_runs`'s; this module only lays them out."""

from __future__ import annotations

import math
from typing import Any

from loadgen.analysis.catalogue import METRICS, Metric

__all__ = ["format_compare", "format_compare_text"]


def _fmt(v: float | None, unit: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if unit == "share":
        return f"{100 * v:.1f}%"
    if unit in ("count", "tokens") and float(v).is_integer():
        return f"{int(v):,}"
    a = abs(v)
    return f"{v:,.0f}" if a >= 100 else f"{v:,.1f}" if a >= 10 else f"{v:.2f}" if a >= 0.1 else f"{v:.3g}"


def _diff_parts(d: dict[str, Any], metric: Metric) -> tuple[str, str]:
    """The difference with its interval, and its verdict: "n/a", "" (not significant), "better", "worse" or
    "differs" (a significant change of a metric without a good direction)."""
    unit = metric.unit
    if unit == "share":
        core = f"{_pt(d['diff'])} pt [{_pt(d['ci_low'])}, {_pt(d['ci_high'])}]"
    else:
        rel = f" ({100 * d['rel_diff']:+.0f}%)" if d["rel_diff"] is not None else ""
        core = f"{_sign(d['diff'], unit)}{rel} [{_sign(d['ci_low'], unit)}, {_sign(d['ci_high'], unit)}]"
    if d["significant"] is None:
        return core, "n/a"
    if not d["significant"]:
        return core, ""
    if metric.better == "":
        return core, "differs"
    return core, "better" if (d["diff"] < 0) == (metric.better == "lower") else "worse"


def _fmt_diff(d: dict[str, Any], metric: Metric) -> str:
    core, verdict = _diff_parts(d, metric)
    if verdict == "n/a":
        return f"[dim]{core} n/a[/]"
    if not verdict:
        return f"[dim]{core}[/]"
    color = {"better": "green", "worse": "red", "differs": "cyan"}[verdict]
    return f"[bold {color}]{core} *[/]"


def _pt(v: float) -> str:
    """A share difference in percentage points; small ones keep two significant digits so that a
    significant difference is never printed as +0.0."""
    p = 100 * v
    return f"{p:+.2g}" if 0 < abs(p) < 0.1 else f"{p:+.1f}"


def _sign(v: float, unit: str) -> str:
    if v is None or math.isnan(v):
        return "?"
    s = _fmt(abs(v), unit)
    return ("+" if v >= 0 else "-") + s


_GROUP_TITLES = {
    "latency": "latency (ms, from send)",
    "throughput": "throughput, goodput, errors, stragglers, accuracy",
    "server": "server (scraped)",
}


def _shown_groups(result: dict[str, Any]) -> dict[str, list[Metric]]:
    groups: dict[str, list[Metric]] = {}
    for m in METRICS:
        if any(c["metrics"].get(m.key) is not None for c in result["configs"]):
            groups.setdefault(m.group, []).append(m)
    return groups


def _unit(m: Metric) -> str:
    return "" if m.unit in ("ms", "share", "count") else f" ({m.unit})"


def _method_note(result: dict[str, Any]) -> tuple[str, str]:
    base = result["baseline"] if isinstance(result["baseline"], str) else ", ".join(result["baseline"])
    meth = result["method"]
    return base, (
        f"with {int(100 * meth['ci_level'])}% bootstrap intervals ({meth['n_boot']} resamples, seed "
        f"{meth['seed']}; latencies: runs then requests; server/throughput: runs). * = interval excludes 0; "
        "n/a = fewer than 2 runs on a side."
    )


def _wide_tables(result: dict[str, Any]) -> list[Any]:
    """Configurations as rows, one column per metric: value, and under it the difference to the baseline."""
    from rich.table import Table

    diffs = {(d["config"], d["metric"]): d for d in result["differences"]}
    tables = []
    for group, metrics in _shown_groups(result).items():
        t = Table(title=_GROUP_TITLES[group], header_style="bold", show_lines=True)
        t.add_column("configuration", overflow="fold")
        t.add_column("runs", justify="right", overflow="fold")
        for m in metrics:
            t.add_column(m.label + _unit(m), justify="right", overflow="fold")
        for c in result["configs"]:
            cells = []
            for m in metrics:
                text = _fmt(c["metrics"].get(m.key), m.unit)
                d = diffs.get((c["name"], m.key))
                if d is not None:  # the change, then its interval on a line of its own
                    text += "\n" + _fmt_diff(d, m).replace(" [", "\n[", 1)
                cells.append(text)
            name = f"[bold]{c['name']}[/] (baseline)" if c["name"] == c.get("baseline") else c["name"]
            t.add_row(name, f"{len(c['dirs'])}\n{c['requests']} req", *cells)
        tables.append(t)
    return tables


def _long_rows(result: dict[str, Any], metrics: list[Metric]) -> list[tuple[str, str, str, str, str]]:
    """(metric, configuration, value, difference, verdict) for the vertical layout, baseline rows first."""
    diffs = {(d["config"], d["metric"]): d for d in result["differences"]}
    rows = []
    for m in metrics:
        first = True
        for c in sorted(result["configs"], key=lambda c: c["name"] != c.get("baseline")):
            d = diffs.get((c["name"], m.key))
            core, verdict = _diff_parts(d, m) if d is not None else ("", "")
            if d is None and c["name"] == c.get("baseline"):
                core = "(baseline)"
            rows.append((m.label + _unit(m) if first else "", c["name"], _fmt(c["metrics"].get(m.key), m.unit), core,
                         verdict))  # fmt: skip
            first = False
    return rows


def _long_tables(result: dict[str, Any]) -> list[Any]:
    """One row per metric and configuration: fits a terminal of any width with any number of configurations."""
    from rich.table import Table

    tables = []
    for group, metrics in _shown_groups(result).items():
        t = Table(title=_GROUP_TITLES[group], header_style="bold")
        t.add_column("metric", overflow="fold")
        t.add_column("configuration", overflow="fold")
        t.add_column("value", justify="right", overflow="fold")
        t.add_column("vs baseline [95% CI]", justify="right", overflow="fold")
        rows = _long_rows(result, metrics)
        for i, (label, name, value, core, verdict) in enumerate(rows):
            style = {"better": "bold green", "worse": "bold red", "differs": "bold cyan"}.get(verdict, "dim")
            diff = f"[{style}]{core}{' *' if verdict not in ('', 'n/a') else ' n/a' if verdict else ''}[/]"
            last = i + 1 == len(rows) or bool(rows[i + 1][0])
            t.add_row(
                label, name, value, diff if core != "(baseline)" else "[dim](baseline)[/]", end_section=last
            )
        tables.append(t)
    return tables


def format_compare(result: dict[str, Any], console: Any, layout: str = "auto") -> None:
    """Tables of the comparison; ``*`` marks differences whose interval excludes 0 (green better, red worse).

    ``layout``: "wide" (configurations as rows, metrics as columns), "long" (a row per metric and configuration)
    or "auto": wide where it fits the console's width, else long, so no number is ever cut."""
    from rich.measure import Measurement

    if layout == "auto":
        wide = _wide_tables(result)
        unbounded = console.options.update(max_width=1_000_000)  # the width each table wants, unwrapped
        fits = all(Measurement.get(console, unbounded, t).maximum <= console.width for t in wide)
        layout = "wide" if fits else "long"
    tables = _wide_tables(result) if layout == "wide" else _long_tables(result)
    if layout == "long":  # the runs column of the wide layout, said once
        runs = "; ".join(
            f"{c['name']}{' (baseline)' if c['name'] == c.get('baseline') else ''}: {len(c['dirs'])} run(s), "
            f"{c['requests']:,} requests"
            for c in result["configs"]
        )
        console.print(f"configurations: {runs}")
    for t in tables:
        console.print(t)
    base, note = _method_note(result)
    console.print(f"differences vs [bold]{base}[/] {note}")
    for line in _turn_lines(result):
        console.print(line, highlight=False, markup=False)


def format_compare_text(result: dict[str, Any]) -> str:
    """The long layout as plain text (no colours, no box drawing, no fixed width): for pipes, files and grep.
    Significant differences say which way they go, since there is no colour to."""
    lines = []
    for c in result["configs"]:
        mark = " (baseline)" if c["name"] == c.get("baseline") else ""
        lines.append(f"configuration {c['name']}{mark}: {len(c['dirs'])} run(s), {c['requests']:,} requests")
    for group, metrics in _shown_groups(result).items():
        rows = [("metric", "configuration", "value", "vs baseline [95% CI]")]
        for label, name, value, core, verdict in _long_rows(result, metrics):
            tail = f" * {verdict}" if verdict not in ("", "n/a") else " n/a" if verdict else ""
            rows.append((label, name, value, core + tail if core != "(baseline)" else core))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines += ["", _GROUP_TITLES[group]]
        for r in rows:
            lines.append(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}".rstrip())
    base, note = _method_note(result)
    lines += ["", f"differences vs {base} {note}"]
    turn_lines = _turn_lines(result)
    if turn_lines:
        lines += ["", *turn_lines]
    return "\n".join(lines) + "\n"


def _turn_lines(result: dict[str, Any]) -> list[str]:
    """Conversations runs turn by turn (strip vs keep reasoning): prompt tokens, cache hits, TTFT."""
    from loadgen.report.turn_figures import compare_turns_lines

    return compare_turns_lines([(name, {"turns": t}) for name, t in (result.get("turns") or {}).items()])
