"""``report.html`` of one run: verdicts, configuration, every metric, the latency distributions and the timeline,
the server's state, groups, accuracy and stragglers; ``figures/*.svg`` beside it (the main figures as standalone
vector files, for papers).

``write_run_report(result_dir)`` reads ``summary.json``, ``requests.jsonl`` and ``server_metrics.jsonl`` (see
:mod:`loadgen.report.run_data`: large runs stay quick to write and to open, and the page says which reductions were
applied); a run that has just read ``requests.jsonl`` for its summary passes those columns instead. Latency rows, their labels and meanings come from the catalogue (:data:`loadgen.analysis.metrics.INTERVALS`).
"""

from __future__ import annotations

import math
import time
from html import escape
from pathlib import Path
from typing import Any

import orjson

from loadgen.analysis.metrics import INTERVAL, INTERVALS
from loadgen.records.columns import RequestColumns
from loadgen.records.files import REPORT_HTML, REQUESTS, SERVER_METRICS, get, read_summary
from loadgen.report import words
from loadgen.report.distributions import EXACT_CDF_MAX, ITL_BINS_PER_DECADE, run_cdfs
from loadgen.report.page import (
    FIGURES_DIR,
    cell,
    fig_block,
    fmt,
    page,
    table,
    write_figures,
)
from loadgen.report.run_data import RunRequests, ServerSeries, read_requests, read_server, run_requests
from loadgen.report.run_tables import groups_section, server_section, straggler_section
from loadgen.report.svg import esc
from loadgen.report.timeline import TIME_BUCKETS, TimelineInfo, timeline_figure
from loadgen.report.turn_figures import turns_section

__all__ = ["write_run_report"]

LAT_COLS = ("count", "mean", "p50", "p90", "p95", "p99", "p99_9", "max")


def _bucket_ns(summary: dict[str, Any]) -> int:
    """Throughput bucket: at least the scrape interval, at most ~TIME_BUCKETS buckets over the run; a round value."""
    end_ns = get(summary, "metrics", "window", "end_ns") or 0
    interval = get(summary, "config", "scrape", "interval_s") or 0.5
    raw = max(float(interval), end_ns / 1e9 / 300, 0.05)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw * (1 - 1e-9))
    return int(round(step * 1e9))


PARALLEL_BYTES = 32_000_000


def _read_run(
    out: Path, bucket_ns: int, columns: RequestColumns | None = None
) -> tuple[RunRequests | None, ServerSeries]:
    """Both files in one pass each (requests.jsonl not at all where the run's own ``columns`` serve); a big scrape
    file is read in a forked process while requests are read here."""
    rpath, spath = out / REQUESTS, out / SERVER_METRICS
    req = run_requests(columns, bucket_ns) if columns is not None else None
    if req is not None or not rpath.is_file():
        return req, read_server(spath)
    pool = None
    fut = None
    if spath.is_file() and rpath.is_file() and spath.stat().st_size > PARALLEL_BYTES:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        try:
            pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
            fut = pool.submit(read_server, spath)
        except (OSError, ValueError):  # no fork here: read one after the other
            pool = None
    try:
        req = read_requests(rpath, bucket_ns)
        server = fut.result() if fut is not None else read_server(spath)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return req, server


def write_run_report(result_dir: Path | str, columns: RequestColumns | None = None) -> Path:
    """Write ``result_dir/report.html`` and ``result_dir/figures/*.svg``; return the report's path. ``columns``:
    requests.jsonl as the run read it for its summary (see :func:`loadgen.report.run_data.run_requests`), so the
    file is not read again."""
    out = Path(result_dir)
    summary = read_summary(out, "not a loadgen results folder, or the run did not finish")
    started = time.perf_counter()
    m = summary.get("metrics") or {}
    req, server = _read_run(out, _bucket_ns(summary), columns)

    figs: dict[str, str] = {}
    notes: list[str] = []
    sections: list[str] = []
    sections.append(_header(summary, out))
    sections.append(_glance(summary))
    sections.append(_config_section(summary))
    if summary.get("senders"):  # --workers / --ray: which sender ran where, and its own self-check
        from loadgen.report.senders import senders_html

        sections.append(senders_html(summary))
    sections.append(_latency_section(m))

    if req is not None and len(req):
        cdfs = run_cdfs(req, req.itl_hist)
        for key, (svg, _binned) in cdfs.items():
            figs[f"cdf_{key}"] = svg
        if any(b for k, (_, b) in cdfs.items() if k != "itl"):
            notes.append(
                f"CDFs of per-request metrics with more than {EXACT_CDF_MAX:,} values are drawn at ~300 quantiles "
                "(every 0.5 % up to p99, then denser to p99.999)."
            )
        itl_from = f"{req.itl_requests:,} requests" + (
            f" (every {req.chunk_stride}th: the file is large)" if req.chunk_stride > 1 else ""
        )
        notes.append(
            f"The ITL CDF is binned in a log histogram ({ITL_BINS_PER_DECADE} bins per decade, 0.6 % wide), "
            f"from the token gaps of {itl_from}."
        )
        sections.append(
            '<h2 id="cdfs">Latency distributions</h2><p class="note">Each curve shows, for a latency x on the '
            "horizontal axis, the share of requests that were at least that fast. Solid: measured from the "
            "<em>intended</em> start (what an open-loop user experiences, corrected for coordinated omission); "
            "dashed: from the actual send. Left and steep is good; a long flat tail on the right means stragglers. "
            "Dotted lines mark p50/p90/p99.</p>"
            + '<div class="grid">'
            + "".join(fig_block(svg) for svg, _ in cdfs.values())
            + "</div>"
        )
        verdicts = {e.get("index"): e.get("verdict") for e in summary.get("straggler_explanations") or []}
        tl_svg, info = timeline_figure(req, server, get(m, "stragglers", "threshold_ms"), verdicts)
        figs["timeline"] = tl_svg
        sections.append(_timeline_section(tl_svg, info, server, req, notes))
    else:
        sections.append(
            '<h2 id="cdfs">Latency distributions</h2><p class="note">No requests.jsonl: no figures.</p>'
        )

    sections.append(server_section(summary))
    sections.append(groups_section(summary, figs))
    sections.append(turns_section(summary, figs))
    sections.append(straggler_section(summary))
    sections.append(_footer(summary, out, notes, started))

    write_figures(out, figs)
    nav = _nav(summary)
    html = page(f"loadgen report — {_run_name(summary, out)}", "".join(sections), nav)
    path = out / REPORT_HTML
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path


def _nav(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The page's navigation: a link per section the run has."""
    nav = [
        ("glance", "Summary"),
        ("config", "Configuration"),
        *([("senders", "Senders")] if summary.get("senders") else []),
        ("latency", "Metrics"),
        ("cdfs", "Distributions"),
        ("timeline-sec", "Timeline"),
        ("server", "Server"),
    ]
    if summary.get("groups") or summary.get("accuracy"):
        nav.append(("groups", "Datasets / budgets"))
    if summary.get("turns"):
        nav.append(("turns", "Turns"))
    nav += [("stragglers", "Stragglers"), ("about", "About")]
    return nav


def _run_name(summary: dict[str, Any], out: Path) -> str:
    return summary.get("label") or get(summary, "target", "model") or out.name


def _header(summary: dict[str, Any], out: Path) -> str:
    tgt = summary.get("target") or {}
    t0 = get(summary, "clock", "t0_unix_ns")
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t0 / 1e9)) if t0 else "unknown time"
    parts = [f"<h1>loadgen report: {esc(_run_name(summary, out))}</h1>"]
    parts.append(
        f'<p class="sub">{esc(when)} · target {esc(tgt.get("base_url", "?"))} · model '
        f"<code>{esc(tgt.get('model', '?'))}</code> · API {esc(tgt.get('api', '?'))} · results <code>{esc(out)}</code></p>"
    )
    check = summary.get("client_check") or {}
    rebuilt = summary.get("rebuilt")
    if rebuilt:
        items = "".join(f"<li>{esc(m)}</li>" for m in rebuilt.get("missing") or [])
        parts.append(
            '<div class="verdict warn" id="rebuilt"><b>Rebuilt summary.</b> This run ended without writing its '
            f"summary (killed?); it was rebuilt from {esc(', '.join(rebuilt.get('from') or []))}. Missing:"
            f"<ul>{items}</ul></div>"
        )
    if "trustworthy" in check and check["trustworthy"] is None:
        parts.append(
            '<div class="verdict warn" id="verdict" data-trustworthy="unknown"><b>Measurement: not fully '
            f"checked.</b> {esc(check.get('note', ''))} (send lag p99 "
            f"{esc(fmt(get(check, 'send_lag_ms', 'p99')))} ms).</div>"
        )
    elif check.get("trustworthy", True):
        lag = get(check, "send_lag_ms", "p99")
        parts.append(
            '<div class="verdict ok" id="verdict" data-trustworthy="true"><b>Measurement: trustworthy.</b>'
            f" loadgen kept to its schedule (send lag p99 {esc(fmt(lag))} ms) and had CPU to spare, so the "
            "latencies below describe the server, not the load generator.</div>"
        )
    else:
        reasons = "".join(f"<li>{esc(r)}</li>" for r in check.get("reasons") or [])
        parts.append(
            '<div class="verdict bad" id="verdict" data-trustworthy="false"><b>Measurement: NOT trustworthy.</b>'
            " loadgen itself fell behind, so some latencies include the client's own delay. Reasons:"
            f"<ul>{reasons}</ul>Rerun with a lower rate, fewer other processes, or on a bigger machine.</div>"
        )
    kind = tgt.get("kind")
    if kind == "simulated":
        parts.append(
            '<div class="verdict info" id="target-kind" data-kind="simulated"><b>Target: the built-in simulator.</b>'
            " No model was run: the numbers describe loadgen's simulated vLLM-like server (useful to try loadgen "
            "and its reports). Pass <code>--base-url</code> to measure a real server.</div>"
        )
    elif kind != "unknown":
        parts.append(
            f'<div class="verdict info" id="target-kind" data-kind="{esc(kind)}"><b>Target: a real server</b> at '
            f"{esc(tgt.get('base_url', '?'))}.</div>"
        )
    if summary.get("interrupted"):
        parts.append(
            '<div class="verdict warn"><b>Interrupted.</b> The run was stopped early (Ctrl-C).</div>'
        )
    outcome = summary.get("outcome") or {}
    if outcome.get("failed"):
        parts.append(
            f'<div class="verdict bad" id="outcome"><b>The requests failed:</b> {esc(outcome.get("reason"))}.</div>'
        )
    req = get(summary, "metrics", "requests") or {}
    if req.get("failed"):
        kinds = words.error_counts(req.get("errors_by_kind"))
        parts.append(
            f'<div class="verdict warn"><b>{req["failed"]:,} of {req.get("measured", 0):,} requests failed</b>'
            f" ({esc(kinds)}). Latency statistics cover successful requests only.</div>"
        )
    return "".join(parts)


def _glance(summary: dict[str, Any]) -> str:
    m = summary.get("metrics") or {}
    lat = m.get("latency_ms") or {}
    srv = summary.get("server") or {}
    cards = [
        ("requests ok / measured", f"{fmt(get(m, 'requests', 'ok'))} / {fmt(get(m, 'requests', 'measured'))}",
         "metrics.requests.ok", get(m, "requests", "ok")),
        ("throughput, requests/s", fmt(get(m, "throughput", "requests_per_s")), "metrics.throughput.requests_per_s",
         get(m, "throughput", "requests_per_s")),
        ("output tokens/s", fmt(get(m, "throughput", "output_tokens_per_s")),
         "metrics.throughput.output_tokens_per_s", get(m, "throughput", "output_tokens_per_s")),
        (f"{INTERVAL['ttft'].name} p50 / p99 (ms)", f"{fmt(get(lat, 'ttft', 'p50'))} / {fmt(get(lat, 'ttft', 'p99'))}",
         "metrics.latency_ms.ttft.p50", get(lat, "ttft", "p50")),
        (f"{INTERVAL['ttfvt'].name} p50 / p99 (ms)", f"{fmt(get(lat, 'ttfvt', 'p50'))} / {fmt(get(lat, 'ttfvt', 'p99'))}",
         "metrics.latency_ms.ttfvt.p50", get(lat, "ttfvt", "p50")),
        (f"{INTERVAL['e2e'].name} p50 / p99 (ms)", f"{fmt(get(lat, 'e2e', 'p50'))} / {fmt(get(lat, 'e2e', 'p99'))}",
         "metrics.latency_ms.e2e.p50", get(lat, "e2e", "p50")),
        ("stragglers", f"{fmt(get(m, 'stragglers', 'count'))} ({fmt(get(m, 'stragglers', 'share_of_requests'), 'pct')})",
         "metrics.stragglers.count", get(m, "stragglers", "count")),
    ]  # fmt: skip
    if get(m, "goodput", "slo_ms"):
        cards.append(("goodput (met SLO)", fmt(get(m, "goodput", "fraction"), "pct"), "metrics.goodput.fraction",
                      get(m, "goodput", "fraction")))  # fmt: skip
    kvmax = get(srv, "kv_cache_usage", "max")
    if kvmax is not None:
        cards.append(("KV-cache usage max", fmt(kvmax, "pct"), "server.kv_cache_usage.max", kvmax))
    if srv.get("preemptions") is not None:
        cards.append(("preemptions", fmt(srv["preemptions"]), "server.preemptions", srv["preemptions"]))
    html = "".join(
        f'<div class="card"><div class="v" data-key="{esc(k)}" data-value="{esc(repr(raw) if raw is not None else "")}">'
        f'{esc(v)}</div><div class="l">{esc(label)}</div></div>'
        for label, v, k, raw in cards
    )
    return f'<h2 id="glance">At a glance</h2><div class="cards">{html}</div>'


def _config_section(summary: dict[str, Any]) -> str:
    cfg = summary.get("config") or {}
    sch = summary.get("schedule") or {}
    w = cfg.get("workload") or {}
    smp = cfg.get("sampling") or {}
    an = cfg.get("analysis") or {}
    rate = get(summary, "metrics", "rate") or {}
    arrival = sch.get("arrival", "?")
    if arrival == "gamma":
        arr = f"Gamma arrivals, rate {fmt(sch.get('rate'))}/s, burstiness cv {fmt(sch.get('cv'))} (cv 1 = Poisson)"
    else:
        arr = f"{arrival}: " + ", ".join(f"{k} {v}" for k, v in sch.items() if k != "arrival")
    wl = w.get("kind", "?")
    if wl == "dataset":
        wl += f": {w.get('dataset')} (repeats {w.get('repeats')})"
    elif wl == "synthetic":
        wl += f": input {w.get('input_len')} tokens, output {w.get('output_len') or 'up to the model'}"
    rows = [
        ("arrivals", arr),
        ("rate planned / achieved", f"{fmt(rate.get('planned'))} / {fmt(rate.get('achieved_send'))} requests/s"),
        ("requests", f"{fmt(get(cfg, 'schedule', 'num_requests'))} measured + {fmt(get(cfg, 'schedule', 'warmup'))} warm-up"
                     + (f", max concurrency {get(cfg, 'schedule', 'max_concurrency')}"
                        if get(cfg, "schedule", "max_concurrency") else ", no concurrency cap (open loop)")),
        ("workload", wl),
        ("max_tokens", smp.get("max_tokens") or w.get("budgets") or "server default"),
        ("seed", sch.get("seed", get(cfg, "schedule", "seed"))),
        ("SLO for goodput", words.slo(an.get("slo_ms")) or "none set"),
        ("stragglers", get(summary, "metrics", "stragglers", "rule")),
        ("window", f"{fmt(get(summary, 'metrics', 'window', 'duration_s'))} s, first intended start to last end"),
        ("command", words.command_line(summary.get("argv")) or "–"),
    ]  # fmt: skip
    body = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in rows)
    raw = escape(orjson.dumps(cfg, option=orjson.OPT_INDENT_2).decode())
    return (
        f'<h2 id="config">Configuration</h2><table class="kv">{body}</table>'
        f"<details><summary>full configuration (summary.json → config)</summary><pre>{raw}</pre></details>"
    )


def _latency_section(m: dict[str, Any]) -> str:
    lat = m.get("latency_ms") or {}
    rows = []
    for iv in INTERVALS:
        key = iv.key
        d = lat.get(key) if iv.shown else None
        if not d or not d.get("count"):
            continue
        cells = "".join(cell(d.get(c), f"metrics.latency_ms.{key}.{c}") for c in LAT_COLS)
        rows.append(f'<tr><td>{esc(iv.label)}</td>{cells}<td class="what">{esc(iv.note)}</td></tr>')
    lat_t = table(["latency (ms)", *(c.replace("_", ".") for c in LAT_COLS), "meaning"], rows)
    thr, tok, gp, rate, req, conns = (
        m.get(k) or {} for k in ("throughput", "tokens", "goodput", "rate", "requests", "connections")
    )
    kv_rows = [
        ("requests: total / warm-up / measured / ok / failed",
         [("metrics.requests." + k, req.get(k)) for k in ("total", "warmup", "measured", "ok", "failed")]),
        ("throughput: requests/s, output tokens/s, total tokens/s",
         [("metrics.throughput." + k, thr.get(k)) for k in ("requests_per_s", "output_tokens_per_s", "total_tokens_per_s")]),
        ("tokens: prompt, completion, of which reasoning",
         [("metrics.tokens." + k, tok.get(k)) for k in ("prompt", "completion", "reasoning")]),
        ("rate (requests/s): target, planned, achieved send",
         [("metrics.rate." + k, rate.get(k)) for k in ("target", "planned", "achieved_send")]),
        ("goodput: good requests, requests/s, fraction",
         [("metrics.goodput." + k, gp.get(k)) for k in ("good_requests", "requests_per_s", "fraction")]),
        ("connections: new, reused, closed kept-alive ones skipped before writing (never resent)",
         [("metrics.connections." + k, conns.get(k)) for k in ("new", "reused", "retries")]),
    ]  # fmt: skip
    other = "".join(
        f"<tr><td>{esc(label)}</td>" + "".join(cell(v, k) for k, v in vals) + "</tr>"
        for label, vals in kv_rows
    )
    srcs = words.count_sources(tok.get("count_sources"))
    notes = tok.get("count_notes") or {}
    extra = f"Token counts: {esc(srcs or '–')}; mean tokens per chunk {esc(fmt(tok.get('mean_tokens_per_chunk')))}."
    if notes:
        extra += f" Count notes: {esc(words.count_notes(notes))}."
    cut = words.cut_at_budget(tok.get("finish_reasons"), int((m.get("requests") or {}).get("ok") or 0))
    if cut:
        extra += f" Answers: {esc(cut)}."
    return (
        '<h2 id="latency">Metrics</h2><p class="note">The same numbers as <code>summary.json</code> (warm-up '
        "requests excluded; latencies over successful requests). Hover a figure for details.</p>"
        + lat_t
        + f'<table class="kv">{other}</table><p class="note">{extra}</p>'
    )


def _timeline_section(
    svg: str, info: TimelineInfo, server: ServerSeries, req: RunRequests, notes: list[str]
) -> str:
    what = (
        f"All {info.total:,} requests are drawn."
        if info.drawn == info.total
        else f"{info.drawn:,} of {info.total:,} requests are drawn: every straggler and failure "
        f"({info.stragglers + info.failed:,}) first, the others evenly thinned, so the file stays small."
    )
    if info.drawn != info.total:
        notes.append(what)
    if info.downsampled_series:
        notes.append(
            f"Server series with more samples than pixels ({', '.join(info.downsampled_series)}) are drawn as the "
            f"min–max band of each of {TIME_BUCKETS} time columns, so spikes stay visible."
        )
    if req.chunk_stride > 1:
        notes.append(
            "Received-token throughput uses exact chunk times for a sample of requests and spreads the other "
            "requests' tokens evenly between their first and last token."
        )
    srv = (
        "No server metrics were scraped (<code>--no-scrape</code>, or the server has no /metrics): only the "
        "requests are shown."
        if server.empty
        else "Below, on the same time axis, the server's own state from its /metrics endpoint, scraped "
        f"{server.samples:,} times."
    )
    return (
        '<h2 id="timeline-sec">Timeline</h2><p class="note">One row per request, ordered by when the schedule '
        "wanted it sent. A thin dark tick marks the intended start; grey is waiting for the first token (loadgen's "
        "own lateness, queueing, prefill); pink is reasoning; blue is the answer. Stragglers are outlined in "
        f"red-orange, failures in black. Hover a row for its numbers; the dashed line follows the pointer. {what} "
        f"{srv}</p>" + fig_block(svg)
    )


def _footer(summary: dict[str, Any], out: Path, notes: list[str], started: float) -> str:
    vers = ", ".join(f"{k} {v}" for k, v in (summary.get("versions") or {}).items())
    red = "".join(f"<li>{esc(n)}</li>" for n in notes) or "<li>No reductions: every value is drawn.</li>"
    return (
        '<h2 id="about">About this report</h2>'
        f'<h3>What was reduced to keep this file small</h3><ul class="note" id="reductions">{red}</ul>'
        '<h3>Files</h3><p class="note"><code>summary.json</code> (every number above), <code>requests.jsonl</code> '
        "(one line per request, times in ns since the run started), <code>server_metrics.jsonl</code> (one line "
        f"per scrape), <code>{FIGURES_DIR}/*.svg</code> (the figures as standalone vector files for papers: open "
        "in a browser or Inkscape; <code>rsvg-convert -f pdf</code> makes a PDF). Regenerate this page with "
        f"<code>python -m loadgen report {esc(out)}</code>.</p>"
        f'<p class="note">Versions: {esc(vers or "–")}. Report written in {time.perf_counter() - started:.2f} s.</p>'
    )
