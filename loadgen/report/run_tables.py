"""The run page's tables of what surrounds the latencies: the server's own view (scraped /metrics), the
per-dataset / per-budget groups with accuracy, and the stragglers with their verdicts."""

from __future__ import annotations

from typing import Any

import orjson

from loadgen.analysis.catalogue import GROUP_LATENCIES, latency_column
from loadgen.records.files import get
from loadgen.report import words
from loadgen.report.group_figures import accuracy_figure, group_figure
from loadgen.report.page import cell, fig_block, fmt, table
from loadgen.report.svg import esc
from loadgen.scrape.summary import format_bucket

__all__ = ["groups_section", "server_section", "straggler_section"]


def server_section(summary: dict[str, Any]) -> str:
    srv = summary.get("server")
    head = '<h2 id="server">Server (scraped /metrics)</h2>'
    if not srv:
        return head + '<p class="note">No server metrics in this run.</p>'
    if "error" in srv:
        return head + f'<p class="note">Server metrics could not be summarised: {esc(srv["error"])}</p>'
    rows = []
    kv = srv.get("kv_cache_usage") or {}
    for k in ("mean", "p50", "p99", "max"):
        if k in kv:
            rows.append(
                f"<tr><td>KV-cache usage {k}</td>{cell(kv[k], f'server.kv_cache_usage.{k}', 'pct')}</tr>"
            )
    if "time_above_90pct_s" in kv:
        rows.append(
            f"<tr><td>time with KV above 90 % (s)</td>{cell(kv['time_above_90pct_s'], 'server.kv_cache_usage.time_above_90pct_s')}</tr>"
        )
    for key, label in (("num_running", "running requests"), ("num_waiting", "waiting requests")):
        for k in ("mean", "max"):
            v = get(srv, key, k)
            if v is not None:
                rows.append(f"<tr><td>{label} {k}</td>{cell(v, f'server.{key}.{k}')}</tr>")
    if srv.get("preemptions") is not None:
        rows.append(f"<tr><td>preemptions</td>{cell(srv['preemptions'], 'server.preemptions')}</tr>")
    hr = get(srv, "prefix_cache", "hit_rate")
    if hr is not None:
        rows.append(
            f"<tr><td>prefix-cache hit rate</td>{cell(hr, 'server.prefix_cache.hit_rate', 'pct')}</tr>"
        )
    for k in ("prompt_per_s", "generation_per_s"):
        v = get(srv, "tokens", k)
        if v is not None:
            rows.append(
                f"<tr><td>server {k.replace('_per_s', '')} tokens/s</td>{cell(v, f'server.tokens.{k}')}</tr>"
            )
    sd = srv.get("spec_decode") or {}
    if sd.get("acceptance_rate") is not None:
        rows.append(
            f"<tr><td>speculative acceptance</td>{cell(sd['acceptance_rate'], 'server.spec_decode.acceptance_rate', 'pct')}</tr>"
        )
    rows += _gpu_rows(srv.get("gpu") or {})
    lat_rows = []
    for key, d in (srv.get("latency_s") or {}).items():
        if isinstance(d, dict) and d.get("count"):
            lat_rows.append(
                f"<tr><td>{esc(key)}</td>{cell(d.get('count'), f'server.latency_s.{key}.count')}"
                + cell(None if d.get("mean") is None else d["mean"] * 1000, f"server.latency_s.{key}.mean")
                + "".join(_bucket_cell(d.get(c), f"server.latency_s.{key}.{c}") for c in ("p50", "p90", "p99"))
                + "</tr>"
            )  # fmt: skip
    lat = (
        "<h3>The server's own latency histograms (ms)</h3>"
        '<p class="note" id="server-buckets">A histogram only knows which bucket each observation fell in, so '
        "each quantile is shown as the bucket that holds it (≤ the first bound, lower–upper, or &gt; the last "
        "bound), never as an interpolated point; the mean (sum / count) is exact.</p>"
        + table(["metric", "count", "mean", "p50", "p90", "p99"], lat_rows)
        if lat_rows
        else ""
    )
    notes = "".join(f"<li>{esc(n)}</li>" for n in srv.get("notes") or [])
    engine = srv.get("engine")
    eng = (
        f'<p class="note">Engine: {esc(words.counts(engine))}</p>'
        if isinstance(engine, dict) and engine
        else ""
    )
    return (
        head
        + f'<p class="note">Dialect {esc(srv.get("dialect", "?"))}, {esc(fmt(srv.get("samples_in_window")))} scrapes '
        "inside the measured window; time-weighted statistics.</p>"
        + f'<table class="kv">{"".join(rows)}</table>'
        + lat
        + _engine_timings(summary.get("engine_timings"))
        + eng
        + (f'<ul class="note">{notes}</ul>' if notes else "")
    )


GPU_ROWS = (("gpu_utilization", "GPU utilisation", "pct", 1.0), ("gpu_memory_used_bytes", "GPU memory (GiB)", "", 2**-30),
            ("gpu_power_watts", "GPU power (W)", "", 1.0), ("gpu_sm_clock_mhz", "GPU SM clock (MHz)", "", 1.0))  # fmt: skip


def _gpu_rows(gpu: dict[str, Any]) -> list[str]:
    """The GPU readings beside the scrapes (loadgen.scrape.gpu), mean and max over the window."""
    rows = []
    for name, label, kind, scale in GPU_ROWS:
        for k in ("mean", "max"):
            v = get(gpu, name, k)
            if v is not None:
                rows.append(f"<tr><td>{label} {k}</td>{cell(v * scale, f'server.gpu.{name}.{k}', kind)}</tr>")
    return rows


def _engine_timings(et: Any) -> str:
    """llama.cpp's own timings beside the client's (loadgen.analysis.engine_timings), as a small table."""
    if not isinstance(et, dict):
        return ""
    rows = []
    for key, label in (("ttft_minus_prompt_ms", "client TTFT − server prompt_ms"),
                       ("tpot_minus_server_ms", "client TPOT − server ms/token")):  # fmt: skip
        d = et.get(key) or {}
        rows.append(f"<tr><td>{label}</td>" + "".join(cell(d.get(q), f"engine_timings.{key}.{q}")
                                                       for q in ("p5", "p50", "p95", "mean")) + "</tr>")  # fmt: skip
    share = get(et, "tokens", "equal_share")
    return (
        "<h3>The engine's own timings beside the client's (ms)</h3>"
        f'<p class="note">{esc(fmt(et.get("requests")))} requests; completion tokens equal to the engine\'s count: '
        f"{esc(fmt(share, 'pct'))}.</p>" + table(["difference", "p5", "p50", "p95", "mean"], rows)
    )


def _bucket_cell(b: Any, key: str) -> str:
    """A server quantile as its histogram bucket; data-value keeps the bounds in seconds as JSON."""
    raw = orjson.dumps(b).decode() if b is not None else ""
    text = format_bucket(b, unit="") if isinstance(b, dict) else "–"
    return f'<td class="num" data-key="{esc(key)}" data-value="{esc(raw)}">{esc(text.strip())}</td>'


def groups_section(summary: dict[str, Any], figs: dict[str, str]) -> str:
    groups = summary.get("groups") or {}
    acc = summary.get("accuracy")
    if not groups and not acc:
        return ""
    out = ['<h2 id="groups">Per dataset and per token budget</h2>']
    for tag, gs in groups.items():
        rows = []
        for name, g in gs.items():
            p = f"groups.{tag}.{name}"
            rows.append(
                f"<tr><td>{esc(name)}</td>{cell(g.get('ok'), p + '.ok')}{cell(g.get('requests'), p + '.requests')}"
                f"{cell(g.get('truncated'), p + '.truncated')}{cell(g.get('mean_output_tokens'), p + '.mean_output_tokens')}"
                f"{cell(g.get('mean_reasoning_tokens'), p + '.mean_reasoning_tokens')}"
                + "".join(cell(get(g, k, q), f"{p}.{k}.{q}") for k, q in GROUP_LATENCIES)
                + "</tr>"
            )  # fmt: skip
        out.append(f"<h3>Latency by {esc(tag)} (ms)</h3>")
        out.append(table([tag, "ok", "n", "truncated", "mean output tok", "mean reasoning tok",
                          *(latency_column(k, q) for k, q in GROUP_LATENCIES)], rows))  # fmt: skip
        fig = group_figure(tag, gs)
        if fig:
            figs[f"by_{tag}"] = fig
            out.append(
                fig_block(fig, "Bars: p50; whiskers reach p99. A log scale, so long tails stay readable.")
            )
    if acc:
        out.append(_accuracy_html(acc, figs))
    return "".join(out)


def _accuracy_html(acc: dict[str, Any], figs: dict[str, str]) -> str:
    rows = []

    def row(label: str, d: dict[str, Any], key: str) -> str:
        ci = d.get("ci95") or [None, None]
        return (
            f"<tr><td>{esc(label)}</td>{cell(d.get('n'), key + '.n')}{cell(d.get('correct'), key + '.correct')}"
            f"{cell(d.get('accuracy'), key + '.accuracy', 'pct')}<td class=\"num\">{esc(fmt(ci[0], 'pct'))} – {esc(fmt(ci[1], 'pct'))}</td>"
            f"{cell(d.get('truncated'), key + '.truncated')}{cell(d.get('accuracy_untruncated'), key + '.accuracy_untruncated', 'pct')}"
            f"{cell(d.get('errors'), key + '.errors')}</tr>"
        )  # fmt: skip

    if acc.get("overall"):
        rows.append(row("overall", acc["overall"], "accuracy.overall"))
    for sect, prefix in (("by_dataset", "dataset"), ("by_domain", "domain"), ("by_budget", "budget")):
        for name, d in (acc.get(sect) or {}).items():
            rows.append(row(f"{prefix} = {name}", d, f"accuracy.{sect}.{name}"))
    for ds, per in (acc.get("by_dataset_budget") or {}).items():
        for b, d in per.items():
            rows.append(row(f"{ds} @ {b} tokens", d, f"accuracy.by_dataset_budget.{ds}.{b}"))
    note = f'<div class="verdict info">{esc(acc["note"])}</div>' if acc.get("note") else ""
    fig = accuracy_figure(acc)
    if fig:
        figs["accuracy"] = fig
    return (
        "<h3>Accuracy</h3>"
        + note
        + f'<p class="note">Checker: {esc(acc.get("checker", "?"))}. 95 % confidence intervals (Wilson). '
        "“truncated” answers hit max_tokens; “acc. untruncated” leaves them out.</p>"
        + table(
            ["group", "n", "correct", "accuracy", "95 % CI", "truncated", "acc. untruncated", "errors"], rows
        )
        + (fig_block(fig) if fig else "")
    )


def straggler_section(summary: dict[str, Any]) -> str:
    st = get(summary, "metrics", "stragglers") or {}
    head = '<h2 id="stragglers">Stragglers</h2>'
    if not st:
        return head + '<p class="note">No straggler analysis.</p>'
    intro = (
        f'<p class="note">A straggler is a request whose E2E exceeds {esc(st.get("rule", ""))} '
        f"(threshold {esc(fmt(st.get('threshold_ms')))} ms). <b>{esc(fmt(st.get('count')))}</b> stragglers: "
        f"{esc(fmt(st.get('share_of_requests'), 'pct'))} of requests, "
        f"{esc(fmt(st.get('share_of_output_tokens'), 'pct'))} of output tokens, and "
        f"{esc(fmt(st.get('makespan_share'), 'pct'))} of the makespan (the run would have ended "
        f"{esc(fmt(st.get('makespan_s')))} s → {esc(fmt(st.get('makespan_without_stragglers_s')))} s without them). "
        "The verdict reads the server's state during each request's life (preempted, queued behind others, "
        "busy server, or long on an unloaded server).</p>"
    )
    expl = {e.get("index"): e for e in summary.get("straggler_explanations") or []}
    rows = []
    for s in st.get("requests") or []:
        e = expl.get(s.get("index"), {})
        tags = ", ".join(f"{k}={v}" for k, v in (s.get("tags") or {}).items())
        rows.append(
            f"<tr><td>#{esc(s.get('index'))}</td>{cell(s.get('e2e_ms'))}{cell(s.get('ttft_ms'))}{cell(s.get('ttfvt_ms'))}"
            f"{cell(s.get('completion_tokens'))}{cell(s.get('reasoning_tokens'))}<td>{esc(s.get('finish_reason') or '–')}</td>"
            f"<td><b>{esc(e.get('verdict', '–'))}</b></td>{cell(e.get('kv_mean'), kind='pct')}{cell(e.get('waiting_mean'))}"
            f"{cell(e.get('preemptions'))}<td>{esc(tags)}</td></tr>"
        )  # fmt: skip
    if not rows:
        return head + intro
    listed = len(rows)
    more = f" (the {listed} slowest listed)" if st.get("count", 0) > listed else ""
    return (
        head
        + intro
        + f"<h3>Stragglers{esc(more)}</h3>"
        + table(
            [
                "request",
                "E2E ms",
                "TTFT ms",
                "TTFVT ms",
                "output tok",
                "reasoning tok",
                "finish",
                "verdict",
                "KV mean",
                "waiting mean",
                "preemptions during",
                "tags",
            ],
            rows,
        )  # fmt: skip
    )
