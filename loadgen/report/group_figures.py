"""Figures of a run's groups: latency per dataset / token budget, and accuracy with its confidence interval."""

from __future__ import annotations

from typing import Any

from loadgen.analysis.metrics import INTERVAL
from loadgen.report.svg import PALETTE, Panel, Scale, esc, figure, fmt_ms, nice_log_bounds, num

__all__ = ["accuracy_figure", "group_figure"]

GROUP_FIGURE = (("ttft", PALETTE[5]), ("ttfvt", PALETTE[3]), ("e2e", PALETTE[0]))  # catalogue key, colour


def group_figure(tag: str, groups: dict[str, Any]) -> str | None:
    """Per group: TTFT, TTFVT, E2E as p50 bars with a whisker to p99, on a log axis."""
    names = list(groups)
    if not names:
        return None
    mets = tuple((k, INTERVAL[k].name, color) for k, color in GROUP_FIGURE)
    vals = [
        (g_i, m_i, (groups[n].get(k) or {}).get("p50"), (groups[n].get(k) or {}).get("p99"))
        for g_i, n in enumerate(names)
        for m_i, (k, _, _) in enumerate(mets)
    ]
    xs = [v for _, _, a, b in vals for v in (a, b) if v is not None and v > 0]
    if not xs:
        return None
    lo, hi = nice_log_bounds(min(xs), max(xs))
    bar = 9
    gh = bar * 3 + 12
    W, ph = 640, gh * len(names)
    left = 20 + min(max(len(str(n)) for n in names), 24) * 6.5
    x = Scale(lo, hi, 0, W - left - 20, log=True)
    y = Scale(0, len(names), 0, ph)
    p = Panel(x, y, left=left, top=30, width=W - left - 20, height=ph, title=f"Latency by {tag}: p50 (bar) to p99 (whisker)",
              xlabel="milliseconds (log scale)", yfmt=lambda v: "")  # fmt: skip
    marks = []
    for g_i, m_i, p50, p99 in vals:
        if p50 is None or p50 <= 0:
            continue
        yy = g_i * gh + 6 + m_i * bar
        x50 = x(p50)
        label, color = mets[m_i][1], mets[m_i][2]
        tip = f"{names[g_i]} {label}: p50 {fmt_ms(p50)}, p99 {fmt_ms(p99)}"
        w = (
            f'<line x1="{num(x50)}" x2="{num(x(p99))}" y1="{num(yy + bar / 2 - 0.5)}" y2="{num(yy + bar / 2 - 0.5)}" stroke="#333" stroke-width="1"/>'
            if p99
            else ""
        )
        marks.append(
            f'<g class="bar"><title>{esc(tip)}</title><rect x="0" y="{num(yy)}" width="{num(max(x50, 1))}" height="{bar - 1}" fill="{color}"/>{w}</g>'
        )
    p.raw("".join(marks))
    labels = "".join(
        f'<text x="{num(left - 6)}" y="{num(30 + g_i * gh + gh / 2 + 3)}" text-anchor="end" font-size="11" fill="#222">{esc(str(n)[:24])}</text>'
        for g_i, n in enumerate(names)
    )
    for _, lbl, c in mets:
        p.legend.append((lbl, c, "rect"))
    return figure(W, ph + 80, [p.render(), labels], title=f"Latency by {tag}", fig_id=f"by-{tag}")


def accuracy_figure(acc: dict[str, Any]) -> str | None:
    """Accuracy with its 95 % interval per dataset x budget (or per dataset / budget), 0..100 %."""
    rows: list[tuple[str, dict[str, Any]]] = []
    for ds, per in (acc.get("by_dataset_budget") or {}).items():
        rows += [(f"{ds} @ {b}", d) for b, d in per.items()]
    if not rows:
        rows = [(f"{k}", d) for sect in ("by_dataset", "by_budget") for k, d in (acc.get(sect) or {}).items()]
    if acc.get("overall"):
        rows.insert(0, ("overall", acc["overall"]))
    rows = [(n, d) for n, d in rows if d.get("accuracy") is not None]
    if not rows:
        return None
    W, rh = 640, 20
    left = 20 + min(max(len(n) for n, _ in rows), 28) * 6.3
    ph = rh * len(rows)
    x = Scale(0, 1, 0, W - left - 20)
    y = Scale(0, len(rows), 0, ph)
    p = Panel(x, y, left=left, top=30, width=W - left - 20, height=ph, title="Accuracy with 95 % confidence interval",
              xlabel="share correct", xfmt=lambda v: f"{v:.0%}", yfmt=lambda v: "")  # fmt: skip
    marks, labels = [], []
    for i, (n, d) in enumerate(rows):
        cy = (i + 0.5) * rh
        lo, hi = (d.get("ci95") or [None, None])[:2]
        tip = f"{n}: {d['accuracy']:.1%} of {d.get('n')} (95 % CI {_pct(lo)}–{_pct(hi)}), {d.get('truncated', 0)} truncated"
        ci = (
            f'<line x1="{num(x(lo))}" x2="{num(x(hi))}" y1="{num(cy)}" y2="{num(cy)}" stroke="#333" stroke-width="1.4"/>'
            if lo is not None and hi is not None
            else ""
        )
        marks.append(
            f'<g class="point"><title>{esc(tip)}</title>{ci}<circle cx="{num(x(d["accuracy"]))}" cy="{num(cy)}" r="4.5" fill="{PALETTE[2]}"/></g>'
        )
        labels.append(
            f'<text x="{num(left - 6)}" y="{num(30 + cy + 3.5)}" text-anchor="end" font-size="11" fill="#222">{esc(n[:28])}</text>'
        )
    p.raw("".join(marks))
    return figure(W, ph + 80, [p.render(), *labels], title="Accuracy", fig_id="accuracy")


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v:.0%}"
