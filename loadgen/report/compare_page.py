"""``compare.html``: configurations side by side (``loadgen.commands.compare.compare_runs``'s dict), differences to the
baseline with their intervals, per-configuration bars, overlaid distributions, KV-cache usage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loadgen.records.files import get
from loadgen.report.compare_figures import (
    compare_bars,
    compare_cdfs,
    compare_kv,
    compare_label,
    compare_metric_order,
)
from loadgen.report.page import cell, fig_block, fmt, page, table, write_figures
from loadgen.report.svg import esc
from loadgen.report.turn_figures import compare_turns_section

__all__ = ["write_compare_report"]


def write_compare_report(compare: dict[str, Any], out_path: Path | str) -> Path:
    """An HTML comparison of configurations (``loadgen.commands.compare.compare_runs``'s dict); figures beside it."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    configs = compare.get("configs") or []
    base = compare.get("baseline")
    if not isinstance(base, str) and base:
        base = ", ".join(map(str, base))
    figs: dict[str, str] = {}
    parts = [f"<h1>loadgen comparison: {len(configs)} configurations</h1>"]
    parts.append(
        f'<p class="sub">Baseline: <b>{esc(base or "–")}</b>. Each configuration pools its runs '
        "(seeds); differences to the baseline come with bootstrap 95 % confidence intervals.</p>"
    )
    parts.append(_configs_html(configs, base))
    metrics = compare_metric_order(compare)
    mrows = []
    for met in metrics:
        mrows.append(
            f"<tr><td>{esc(compare_label(compare, met))}</td>"
            + "".join(
                cell(
                    get(c, "metrics", met),
                    f"configs.{c.get('name')}.metrics.{met}",
                    _share_kind(compare, met),
                )
                for c in configs
            )
            + "</tr>"
        )
    parts.append(
        '<h2 id="values">Values</h2>' + table(["metric", *[str(c.get("name")) for c in configs]], mrows)
    )
    parts.append(_differences_html(compare))
    fig = compare_bars(compare)
    if fig:
        figs["compare_bars"] = fig
        parts.append(
            '<h2 id="bars">Per-configuration bars</h2>'
            + fig_block(fig, "Bars: each configuration's value. Whiskers: the baseline value plus the 95 % "
                        "confidence interval of the difference (so a whisker crossing the baseline's bar top is "
                        "not a significant change).")
        )  # fmt: skip
    runs = {c.get("name"): [Path(d) for d in c.get("dirs") or []] for c in configs}
    cdfs, kv = compare_cdfs(runs), compare_kv(runs)
    figs.update({f"compare_cdf_{k}": v for k, v in cdfs.items()})
    if cdfs:
        parts.append(
            '<h2 id="cdfs">Overlaid distributions</h2><p class="note">From each configuration\'s pooled '
            "requests.jsonl, latencies from the intended start (corrected). Left and steep is better.</p>"
            '<div class="grid">' + "".join(fig_block(s) for s in cdfs.values()) + "</div>"
        )
    if kv:
        figs["compare_kv"] = kv
        parts.append(
            '<h2 id="kv">KV-cache usage, side by side</h2><p class="note">The first run of each configuration, same '
            "axes.</p>" + fig_block(kv)
        )
    turns_html = compare_turns_section(compare, figs)  # conversations: strip vs keep, turn by turn
    parts.append(turns_html)
    write_figures(out_path.parent, figs)
    nav = [("configs", "Configurations"), ("values", "Values"), ("diffs", "Differences"), ("bars", "Bars"),
           ("cdfs", "Distributions"), ("kv", "KV cache"), *([("turns", "Turns")] if turns_html else [])]  # fmt: skip
    out_path.write_text(page("loadgen comparison", "".join(parts), nav), encoding="utf-8")
    return out_path


def _differences_html(compare: dict[str, Any]) -> str:
    """The table of each configuration's difference to its baseline, with its interval."""
    drows = []
    for d in compare.get("differences") or []:
        sig = d.get("significant") is True
        kind = _share_kind(compare, d.get("metric"))
        # a share's difference in percentage points (a relative change of a share reads ambiguously)
        dfmt = (lambda v: "–" if v is None else f"{100 * v:+.1f} pt") if kind else (lambda v: fmt(v))
        drows.append(
            f'<tr class="{"sig" if sig else ""}"><td>{esc(d.get("config"))}</td><td>{esc(compare_label(compare, d.get("metric")))}</td>'
            f"{cell(d.get('value'), kind=kind)}{cell(d.get('baseline_value'), kind=kind)}<td class=\"num\">{esc(dfmt(d.get('diff')))}</td>"
            f"{cell(None if kind else d.get('rel_diff'), kind='pct')}"
            f"<td class=\"num\">{esc(dfmt(d.get('ci_low')))} … {esc(dfmt(d.get('ci_high')))}</td>"
            f"<td>{'<b>yes</b>' if sig else 'n/a' if d.get('significant') is None else 'no'}</td></tr>"
        )  # fmt: skip
    return (
        '<h2 id="diffs">Differences to the baseline</h2><p class="note">diff = value − baseline; “significant”: '
        "the 95 % interval of the difference excludes 0; n/a: fewer than 2 runs on a side.</p>"
        + table(
            ["config", "metric", "value", "baseline", "diff", "relative", "95 % CI of diff", "significant"],
            drows,
        )
    )


def _configs_html(configs: list[dict[str, Any]], base: Any) -> str:
    """The configurations compared: name, runs, seeds, folders."""
    rows = []
    for c in configs:
        rows.append(
            f"<tr><td>{esc(c.get('name'))}{' (baseline)' if c.get('name') == c.get('baseline', base) else ''}</td>"
            f"<td>{esc(len(c.get('dirs') or []))}</td><td>{esc(', '.join('–' if x is None else str(x) for x in c.get('seeds') or []))}</td>"
            f"<td>{'<br>'.join(f'<code>{esc(d)}</code>' for d in c.get('dirs') or [])}</td></tr>"
        )
    return '<h2 id="configs">Configurations</h2>' + table(["name", "runs", "seeds", "results folders"], rows)


def _share_kind(compare: dict[str, Any], key: Any) -> str:
    """'pct' for a metric that is a share (errors, stragglers, KV usage ...), so it reads as a percentage."""
    return "pct" if get(compare, "metrics", str(key), "unit") == "share" else ""
