"""The HTML reports: one self-contained, offline file per run (``report.html``), per comparison and per sweep.

``write_run_report(result_dir)`` reads ``summary.json``, ``requests.jsonl`` and ``server_metrics.jsonl`` and writes
``report.html`` plus ``figures/*.svg`` (the main figures as standalone vector files, for papers). Everything the
page needs is inline: no network, no JavaScript library, no plotting dependency (see :mod:`loadgen.report.svg` for
why hand-written SVG). Every number in a table carries ``data-key`` (its path in summary.json) and ``data-value``
(the unrounded value), so a test or a script can check the page against the summary.

Large runs stay quick to write and to open: see :mod:`loadgen.report.figures` for how distributions, time series
and the timeline are reduced; the page says which reductions were applied.

``python -m loadgen report RESULT_DIR [--open]`` (re)writes a run's report and prints its path.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from typing import Any

import orjson

from loadgen.errors import ConfigError
from loadgen.report import figures as F
from loadgen.report import words
from loadgen.report.svg import esc
from loadgen.scrape.summary import format_bucket

REPORT_NAME = "report.html"
FIGURES_DIR = "figures"

_LAT_ROWS = (
    ("ttft", "TTFT, from send", "time to first token of any kind (reasoning or answer)"),
    ("ttft_from_intended", "TTFT, from intended start", "corrected for coordinated omission"),
    ("ttfvt", "TTFVT, from send", "time to first visible (answer) token: what a user waits for"),
    ("ttfvt_from_intended", "TTFVT, from intended start", "corrected"),
    ("reasoning_phase", "reasoning phase", "first reasoning token to first answer token"),
    ("tpot", "TPOT", "time per output token, first to last token"),
    ("itl_per_token", "ITL per token", "gap between tokens; a k-token chunk counts k gaps of gap/k"),
    ("itl_per_chunk", "ITL per chunk", "gap between streamed chunks"),
    ("e2e", "E2E, from send", "whole request"),
    ("e2e_from_intended", "E2E, from intended start", "corrected"),
    ("queue_wait", "client queue wait", "waiting for a --max-concurrency slot"),
    ("send_lag", "send lag", "how late loadgen itself sent requests"),
    (
        "connect",
        "connect",
        "setting up a new connection, before the request was written (not in 'from send')",
    ),
)
_LAT_COLS = ("count", "mean", "p50", "p90", "p95", "p99", "p99_9", "max")


# --------------------------------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------------------------------
def fmt(v: Any, kind: str = "") -> str:
    """A number for people: thousands separators, sensible decimals, '-' for missing."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if kind == "pct":
        return f"{v:.1%}"
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) < 1e15 and kind != "dec"):
        return f"{int(v):,}"
    if isinstance(v, float):
        a = abs(v)
        if a >= 100:
            return f"{v:,.0f}"
        if a >= 10:
            return f"{v:,.1f}"
        return f"{v:,.2f}"
    return str(v)


def cell(v: Any, key: str = "", kind: str = "", cls: str = "num") -> str:
    """A table cell; with ``key``, tagged with its summary path and raw value."""
    attrs = f' class="{cls}"'
    if key:
        raw = (
            ""
            if v is None
            else repr(v)
            if isinstance(v, (int, float)) and not isinstance(v, bool)
            else str(v)
        )
        attrs += f' data-key="{esc(key)}" data-value="{esc(raw)}"'
    return f"<td{attrs}>{esc(fmt(v, kind))}</td>"


def table(head: Sequence[str], rows: Iterable[str], cls: str = "") -> str:
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


# --------------------------------------------------------------------------------------------------
# the page frame
# --------------------------------------------------------------------------------------------------
CSS = """
:root{--fg:#1d1d1f;--mut:#5f6368;--line:#e3e3e3;--ok:#0a7d32;--bad:#b3261e;--warn:#8a5a00;--acc:#0072B2}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:var(--fg);margin:0;background:#f6f7f9}
main{max-width:1120px;margin:0 auto;padding:18px 22px 60px;background:#fff;min-height:100vh}
h1{font-size:22px;margin:4px 0 2px}h2{font-size:17px;margin:30px 0 8px;padding-top:8px;border-top:1px solid var(--line)}
h3{font-size:14px;margin:16px 0 6px}
.sub{color:var(--mut);margin:0 0 12px}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid var(--line);padding:6px 0;margin-bottom:8px;z-index:5;font-size:13px}
nav a{margin-right:14px;color:var(--acc);text-decoration:none}
.verdict{border-radius:6px;padding:9px 12px;margin:8px 0;border:1px solid}
.verdict.ok{background:#edf7ef;border-color:#b7dfc0}.verdict.bad{background:#fdeceb;border-color:#f1b8b3}
.verdict.info{background:#eef4fb;border-color:#bcd3ee}.verdict.warn{background:#fff6e0;border-color:#efd69a}
.verdict b{margin-right:6px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(158px,1fr));gap:8px;margin:10px 0}
.card{border:1px solid var(--line);border-radius:6px;padding:7px 10px}
.card .v{font-size:19px;font-weight:600}.card .l{color:var(--mut);font-size:12px}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{padding:3px 9px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:#f3f4f6;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.what{color:var(--mut);font-size:12px}
table.kv td:first-child{color:var(--mut);white-space:nowrap}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:10px}
.fig{overflow-x:auto}.fig svg{max-width:100%;height:auto}
.note{color:var(--mut);font-size:12.5px;margin:4px 0 10px}
details{margin:8px 0}summary{cursor:pointer;color:var(--acc)}
code{background:#f3f4f6;padding:0 4px;border-radius:3px;font-size:12.5px}
#tip{position:fixed;pointer-events:none;background:#222;color:#fff;font-size:12px;padding:6px 8px;border-radius:4px;
white-space:pre;display:none;z-index:10;max-width:520px;line-height:1.35}
.xhair{stroke:#555;stroke-width:0.8;stroke-dasharray:2,2}
tr.untrusted td{background:#fff6e0}td.bad{color:var(--bad)}tr.why td{border-top:0;padding-top:0}td.run{white-space:nowrap}
"""

# Hover: SVG <title> texts become an instant tooltip; the timeline gets a crosshair across its panels.
JS = """
(function(){
var tip=document.getElementById('tip');
document.querySelectorAll('main svg title').forEach(function(t){
  var p=t.parentNode; if(p&&p.tagName!=='svg'){p.setAttribute('data-tip',t.textContent);p.removeChild(t);}});
document.addEventListener('mousemove',function(e){
  var el=e.target&&e.target.closest?e.target.closest('[data-tip]'):null;
  if(!el){tip.style.display='none';return;}
  tip.textContent=el.getAttribute('data-tip');tip.style.display='block';
  var x=e.clientX+14,y=e.clientY+14,w=tip.offsetWidth,h=tip.offsetHeight;
  if(x+w>innerWidth-4)x=e.clientX-w-10; if(y+h>innerHeight-4)y=e.clientY-h-10;
  tip.style.left=x+'px';tip.style.top=y+'px';});
var tl=document.getElementById('timeline');
if(tl){var z=tl.querySelector('.xhair-zone');
 if(z){var ns='http://www.w3.org/2000/svg',ln=document.createElementNS(ns,'line'),lb=document.createElementNS(ns,'text');
  ln.setAttribute('class','xhair');lb.setAttribute('font-size','10.5');lb.setAttribute('fill','#333');
  var x0=+z.getAttribute('x'),w=+z.getAttribute('width'),y0=+z.getAttribute('y'),h=+z.getAttribute('height');
  ln.setAttribute('y1',y0);ln.setAttribute('y2',y0+h);ln.style.display=lb.style.display='none';
  tl.appendChild(ln);tl.appendChild(lb);
  var t0=+z.getAttribute('data-t0'),t1=+z.getAttribute('data-t1');
  tl.addEventListener('mousemove',function(e){var pt=tl.createSVGPoint();pt.x=e.clientX;pt.y=e.clientY;
   var q=pt.matrixTransform(tl.getScreenCTM().inverse());
   if(q.x<x0||q.x>x0+w){ln.style.display=lb.style.display='none';return;}
   ln.setAttribute('x1',q.x);ln.setAttribute('x2',q.x);lb.setAttribute('x',q.x+4);lb.setAttribute('y',y0+10);
   lb.textContent=(t0+(q.x-x0)/w*(t1-t0)).toFixed(2)+' s';ln.style.display=lb.style.display='';});
  tl.addEventListener('mouseleave',function(){ln.style.display=lb.style.display='none';});}}
})();
"""


def page(title: str, body: str, nav: Sequence[tuple[str, str]] = ()) -> str:
    links = "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t in nav)
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>"
        + (f"<nav>{links}</nav>" if links else "")
        + body
        + f'</main><div id="tip"></div><script>{JS}</script></body></html>\n'
    )


def fig_block(svg: str, caption: str = "") -> str:
    cap = f'<div class="note">{caption}</div>' if caption else ""
    return f'<div class="fig">{svg}{cap}</div>'


def _write_figures(out_dir: Path, figs: dict[str, str]) -> None:
    d = out_dir / FIGURES_DIR
    d.mkdir(parents=True, exist_ok=True)
    for name, svg in figs.items():
        (d / f"{name}.svg").write_text('<?xml version="1.0" encoding="UTF-8"?>\n' + svg, encoding="utf-8")


# --------------------------------------------------------------------------------------------------
# one run
# --------------------------------------------------------------------------------------------------
def _bucket_ns(summary: dict[str, Any]) -> int:
    """Throughput bucket: at least the scrape interval, at most ~TIME_BUCKETS buckets over the run; a round value."""
    end_ns = _get(summary, "metrics", "window", "end_ns") or 0
    interval = _get(summary, "config", "scrape", "interval_s") or 0.5
    raw = max(float(interval), end_ns / 1e9 / 300, 0.05)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw * (1 - 1e-9))
    return int(round(step * 1e9))


PARALLEL_BYTES = 32_000_000


def _read_run(out: Path, bucket_ns: int) -> tuple[F.RunRequests | None, F.ServerSeries]:
    """Both files in one pass each; a big scrape file is read in a forked process while requests are read here."""
    rpath, spath = out / "requests.jsonl", out / "server_metrics.jsonl"
    pool = None
    fut = None
    if spath.is_file() and rpath.is_file() and spath.stat().st_size > PARALLEL_BYTES:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        try:
            pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
            fut = pool.submit(F.read_server, spath)
        except (OSError, ValueError):  # no fork here: read one after the other
            pool = None
    try:
        req = F.read_requests(rpath, bucket_ns) if rpath.is_file() else None
        server = fut.result() if fut is not None else F.read_server(spath)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return req, server


def write_run_report(result_dir: Path | str) -> Path:
    """Write ``result_dir/report.html`` and ``result_dir/figures/*.svg``; return the report's path."""
    out = Path(result_dir)
    spath = out / "summary.json"
    if not spath.is_file():
        raise ConfigError(f"{out}: no summary.json (not a loadgen results folder, or the run did not finish)")
    summary = orjson.loads(spath.read_bytes())
    started = time.perf_counter()
    m = summary.get("metrics") or {}
    req, server = _read_run(out, _bucket_ns(summary))

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
        cdfs = F.run_cdfs(req)
        for key, (svg, _binned) in cdfs.items():
            figs[f"cdf_{key}"] = svg
        if any(b for k, (_, b) in cdfs.items() if k != "itl"):
            notes.append(
                f"CDFs of per-request metrics with more than {F.EXACT_CDF_MAX:,} values are drawn at ~300 quantiles "
                "(every 0.5 % up to p99, then denser to p99.999)."
            )
        itl_from = f"{req.itl_requests:,} requests" + (
            f" (every {req.chunk_stride}th: the file is large)" if req.chunk_stride > 1 else ""
        )
        notes.append(
            f"The ITL CDF is binned in a log histogram ({F.ITL_BINS_PER_DECADE} bins per decade, 0.6 % wide), "
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
        tl_svg, info = F.timeline_figure(req, server, _get(m, "stragglers", "threshold_ms"), verdicts)
        figs["timeline"] = tl_svg
        sections.append(_timeline_section(tl_svg, info, server, req, notes))
    else:
        sections.append(
            '<h2 id="cdfs">Latency distributions</h2><p class="note">No requests.jsonl: no figures.</p>'
        )

    sections.append(_server_section(summary))
    sections.append(_groups_section(summary, figs))
    sections.append(_straggler_section(summary))
    sections.append(_footer(summary, out, notes, started))

    _write_figures(out, figs)
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
    nav += [("stragglers", "Stragglers"), ("about", "About")]
    html = page(f"loadgen report — {_run_name(summary, out)}", "".join(sections), nav)
    path = out / REPORT_NAME
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path


def _run_name(summary: dict[str, Any], out: Path) -> str:
    return summary.get("label") or _get(summary, "target", "model") or out.name


def _header(summary: dict[str, Any], out: Path) -> str:
    tgt = summary.get("target") or {}
    t0 = _get(summary, "clock", "t0_unix_ns")
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
            f"{esc(fmt(_get(check, 'send_lag_ms', 'p99')))} ms).</div>"
        )
    elif check.get("trustworthy", True):
        lag = _get(check, "send_lag_ms", "p99")
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
    req = _get(summary, "metrics", "requests") or {}
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
        ("requests ok / measured", f"{fmt(_get(m, 'requests', 'ok'))} / {fmt(_get(m, 'requests', 'measured'))}",
         "metrics.requests.ok", _get(m, "requests", "ok")),
        ("throughput, requests/s", fmt(_get(m, "throughput", "requests_per_s")), "metrics.throughput.requests_per_s",
         _get(m, "throughput", "requests_per_s")),
        ("output tokens/s", fmt(_get(m, "throughput", "output_tokens_per_s")),
         "metrics.throughput.output_tokens_per_s", _get(m, "throughput", "output_tokens_per_s")),
        ("TTFT p50 / p99 (ms)", f"{fmt(_get(lat, 'ttft', 'p50'))} / {fmt(_get(lat, 'ttft', 'p99'))}",
         "metrics.latency_ms.ttft.p50", _get(lat, "ttft", "p50")),
        ("TTFVT p50 / p99 (ms)", f"{fmt(_get(lat, 'ttfvt', 'p50'))} / {fmt(_get(lat, 'ttfvt', 'p99'))}",
         "metrics.latency_ms.ttfvt.p50", _get(lat, "ttfvt", "p50")),
        ("E2E p50 / p99 (ms)", f"{fmt(_get(lat, 'e2e', 'p50'))} / {fmt(_get(lat, 'e2e', 'p99'))}",
         "metrics.latency_ms.e2e.p50", _get(lat, "e2e", "p50")),
        ("stragglers", f"{fmt(_get(m, 'stragglers', 'count'))} ({fmt(_get(m, 'stragglers', 'share_of_requests'), 'pct')})",
         "metrics.stragglers.count", _get(m, "stragglers", "count")),
    ]  # fmt: skip
    if _get(m, "goodput", "slo_ms"):
        cards.append(("goodput (met SLO)", fmt(_get(m, "goodput", "fraction"), "pct"), "metrics.goodput.fraction",
                      _get(m, "goodput", "fraction")))  # fmt: skip
    kvmax = _get(srv, "kv_cache_usage", "max")
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
    rate = _get(summary, "metrics", "rate") or {}
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
        ("requests", f"{fmt(_get(cfg, 'schedule', 'num_requests'))} measured + {fmt(_get(cfg, 'schedule', 'warmup'))} warm-up"
                     + (f", max concurrency {_get(cfg, 'schedule', 'max_concurrency')}"
                        if _get(cfg, "schedule", "max_concurrency") else ", no concurrency cap (open loop)")),
        ("workload", wl),
        ("max_tokens", smp.get("max_tokens") or w.get("budgets") or "server default"),
        ("seed", sch.get("seed", _get(cfg, "schedule", "seed"))),
        ("SLO for goodput", words.slo(an.get("slo_ms")) or "none set"),
        ("stragglers", _get(summary, "metrics", "stragglers", "rule")),
        ("window", f"{fmt(_get(summary, 'metrics', 'window', 'duration_s'))} s, first intended start to last end"),
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
    for key, label, what in _LAT_ROWS:
        d = lat.get(key)
        if not d or not d.get("count"):
            continue
        cells = "".join(cell(d.get(c), f"metrics.latency_ms.{key}.{c}") for c in _LAT_COLS)
        rows.append(f'<tr><td>{esc(label)}</td>{cells}<td class="what">{esc(what)}</td></tr>')
    lat_t = table(["latency (ms)", *(c.replace("_", ".") for c in _LAT_COLS), "meaning"], rows)
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
    srcs = ", ".join(f"{k} ({v})" for k, v in (tok.get("count_sources") or {}).items())
    notes = tok.get("count_notes") or {}
    extra = f"Token counts from: {esc(srcs or '–')}; mean tokens per chunk {esc(fmt(tok.get('mean_tokens_per_chunk')))}."
    if notes:
        extra += f" Count notes: {esc(words.counts(notes))}."
    return (
        '<h2 id="latency">Metrics</h2><p class="note">The same numbers as <code>summary.json</code> (warm-up '
        "requests excluded; latencies over successful requests). Hover a figure for details.</p>"
        + lat_t
        + f'<table class="kv">{other}</table><p class="note">{extra}</p>'
    )


def _timeline_section(
    svg: str, info: F.TimelineInfo, server: F.ServerSeries, req: F.RunRequests, notes: list[str]
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
            f"min–max band of each of {F.TIME_BUCKETS} time columns, so spikes stay visible."
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


def _server_section(summary: dict[str, Any]) -> str:
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
            v = _get(srv, key, k)
            if v is not None:
                rows.append(f"<tr><td>{label} {k}</td>{cell(v, f'server.{key}.{k}')}</tr>")
    if srv.get("preemptions") is not None:
        rows.append(f"<tr><td>preemptions</td>{cell(srv['preemptions'], 'server.preemptions')}</tr>")
    hr = _get(srv, "prefix_cache", "hit_rate")
    if hr is not None:
        rows.append(
            f"<tr><td>prefix-cache hit rate</td>{cell(hr, 'server.prefix_cache.hit_rate', 'pct')}</tr>"
        )
    for k in ("prompt_per_s", "generation_per_s"):
        v = _get(srv, "tokens", k)
        if v is not None:
            rows.append(
                f"<tr><td>server {k.replace('_per_s', '')} tokens/s</td>{cell(v, f'server.tokens.{k}')}</tr>"
            )
    sd = srv.get("spec_decode") or {}
    if sd.get("acceptance_rate") is not None:
        rows.append(
            f"<tr><td>speculative acceptance</td>{cell(sd['acceptance_rate'], 'server.spec_decode.acceptance_rate', 'pct')}</tr>"
        )
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
        + eng
        + (f'<ul class="note">{notes}</ul>' if notes else "")
    )


def _bucket_cell(b: Any, key: str) -> str:
    """A server quantile as its histogram bucket; data-value keeps the bounds in seconds as JSON."""
    raw = orjson.dumps(b).decode() if b is not None else ""
    text = format_bucket(b, unit="") if isinstance(b, dict) else "–"
    return f'<td class="num" data-key="{esc(key)}" data-value="{esc(raw)}">{esc(text.strip())}</td>'


def _groups_section(summary: dict[str, Any], figs: dict[str, str]) -> str:
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
                + "".join(cell(_get(g, k, q), f"{p}.{k}.{q}") for k in ("ttft", "ttfvt", "e2e") for q in ("p50", "p99"))
                + "</tr>"
            )  # fmt: skip
        out.append(f"<h3>Latency by {esc(tag)} (ms)</h3>")
        out.append(table([tag, "ok", "n", "truncated", "mean output tok", "mean reasoning tok", "TTFT p50", "TTFT p99",
                          "TTFVT p50", "TTFVT p99", "E2E p50", "E2E p99"], rows))  # fmt: skip
        fig = F.group_figure(tag, gs)
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
    fig = F.accuracy_figure(acc)
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


def _straggler_section(summary: dict[str, Any]) -> str:
    st = _get(summary, "metrics", "stragglers") or {}
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


# --------------------------------------------------------------------------------------------------
# comparison and sweep
# --------------------------------------------------------------------------------------------------
def write_compare_report(compare: dict[str, Any], out_path: Path | str) -> Path:
    """An HTML comparison of configurations (``loadgen.compare.compare_runs``'s dict); figures beside it."""
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
    rows = []
    for c in configs:
        rows.append(
            f"<tr><td>{esc(c.get('name'))}{' (baseline)' if c.get('name') == c.get('baseline', base) else ''}</td>"
            f"<td>{esc(len(c.get('dirs') or []))}</td><td>{esc(', '.join('–' if x is None else str(x) for x in c.get('seeds') or []))}</td>"
            f"<td>{'<br>'.join(f'<code>{esc(d)}</code>' for d in c.get('dirs') or [])}</td></tr>"
        )
    parts.append(
        '<h2 id="configs">Configurations</h2>' + table(["name", "runs", "seeds", "results folders"], rows)
    )
    metrics = F.compare_metric_order(compare)
    mrows = []
    for met in metrics:
        mrows.append(
            f"<tr><td>{esc(F.compare_label(compare, met))}</td>"
            + "".join(
                cell(
                    _get(c, "metrics", met),
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
    drows = []
    for d in compare.get("differences") or []:
        sig = d.get("significant") is True
        kind = _share_kind(compare, d.get("metric"))
        # a share's difference in percentage points (a relative change of a share reads ambiguously)
        dfmt = (lambda v: "–" if v is None else f"{100 * v:+.1f} pt") if kind else (lambda v: fmt(v))
        drows.append(
            f'<tr class="{"sig" if sig else ""}"><td>{esc(d.get("config"))}</td><td>{esc(F.compare_label(compare, d.get("metric")))}</td>'
            f"{cell(d.get('value'), kind=kind)}{cell(d.get('baseline_value'), kind=kind)}<td class=\"num\">{esc(dfmt(d.get('diff')))}</td>"
            f"{cell(None if kind else d.get('rel_diff'), kind='pct')}"
            f"<td class=\"num\">{esc(dfmt(d.get('ci_low')))} … {esc(dfmt(d.get('ci_high')))}</td>"
            f"<td>{'<b>yes</b>' if sig else 'n/a' if d.get('significant') is None else 'no'}</td></tr>"
        )  # fmt: skip
    parts.append(
        '<h2 id="diffs">Differences to the baseline</h2><p class="note">diff = value − baseline; “significant”: '
        "the 95 % interval of the difference excludes 0; n/a: fewer than 2 runs on a side.</p>"
        + table(
            ["config", "metric", "value", "baseline", "diff", "relative", "95 % CI of diff", "significant"],
            drows,
        )
    )
    fig = F.compare_bars(compare)
    if fig:
        figs["compare_bars"] = fig
        parts.append(
            '<h2 id="bars">Per-configuration bars</h2>'
            + fig_block(fig, "Bars: each configuration's value. Whiskers: the baseline value plus the 95 % "
                        "confidence interval of the difference (so a whisker crossing the baseline's bar top is "
                        "not a significant change).")
        )  # fmt: skip
    runs = {c.get("name"): [Path(d) for d in c.get("dirs") or []] for c in configs}
    cdfs, kv = F.compare_cdfs(runs), F.compare_kv(runs)
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
    _write_figures(out_path.parent, figs)
    nav = [("configs", "Configurations"), ("values", "Values"), ("diffs", "Differences"), ("bars", "Bars"),
           ("cdfs", "Distributions"), ("kv", "KV cache")]  # fmt: skip
    out_path.write_text(page("loadgen comparison", "".join(parts), nav), encoding="utf-8")
    return out_path


def _share_kind(compare: dict[str, Any], key: Any) -> str:
    """'pct' for a metric that is a share (errors, stragglers, KV usage ...), so it reads as a percentage."""
    return "pct" if _get(compare, "metrics", str(key), "unit") == "share" else ""


def write_sweep_report(sweep_dir: Path | str) -> Path:
    """``sweep_dir/sweep.html`` from ``sweep_dir/sweep.json``: goodput and p99 TTFT/TTFVT against rate, per cv."""
    sweep_dir = Path(sweep_dir)
    sp = sweep_dir / "sweep.json"
    if not sp.is_file():
        raise ConfigError(f"{sweep_dir}: no sweep.json")
    sweep = orjson.loads(sp.read_bytes())
    cells = sweep.get("cells") or []
    cfg = sweep.get("config") or {}
    slo = _get(cfg, "run_config", "analysis", "slo_ms") or {}
    figs = F.sweep_figures(cells, slo)
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
            f"{cell(c.get('p99_ttft_from_intended_ms'), f'cells.{i}.p99_ttft_from_intended_ms')}{cell(c.get('p99_ttft_ms'), f'cells.{i}.p99_ttft_ms')}"
            f"{cell(c.get('p99_ttfvt_from_intended_ms'), f'cells.{i}.p99_ttfvt_from_intended_ms')}{cell(c.get('p50_e2e_ms'), f'cells.{i}.p50_e2e_ms')}"
            f"{cell(c.get('error_share'), f'cells.{i}.error_share', 'pct')}<td>{'yes' if c.get('saturated') else ''}</td>"
            f"{check}<td class=\"run\">{_link(sweep_dir, c.get('dir'))}</td></tr>"
        )  # fmt: skip
        if c.get("reason"):  # a sentence: on its own line under the cell's numbers
            rows.append(f'<tr class="why {"untrusted" if bad else ""}"><td></td><td colspan="13" class="what">'
                        f"{'saturated' if c.get('saturated') else esc(c.get('status'))}: {esc(c['reason'])}</td></tr>")  # fmt: skip
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
                "p99 TTFT ms (intended)",
                "p99 TTFT ms (send)",
                "p99 TTFVT ms (intended)",
                "p50 E2E ms",
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
    _write_figures(sweep_dir, figs)
    path = sweep_dir / "sweep.html"
    path.write_text(page("loadgen sweep", "".join(parts)), encoding="utf-8")
    return path


def _link(base: Path, d: Any) -> str:
    if not d:
        return "–"
    p = Path(d)
    full = p if p.is_absolute() else base / p
    if not (full / "summary.json").is_file():
        return "–"  # a skipped or failed cell has no run to link to
    rel = p if not p.is_absolute() else (p.relative_to(base) if p.is_relative_to(base) else p)
    rep = rel / REPORT_NAME
    return f'<a href="{esc(rep.as_posix())}">{esc(rel.as_posix())}</a>'


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m loadgen report RESULT_DIR [--open]``: (re)write report.html and print its path."""
    p = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="python -m loadgen report",
        description="Write a results folder's report.html",
    )
    p.add_argument(
        "result_dir", type=Path, help="a loadgen results folder (with summary.json) or a sweep folder"
    )
    p.add_argument("--open", action="store_true", help="open the report in the default web browser")
    ns = p.parse_args(list(argv) if argv is not None else None)
    d: Path = ns.result_dir
    if (d / "sweep.json").is_file() and not (d / "summary.json").is_file():
        path = write_sweep_report(d)
    elif not (d / "summary.json").is_file() and (
        (d / "requests.jsonl").is_file() or (d / ".senders").is_dir()
    ):
        # a run killed before its summary (kill -9, OOM): rebuild it from what it left, and say what is missing
        from loadgen.rebuild import write_rebuilt_summary

        rebuilt = write_rebuilt_summary(d)["rebuilt"]
        print(
            f"loadgen: {d}: no summary.json (the run did not finish): rebuilt it from "
            f"{', '.join(rebuilt['from'])}",
            file=sys.stderr,
        )
        for m in rebuilt["missing"]:
            print(f"loadgen:   missing: {m}", file=sys.stderr)
        path = write_run_report(d)
    elif not (d / "summary.json").is_file():
        raise ConfigError(f"{d}: no summary.json here: give a loadgen results folder")
    else:
        path = write_run_report(d)
    print(path)
    if ns.open:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())
    return 0


__all__ = ["main", "write_compare_report", "write_run_report", "write_sweep_report"]
