"""The timeline of a run: every request as a bar over time (wait, reasoning, answer), and under it, on the same
axis, the server's state (KV cache, running and waiting requests, preemptions) and the output throughput.

Sizes stay bounded whatever the run's size: at most ``TIMELINE_MAX`` requests are drawn (every straggler and failure
kept, the rest evenly thinned), and a time series has at most one min/max pair per pixel column (``TIME_BUCKETS``),
so spikes survive downsampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from loadgen.analysis.metrics import INTERVAL, interval_ms, reasoning_tokens
from loadgen.report.run_data import RunRequests, ServerSeries
from loadgen.report.svg import PALETTE, Panel, Scale, esc, figure, fmt_ms, nice_max, num

__all__ = [
    "C_STRAG",
    "TIME_BUCKETS",
    "TimelineInfo",
    "bucket_minmax",
    "draw_series",
    "select_timeline",
    "timeline_figure",
]

NS = 1e9
TIMELINE_MAX = 2000
TIME_BUCKETS = 900

# lifecycle colours of the timeline
C_WAIT = "#bdbdbd"  # intended start -> first token (client lateness, queue, server queue + prefill)
C_REASON = "#CC79A7"  # reasoning phase
C_ANSWER = "#0072B2"  # answer phase
C_STRAG = "#D55E00"
C_FAIL = "#000000"
TIP_LATENCIES = ("ttft", "ttft_from_intended", "ttfvt", "e2e", "e2e_from_intended", "send_lag", "queue_wait")


def bucket_minmax(t: np.ndarray, v: np.ndarray, t0: float, t1: float, n: int = TIME_BUCKETS) -> tuple:
    """Per time bucket: (centre, min, max) of the samples inside; buckets without samples are dropped."""
    width = (t1 - t0) / n if t1 > t0 else 1.0
    b = np.clip(((t - t0) / width).astype(np.int64), 0, n - 1)
    mn = np.full(n, np.inf)
    mx = np.full(n, -np.inf)
    np.minimum.at(mn, b, v)
    np.maximum.at(mx, b, v)
    have = np.isfinite(mn)
    centres = t0 + (np.arange(n) + 0.5) * width
    return centres[have], mn[have], mx[have]


@dataclass
class TimelineInfo:
    drawn: int
    total: int
    stragglers: int
    failed: int
    downsampled_series: list[str]
    bucket_s: float


def select_timeline(req: RunRequests, straggler: np.ndarray, cap: int = TIMELINE_MAX) -> np.ndarray:
    """Indices (positions) to draw: every straggler and failure first, then evenly spaced others."""
    n = len(req)
    if n <= cap:
        return np.arange(n)
    special = np.flatnonzero(straggler | ~req.ok)
    if special.size >= cap:
        e2e = interval_ms(req, "e2e_from_intended")[special]
        special = special[np.argsort(-np.nan_to_num(e2e, nan=np.inf))[:cap]]
        return np.sort(special)
    rest = np.setdiff1d(np.arange(n), special, assume_unique=True)
    take = rest[np.linspace(0, rest.size - 1, cap - special.size).round().astype(np.int64)]
    return np.sort(np.concatenate((special, np.unique(take))))


def _request_bar(
    req: RunRequests,
    i: int,
    y: float,
    bar_h: float,
    xs: Scale,
    straggler: np.ndarray,
    lat: dict[str, np.ndarray],
    verdicts: dict[int, str],
) -> str:
    """One request's bar: waiting, reasoning, answer; outlined when a straggler or failed; its tooltip."""
    T = req.t
    ti = T["intended_ns"][i]
    ft = T["first_token_ns"][i]
    fr = T["first_reasoning_ns"][i]
    fc = T["first_content_ns"][i]
    end = T["end_ns"][i]
    segs = []
    wait_end = ft if math.isfinite(ft) else end
    if math.isfinite(ti) and math.isfinite(wait_end):
        segs.append((ti, wait_end, C_WAIT))
    if math.isfinite(fr):
        r_end = fc if math.isfinite(fc) else (end if math.isfinite(end) else T["last_token_ns"][i])
        segs.append((fr, r_end, C_REASON))
    if math.isfinite(fc) and math.isfinite(end):
        segs.append((fc, end, C_ANSWER))
    elif math.isfinite(ft) and not math.isfinite(fr) and math.isfinite(end):
        segs.append((ft, end, C_ANSWER))
    parts = []
    for a, b, c in segs:
        if not (math.isfinite(a) and math.isfinite(b)):
            continue
        xa, xb = xs(a / NS), xs(b / NS)
        parts.append(
            f'<rect x="{num(xa)}" y="{num(y)}" width="{num(max(xb - xa, 0.6))}" height="{num(bar_h)}" fill="{c}"/>'
        )
    is_s = bool(straggler[i])
    failed = not req.ok[i]
    if is_s or failed:
        xe = xs((end if math.isfinite(end) else ti) / NS)
        color = C_STRAG if is_s else C_FAIL
        parts.append(
            f'<rect x="{num(xs(ti / NS) - 1)}" y="{num(y - 0.8)}" width="{num(max(xe - xs(ti / NS), 0.6) + 2)}"'
            f' height="{num(bar_h + 1.6)}" fill="none" stroke="{color}" stroke-width="1.2"/>'
        )
    # intended start tick
    parts.append(f'<rect x="{num(xs(ti / NS))}" y="{num(y)}" width="0.8" height="{num(bar_h)}" fill="#333"/>')
    tip = _request_tip(req, lat, i, is_s, verdicts.get(int(req.index[i])))
    cls = "req straggler" if is_s else "req failed" if failed else "req"
    return f'<g class="{cls}" data-index="{int(req.index[i])}"><title>{esc(tip)}</title>{"".join(parts)}</g>'


def _server_panels(
    server: ServerSeries,
    xs: Scale,
    left: float,
    pw: float,
    top: float,
    span: tuple[float, float],
    downsampled: list[str],
) -> tuple[list[Panel], float]:
    """The server's state under the requests (KV usage, running and waiting, preemptions) on the same x axis;
    the panels and the height they take."""
    panels: list[Panel] = []
    ph = 92
    if server.empty:
        return panels, top
    t_lo, t_hi = span
    # KV cache
    if server.kv.size:
        kp = Panel(xs, Scale(0, 1, ph, 0), left=left, top=top + 18, width=pw, height=ph,
                   title="KV-cache usage (server)", yfmt=lambda v: f"{v:.0%}", show_xticks=False)  # fmt: skip
        draw_series(kp, server.kv_t, server.kv, t_lo, t_hi, PALETTE[2], "KV usage", downsampled)
        kp.hline(0.9, text="90%")
        panels.append(kp)
        top += ph + 30
    if server.gpu.size:  # NVML readings on the same ticks (loadgen.scrape.gpu)
        gp = Panel(xs, Scale(0, 1, ph, 0), left=left, top=top + 18, width=pw, height=ph,
                   title="GPU utilisation (NVML, mean over GPUs)", yfmt=lambda v: f"{v:.0%}", show_xticks=False)  # fmt: skip
        draw_series(gp, server.gpu_t, server.gpu, t_lo, t_hi, PALETTE[3], "GPU busy", downsampled)
        panels.append(gp)
        top += ph + 30
    if server.running.size or server.waiting.size:
        vmax = nice_max(float(max(server.running.max(initial=0), server.waiting.max(initial=0), 1)))
        rp = Panel(xs, Scale(0, vmax, ph, 0), left=left, top=top + 18, width=pw, height=ph,
                   title="Requests running and waiting (server)", show_xticks=False)  # fmt: skip
        draw_series(rp, server.running_t, server.running, t_lo, t_hi, PALETTE[0], "running", downsampled)
        draw_series(rp, server.waiting_t, server.waiting, t_lo, t_hi, PALETTE[4], "waiting", downsampled)
        panels.append(rp)
        top += ph + 30
    if server.preempt.size > 1:
        dt = np.diff(server.preempt)
        tt = server.preempt_t[1:]
        keep = (dt > 0) & (tt >= t_lo) & (tt <= t_hi)
        tt, dt = tt[keep], dt[keep]
        if tt.size > TIME_BUCKETS:
            c, _, _ = bucket_minmax(tt, dt, t_lo, t_hi)
            sums = _bucket_sum(tt, dt, t_lo, t_hi)
            tt, dt = c, sums[sums > 0]
            downsampled.append("preemptions")
        vmax = nice_max(float(dt.max(initial=1)))
        pp = Panel(xs, Scale(0, vmax, 56, 0), left=left, top=top + 18, width=pw, height=56,
                   title=f"Preemptions (server counter, increase per scrape; total {server.preempt[-1] - server.preempt[0]:,.0f})",
                   show_xticks=False)  # fmt: skip
        stems = "".join(
            f'<line x1="{num(xs(a / NS))}" x2="{num(xs(a / NS))}" y1="56" y2="{num(pp.y(b))}" stroke="{PALETTE[4]}" stroke-width="1"/>'
            for a, b in zip(tt, dt, strict=True)
        )
        pp.raw(stems)
        pp.points(tt / NS, dt, color=PALETTE[4], r=2.6, shape="triangle",
                  titles=[f"t={a / NS:,.1f} s: +{b:g} preemptions" for a, b in zip(tt, dt, strict=True)])  # fmt: skip
        panels.append(pp)
        top += 56 + 30
    return panels, top


def _throughput_panel(
    req: RunRequests, server: ServerSeries, xs: Scale, left: float, pw: float, top: float, t1: float
) -> tuple[Panel | None, float]:
    """Output tokens/s as loadgen received them (chunk times) and as the server's counter says, in the same
    buckets; None where neither has a value."""
    ph = 92
    bucket_ns = req.tok_bin_ns
    tp = None
    rec_t = (np.arange(req.tok_bins.size) + 0.5) * bucket_ns
    rec_v = req.tok_bins / (bucket_ns / NS)
    keep = rec_t <= t1 + bucket_ns
    rec_t, rec_v = rec_t[keep], rec_v[keep]
    srv_t = srv_v = np.empty(0)
    if server.gen.size > 1:
        d = np.diff(server.gen)
        dt = np.diff(server.gen_t)
        tt = server.gen_t[1:]
        sums = np.bincount((tt // bucket_ns).astype(np.int64), weights=d)
        spans = np.bincount((tt // bucket_ns).astype(np.int64), weights=dt)
        have = spans > 0
        srv_t = (np.flatnonzero(have) + 0.5) * bucket_ns
        srv_v = sums[have] / (spans[have] / NS)
        k2 = srv_t <= t1 + bucket_ns
        srv_t, srv_v = srv_t[k2], srv_v[k2]
    if rec_v.size or srv_v.size:
        vmax = nice_max(float(max(rec_v.max(initial=0), srv_v.max(initial=0), 1)))
        tp = Panel(xs, Scale(0, vmax, ph, 0), left=left, top=top + 18, width=pw, height=ph,
                   title=f"Output throughput, tokens/s (averaged per {bucket_ns / NS:g} s)", xlabel="seconds since the run started",
                   )  # fmt: skip
        if rec_v.size:
            tp.line(
                rec_t / NS, rec_v, color=PALETTE[0], label="received by loadgen (stream chunks)", step=False
            )
        if srv_v.size:
            tp.line(srv_t / NS, srv_v, color=PALETTE[1], dash="5,3", label="generated by server (counter)")
        top += ph + 46
    return tp, top


def timeline_figure(
    req: RunRequests,
    server: ServerSeries,
    straggler_threshold_ms: float | None,
    verdicts: dict[int, str],
    *,
    cap: int = TIMELINE_MAX,
) -> tuple[str, TimelineInfo]:
    """Every request as a bar (wait, reasoning, answer) over time, and under it the server's state, one x axis."""
    W = 1060
    left, right = 64, 16
    pw = W - left - right
    n = len(req)
    lat = {key: interval_ms(req, key) for key in TIP_LATENCIES}
    lat["reasoning_tokens"] = reasoning_tokens(req)
    e2e_send = lat["e2e"]  # the straggler rule's E2E (loadgen.analysis.metrics.stragglers)
    thr = straggler_threshold_ms if straggler_threshold_ms is not None else math.inf
    straggler = req.measured_ok & (np.nan_to_num(e2e_send, nan=-1) > thr)
    sel = select_timeline(req, straggler, cap)
    order = sel[np.argsort(req.t["intended_ns"][sel], kind="stable")]
    t0 = 0.0
    ends = (
        np.concatenate([req.t[k][np.isfinite(req.t[k])] for k in ("end_ns", "intended_ns")])
        if n
        else np.zeros(1)
    )
    t1 = float(ends.max()) if ends.size else 1.0
    t1 = max(t1, 1e6)
    xs = Scale(t0 / NS, t1 / NS, 0, pw)
    rows = len(order)
    th = float(min(440, max(140, rows * 7)))
    row_h = th / max(rows, 1)
    bar_h = max(min(row_h * 0.78, 9.0), 0.7)
    ys = Scale(0, max(rows, 1), 0, th)
    p = Panel(xs, ys, left=left, top=44, width=pw, height=th, title="Requests over time (one row per request, in order of intended start)",
              ylabel="request (by start)", show_xticks=False, yfmt=lambda v: f"{int(v)}")  # fmt: skip
    marks = [
        _request_bar(req, i, ys(row + 0.5) - bar_h / 2, bar_h, xs, straggler, lat, verdicts)
        for row, i in enumerate(order)
    ]
    p.raw("".join(marks))
    body = [p.render(), _timeline_legend(left, 12, pw)]
    top = 44 + th + 14
    downsampled: list[str] = []
    panels, top = _server_panels(server, xs, left, pw, top, (t0, t1), downsampled)
    tp, top = _throughput_panel(req, server, xs, left, pw, top, t1)
    if tp is not None:
        panels.append(tp)
    else:
        p.show_xticks = True
        p.xlabel = "seconds since the run started"
        top += 20
    for q in panels:
        body.append(q.render())
    height = top + 8
    # crosshair target: the page's script draws a vertical line across all panels at the pointer
    body.append(
        f'<rect class="xhair-zone" x="{left}" y="44" width="{pw}" height="{num(height - 44)}" fill="none"'
        f' data-t0="{t0 / NS}" data-t1="{t1 / NS}" pointer-events="none"/>'
    )
    info = TimelineInfo(
        len(order),
        n,
        int(straggler.sum()),
        int((~req.ok).sum()),
        sorted(set(downsampled)),
        req.tok_bin_ns / NS,
    )
    return figure(W, height, body, title="Timeline of requests and server state", fig_id="timeline"), info


def _bucket_sum(t: np.ndarray, v: np.ndarray, t0: float, t1: float, n: int = TIME_BUCKETS) -> np.ndarray:
    width = (t1 - t0) / n if t1 > t0 else 1.0
    b = np.clip(((t - t0) / width).astype(np.int64), 0, n - 1)
    return np.bincount(b, weights=v, minlength=n)


def draw_series(
    p: Panel, t: np.ndarray, v: np.ndarray, t0: float, t1: float, color: str, label: str, ds: list[str]
) -> None:
    """A gauge as a step line; with more samples than pixels, a min/max band per pixel column instead."""
    keep = (t >= t0 - 1) & (t <= t1 + 1)
    t, v = t[keep], v[keep]
    if t.size == 0:
        return
    if t.size > 2 * TIME_BUCKETS:
        c, mn, mx = bucket_minmax(t, v, t0, t1)
        p.area(c / NS, mn, mx, color=color, opacity=0.45)
        p.line(c / NS, (mn + mx) / 2, color=color, width=0.8, label=f"{label} (min–max per pixel)")
        ds.append(label)
    else:
        p.line(t / NS, v, color=color, step=True, label=label)


def _timeline_legend(left: float, y: float, width: float) -> str:
    items = [
        ("rect", C_WAIT, "waiting for the first token (from intended start)"),
        ("rect", C_REASON, "reasoning"),
        ("rect", C_ANSWER, "answer"),
        ("box", C_STRAG, "straggler"),
        ("box", C_FAIL, "failed"),
    ]
    out, x = [], left
    for kind, color, label in items:
        if kind == "rect":
            out.append(f'<rect x="{num(x)}" y="{y - 8}" width="14" height="9" fill="{color}"/>')
        else:
            out.append(
                f'<rect x="{num(x)}" y="{y - 8}" width="14" height="9" fill="none" stroke="{color}" stroke-width="1.5"/>'
            )
        out.append(f'<text x="{num(x + 18)}" y="{y}" font-size="10.5" fill="#222">{esc(label)}</text>')
        x += 18 + len(label) * 5.9 + 16
    return "".join(out)


def _request_tip(
    req: RunRequests, lat: dict[str, np.ndarray], i: int, straggler: bool, verdict: str | None
) -> str:
    def d(key: str) -> str:
        return fmt_ms(float(lat[key][i]))

    head = f"request #{int(req.index[i])}"
    if not req.ok[i]:
        head += f" — FAILED ({req.error_kind.value(i) or 'error'})"
    elif straggler:
        head += " — STRAGGLER" + (f": {verdict}" if verdict else "")
    if req.warmup[i]:
        head += " (warm-up, not in the statistics)"
    n = req.n
    tok = (
        f"{_int(n['prompt_tokens'][i])} prompt / {_int(n['completion_tokens'][i])} output tokens "
        f"({_int(float(lat['reasoning_tokens'][i]))} reasoning)"
    )
    tags = ", ".join(
        f"{k}={v}" for k, v in req.tags_of(i).items() if k in ("dataset", "budget", "difficulty")
    )
    queue = float(lat["queue_wait"][i])
    finish = req.finish.value(i)
    name = {k: INTERVAL[k].name for k in TIP_LATENCIES}
    lines = [
        head,
        f"intended start {req.t['intended_ns'][i] / NS:,.3f} s, {INTERVAL['send_lag'].label} {d('send_lag')}"
        + (f", queue wait {fmt_ms(queue)}" if queue else ""),
        f"{name['ttft']} {d('ttft')} (from intended {d('ttft_from_intended')})",
        f"{name['ttfvt']} {d('ttfvt')}, {name['e2e']} {d('e2e')} (from intended {d('e2e_from_intended')})",
        tok + (f", finish {finish}" if finish else ""),
    ]
    if tags:
        lines.append(tags)
    return "\n".join(lines)


def _int(v: float) -> str:
    return f"{int(v):,}" if math.isfinite(v) else "-"
