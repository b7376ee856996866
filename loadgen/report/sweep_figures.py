"""Figures of a sweep: goodput and p99 latencies (from the intended start, else from the send) against the offered
rate, one line per burstiness (cv)."""

from __future__ import annotations

from typing import Any

import numpy as np

from loadgen.analysis.catalogue import metric_label
from loadgen.analysis.metrics import INTERVAL, twin_label
from loadgen.report.svg import (
    MUTED,
    PALETTE,
    Panel,
    Scale,
    empty_figure,
    figure,
    finite,
    nice_log_bounds,
    nice_max,
)
from loadgen.report.timeline import C_STRAG

__all__ = ["cell_key", "cell_label", "sweep_figures", "sweep_goodput_title"]


def cell_key(key: str, q: str = "p99") -> str:
    """A sweep cell's field for a latency quantile: p99_ttft_from_intended_ms (see loadgen.commands.sweep)."""
    return f"{q}_{key}_ms"


def cell_label(key: str, q: str = "p99", short: bool = False) -> str:
    """ "p99 TTFT from intended start (corrected)", or short: "p99 TTFT ms (from intended)"."""
    iv = INTERVAL[key]
    if short:
        return f"{q} {iv.name} ms ({'from intended' if iv.corrected else 'from send'})"
    return f"{q} {iv.name} {twin_label(iv)}"


def _latency_plot(key: str) -> tuple[str, list[tuple[str, str, str]], bool, str]:
    twin = INTERVAL[key].from_intended
    assert twin is not None
    cands = [(cell_key(k), cell_label(k), "ms (log scale)") for k in (twin, key)]
    return cell_key(key), cands, True, "bottom"


# file key (kept from the first sweeps: figures/sweep_<key>.svg), [(cell key, title, y label)] (the first key any
# cell has is plotted: older sweep.json files have no corrected TTFVT), log y, legend corner
SWEEP_PLOTS = (
    ("goodput_rps", [("goodput_rps", "", "")], False, "top-left"),
    _latency_plot("ttft"),
    _latency_plot("ttfvt"),
)
C_UNTRUSTED = "#222"
TIP_KEYS = (
    ("throughput", "throughput/s"),
    ("goodput_rps", f"{metric_label('goodput_rps')}/s"),
    (cell_key("ttft_from_intended"), cell_label("ttft_from_intended", short=True)),
    (cell_key("ttft"), cell_label("ttft", short=True)),
    (cell_key("ttfvt_from_intended"), cell_label("ttfvt_from_intended", short=True)),
    ("error_share", "error share"),
)


def sweep_goodput_title(slo_ms: dict[str, float] | None) -> tuple[str, str]:
    """Title and y label naming what the goodput figure plots: requests meeting the SLO, or (no --slo) every
    successful request."""
    from loadgen.report import words

    if slo_ms:
        return "Goodput (requests meeting the SLO)", f"requests/s with {words.slo(slo_ms)}"
    return "Successful requests (no --slo set: no goodput)", "successful requests/s"


def sweep_figures(cells: list[dict[str, Any]], slo_ms: dict[str, float] | None = None) -> dict[str, str]:
    """One figure per SWEEP_PLOTS entry; a line per cv over rate; saturated cells as hollow red rings, cells whose
    client check failed crossed out."""
    out: dict[str, str] = {}
    cvs = sorted({c.get("cv") for c in cells if c.get("cv") is not None})
    done = [c for c in cells if finite(c.get("rate")) is not None]
    W, H = 460, 300
    for name, candidates, logy, legend_at in SWEEP_PLOTS:
        key, title, ylabel = next(
            ((k, t, yl) for k, t, yl in candidates if any(finite(c.get(k)) is not None for c in done)),
            candidates[0],
        )
        if name == "goodput_rps":
            title, ylabel = sweep_goodput_title(slo_ms)
        pts = [(c, finite(c.get(key))) for c in done]
        pts = [(c, v) for c, v in pts if v is not None and (v > 0 or not logy)]
        fid = f"sweep-{name}"
        if not pts:
            out[f"sweep_{name}"] = empty_figure(
                W, H, "no completed cells with this metric", title=title, fig_id=fid
            )
            continue
        rates = [float(c["rate"]) for c in done]
        rlo, rhi = min(rates), max(rates)
        xlog = rlo > 0 and rhi / rlo >= 4
        x = Scale(rlo / 1.25, rhi * 1.25, 0, W - 80, log=True) if xlog else Scale(0, nice_max(rhi), 0, W - 80)
        vals = [v for _, v in pts]
        if name == "goodput_rps":
            vals += rates
        if logy:
            lo, hi = nice_log_bounds(min(vals), max(vals))
            y = Scale(lo, hi, H - 80, 0, log=True)
        else:
            y = Scale(0, nice_max(max(vals)), H - 80, 0)
        p = Panel(x, y, left=60, top=28, width=W - 80, height=H - 80, title=title, xlabel="offered rate, requests/s" + (" (log scale)" if xlog else ""), ylabel=ylabel)  # fmt: skip
        p.legend_at = legend_at
        if name == "goodput_rps":
            rr = np.array(sorted(set(rates)))
            p.line(rr, rr, color=MUTED, width=0.8, dash="2,3", label="= offered (ideal)")
        for i, cv in enumerate(cvs):
            row = sorted(((float(c["rate"]), v, c) for c, v in pts if c.get("cv") == cv), key=lambda t: t[0])
            if not row:
                continue
            color = PALETTE[i % len(PALETTE)]
            xs_, ys_ = [r[0] for r in row], [r[1] for r in row]
            p.line(xs_, ys_, color=color, label=f"cv {cv:g}")
            p.points(xs_, ys_, color=color, r=3.2, titles=[_cell_tip(c) for _, _, c in row])
            sat = [(r, v, c) for r, v, c in row if c.get("saturated")]
            if sat:
                p.points([s[0] for s in sat], [s[1] for s in sat], color=C_STRAG, r=7, hollow=True,
                         titles=[_cell_tip(c) for _, _, c in sat])  # fmt: skip
            bad = [(r, v, c) for r, v, c in row if c.get("trustworthy") is False]
            if bad:
                p.points([s[0] for s in bad], [s[1] for s in bad], color=C_UNTRUSTED, r=5.5, shape="cross",
                         titles=[_cell_tip(c) for _, _, c in bad])  # fmt: skip
        if any(c.get("saturated") for c, _ in pts):
            p.legend.append(("saturated", C_STRAG, "hollow"))
        if any(c.get("trustworthy") is False for c, _ in pts):
            p.legend.append(("client check failed", C_UNTRUSTED, "cross"))
        out[f"sweep_{name}"] = figure(W, H, [p.render()], title=title, fig_id=fid)
    return out


def _cell_tip(c: dict[str, Any]) -> str:
    bits = [f"rate {c.get('rate')}/s, cv {c.get('cv')}: {c.get('status')}"]
    for k, lbl in TIP_KEYS:
        v = finite(c.get(k))
        if v is not None:
            bits.append(f"{lbl} {v:,.4g}")
    if c.get("saturated"):
        bits.append(f"SATURATED: {c.get('reason') or ''}")
    if c.get("trustworthy") is False:
        bits.append(
            "CLIENT CHECK FAILED: " + ("; ".join(c.get("client_check_reasons") or []) or "see summary.json")
        )
    return "\n".join(bits)
