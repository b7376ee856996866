"""Figures of a comparison: per-configuration bars with the interval of each difference, overlaid latency CDFs,
KV-cache usage side by side."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from loadgen.analysis.metrics import INTERVAL, interval_ms
from loadgen.records.columns import read_requests
from loadgen.records.files import REQUESTS, SERVER_METRICS
from loadgen.report.distributions import cdf_figure, cdf_points
from loadgen.report.run_data import read_server
from loadgen.report.svg import PALETTE, Panel, Scale, esc, figure, finite, nice_max, num
from loadgen.report.timeline import draw_series

__all__ = [
    "compare_bars",
    "compare_cdf_keys",
    "compare_cdfs",
    "compare_kv",
    "compare_label",
    "compare_metric_order",
]

NS = 1e9
COMPARE_CDFS = (
    "ttft",
    "ttfvt",
    "tpot",
    "e2e",
)  # catalogue keys; from the intended start where there is a twin


def compare_bars(compare: dict[str, Any]) -> str | None:
    """Small multiples, one per metric: a bar per configuration; whiskers = baseline + CI of the difference."""
    configs = compare.get("configs") or []
    if not configs:
        return None
    metrics = compare_metric_order(compare)
    diffs = {(d.get("config"), d.get("metric")): d for d in compare.get("differences") or []}
    names = [str(c.get("name")) for c in configs]
    cols = 2
    pw, bar = 300, 16
    ph = bar * len(configs) + 8
    left = 16 + min(max(len(n) for n in names), 22) * 6.3
    cell_w, cell_h = left + pw + 30, ph + 64
    rows_n = math.ceil(len(metrics) / cols)
    body = []
    for k, met in enumerate(metrics):
        vals = [finite((c.get("metrics") or {}).get(met)) for c in configs]
        hi_candidates = [v for v in vals if v is not None]
        for c in configs:
            d = diffs.get((c.get("name"), met))
            if d and d.get("ci_high") is not None and d.get("baseline_value") is not None:
                hi_candidates.append(d["baseline_value"] + d["ci_high"])
        if not hi_candidates:
            continue
        vmax = nice_max(max(max(hi_candidates), 0) or 1.0)
        vmin = min(0.0, min(hi_candidates))
        ox, oy = (k % cols) * cell_w, (k // cols) * cell_h
        x = Scale(vmin, vmax, 0, pw)
        y = Scale(0, len(configs), 0, ph)
        p = Panel(
            x,
            y,
            left=ox + left,
            top=oy + 28,
            width=pw,
            height=ph,
            title=compare_label(compare, met),
            yfmt=lambda v: "",
        )
        if ((compare.get("metrics") or {}).get(met) or {}).get("unit") == "share":
            p.xfmt = lambda v: f"{100 * v:g}"  # the title says (%)
        marks = []
        for i, c in enumerate(configs):
            v = vals[i]
            if v is None:
                continue
            yy = 4 + i * bar
            is_base = c.get("name") == c.get("baseline", compare.get("baseline"))
            color = "#9e9e9e" if is_base else PALETTE[i % len(PALETTE)]
            d = diffs.get((c.get("name"), met))
            tip = f"{c.get('name')}: {met} = {v:,.4g}" + (" (baseline)" if is_base else "")
            whisk = ""
            if d and d.get("ci_low") is not None and d.get("baseline_value") is not None:
                a, b = d["baseline_value"] + d["ci_low"], d["baseline_value"] + d["ci_high"]
                tip += (
                    f"; diff {d.get('diff', 0):+,.4g} (95 % CI {d['ci_low']:+,.4g} … {d['ci_high']:+,.4g})"
                    + (", significant" if d.get("significant") else ", not significant")
                )
                cy = yy + bar / 2 - 1
                whisk = (
                    f'<path d="M{num(x(a))},{num(cy - 4)}V{num(cy + 4)}M{num(x(a))},{num(cy)}H{num(x(b))}'
                    f'M{num(x(b))},{num(cy - 4)}V{num(cy + 4)}" stroke="#222" stroke-width="1.2" fill="none"/>'
                )
            x0 = x(max(vmin, 0))
            marks.append(
                f'<g class="bar"><title>{esc(tip)}</title><rect x="{num(min(x0, x(v)))}" y="{num(yy)}" width="{num(max(abs(x(v) - x0), 1))}"'
                f' height="{bar - 3}" fill="{color}"/>{whisk}</g>'
            )  # fmt: skip
        p.raw("".join(marks))
        body.append(p.render())
        body += [
            f'<text x="{num(ox + left - 5)}" y="{num(oy + 28 + 4 + i * bar + bar / 2 + 2)}" text-anchor="end" font-size="10.5" fill="#222">{esc(n[:22])}</text>'
            for i, n in enumerate(names)
        ]
    if not body:
        return None
    return figure(
        cols * cell_w, rows_n * cell_h + 10, body, title="Per-configuration values", fig_id="compare-bars"
    )


def compare_metric_order(compare: dict[str, Any]) -> list[str]:
    """Metrics with at least one value, in the comparison's own order (its ``metrics`` table) when it has one."""
    have = {
        k
        for c in compare.get("configs") or []
        for k, v in (c.get("metrics") or {}).items()
        if finite(v) is not None
    }
    order = list(compare.get("metrics") or {}) or sorted(have)
    return [k for k in order if k in have] + sorted(have - set(order))


def compare_label(compare: dict[str, Any], key: Any) -> str:
    meta = (compare.get("metrics") or {}).get(key) or {}
    label = meta.get("label") or str(key)
    unit = meta.get("unit")
    if unit == "share":
        return f"{label} (%)"
    return f"{label} ({unit})" if unit and unit not in ("count",) else label


def compare_cdf_keys() -> list[tuple[str, str]]:
    """(figure key, catalogue key) of the overlaid CDFs: each latency from the intended start where it has one."""
    return [(k, INTERVAL[k].from_intended or k) for k in COMPARE_CDFS]


def compare_cdfs(runs: dict[Any, list[Path]]) -> dict[str, str]:
    """Overlaid CDFs, one line per configuration (its runs' measured successful requests pooled)."""
    pooled: dict[str, dict[str, list[np.ndarray]]] = {}
    for name, dirs in runs.items():
        for d in dirs:
            f = Path(d) / REQUESTS
            if not f.is_file():
                continue
            r = read_requests(f, chunks=False)
            m = r.measured_ok
            for key, lat in compare_cdf_keys():
                pooled.setdefault(str(name), {}).setdefault(key, []).append(interval_ms(r, lat)[m])
    if not pooled:
        return {}
    out = {}
    for key, lat in compare_cdf_keys():
        iv = INTERVAL[lat]
        title = f"{iv.name} from intended start" if iv.corrected else iv.name
        lines = []
        for name in pooled:
            vals = pooled[name].get(key) or []
            xv, fv, _ = cdf_points(np.concatenate(vals) if vals else np.empty(0))
            lines.append((name, xv, fv, False))
        out[key] = cdf_figure(title, lines, fig_id=f"compare-cdf-{key}")
    return out


def compare_kv(runs: dict[Any, list[Path]]) -> str | None:
    """KV-cache usage of each configuration's first run, side by side on shared axes."""
    series = []
    for name, dirs in runs.items():
        for d in dirs:
            s = read_server(Path(d) / SERVER_METRICS)
            if s.kv.size:
                series.append((str(name), s))
                break
    if not series:
        return None
    t1 = max(float(s.kv_t.max()) for _, s in series) / NS
    n = len(series)
    cols = min(n, 3)
    pw, ph = 300, 120
    cw, ch = pw + 70, ph + 70
    body = []
    for k, (name, s) in enumerate(series):
        ox, oy = (k % cols) * cw, (k // cols) * ch
        p = Panel(Scale(0, max(t1, 1e-3), 0, pw), Scale(0, 1, ph, 0), left=ox + 52, top=oy + 28, width=pw, height=ph,
                  title=name, yfmt=lambda v: f"{v:.0%}", xlabel="seconds since start")  # fmt: skip
        draw_series(p, s.kv_t, s.kv, 0.0, t1 * NS, PALETTE[k % len(PALETTE)], "KV usage", [])
        p.legend.clear()
        body.append(p.render())
    return figure(
        cols * cw,
        math.ceil(n / cols) * ch + 10,
        body,
        title="KV-cache usage per configuration",
        fig_id="compare-kv",
    )
