"""The final console report: one table of latency distributions, then throughput, stragglers, server, verdict."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from loadgen.analysis.catalogue import GROUP_LATENCIES, latency_column
from loadgen.analysis.metrics import INTERVALS
from loadgen.records.files import REPORT_HTML, SUMMARY, get
from loadgen.report import words

_COLS = ("count", "mean", "p50", "p90", "p95", "p99", "p99_9", "max")  # what README promises
STRAGGLERS_SHOWN = 5


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:,.2f}"
    return str(v)


def _same_row(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Two latency rows with the same count and the same value in every column (ITL per token and per chunk when
    every chunk held one token)."""
    return bool(a and b and a.get("count") and all(a.get(c) == b.get(c) for c in _COLS))


def print_summary(summary: dict[str, Any], console: Console) -> None:
    """The final report, in the order a reader asks: what ran, how long requests took, how much got through, what
    went wrong, the stragglers, the server's side and the groups, and whether the client can be trusted."""
    _print_headline(summary, console)
    console.print(_latency_table(summary["metrics"]["latency_ms"]))
    _print_volume(summary, console)
    _print_failures(summary, console)
    _print_stragglers(summary, console)
    _print_sections(summary, console)
    _print_client_check(summary, console)


def _print_headline(summary: dict[str, Any], console: Console) -> None:
    req = summary["metrics"]["requests"]
    head = summary.get("target", {})
    console.print(
        f"[bold]loadgen[/] {head.get('kind', '')} {head.get('model', '')} — "
        f"{summary['schedule']['arrival']} rate {summary['schedule'].get('rate')} cv {summary['schedule'].get('cv')}"
        f" — {req['ok']}/{req['measured']} ok" + (f", {req['warmup']} warm-up" if req["warmup"] else "")
    )


def _latency_table(lat: dict[str, Any]) -> Table:
    """Every shown interval of ``INTERVALS`` with a count, one row each (ITL once where chunks held one token)."""
    t = Table(title="latency (ms)", show_lines=False, header_style="bold")
    t.add_column("metric")
    for col in _COLS:
        t.add_column(col.replace("_", "."), justify="right")
    one_per_chunk = _same_row(lat.get("itl_per_token"), lat.get("itl_per_chunk"))
    for iv in INTERVALS:
        d = lat.get(iv.key) if iv.shown else None
        if not d or not d.get("count") or (one_per_chunk and iv.key == "itl_per_chunk"):
            continue
        label = "ITL (per chunk = per token)" if one_per_chunk and iv.key == "itl_per_token" else iv.label
        t.add_row(label, *(_fmt(d.get(c)) for c in _COLS))
    return t


def _print_volume(summary: dict[str, Any], console: Console) -> None:
    """Throughput, the send rate against its target, tokens, answers cut at their budget, goodput."""
    m = summary["metrics"]
    req = m["requests"]
    thr = m["throughput"]
    rate = m["rate"]
    console.print(
        f"throughput: {thr['requests_per_s']:.2f} req/s, {thr['output_tokens_per_s']:,.0f} output tok/s, "
        f"{thr['total_tokens_per_s']:,.0f} total tok/s over {m['window']['duration_s']:.1f} s"
    )
    console.print(
        f"send rate (req/s): target {_fmt(rate['target'])}; planned {_fmt(rate['planned'])} (the rate this seeded "
        f"schedule actually has over its length); achieved {_fmt(rate['achieved_send'])}",
        highlight=False,
    )
    tok = m["tokens"]
    console.print(
        f"tokens: {tok['prompt']:,} prompt, {tok['completion']:,} completion ({tok['reasoning']:,} reasoning), "
        f"{_fmt(tok['mean_tokens_per_chunk'])} tokens/chunk; counts {words.count_sources(tok['count_sources']) or '-'}",
        highlight=False,
    )
    if tok.get("count_notes"):
        console.print(
            f"[yellow]token count notes:[/] {words.count_notes(tok['count_notes'])}", highlight=False
        )
    cut = words.cut_at_budget(tok.get("finish_reasons"), req["ok"])
    if cut:
        console.print(f"[yellow]answers:[/] {cut}", highlight=False)
    gp = m["goodput"]
    if gp["slo_ms"]:
        share = "" if gp["fraction"] is None else f" ({gp['fraction']:.1%})"
        console.print(
            f"goodput: {gp['good_requests']:,} of {req['measured']:,} measured requests{share} met "
            f"{words.slo(gp['slo_ms'])}: {gp['requests_per_s']:.2f} req/s over the same {m['window']['duration_s']:.1f} s window as throughput"
        )


def _print_failures(summary: dict[str, Any], console: Console) -> None:
    """Connections (new, reused, found closed), failed requests by kind, and a run whose requests all failed."""
    m = summary["metrics"]
    req = m["requests"]
    conns = m.get("connections")
    if conns:
        console.print(
            f"connections: {conns['new']} new, {conns['reused']} reused"
            + (f", {conns['none']} never connected" if conns["none"] else "")
            + (
                f"; {conns['retries']} kept-alive connections found closed and skipped before writing "
                f"({conns['requests_retried']} requests; nothing is sent twice)"
                if conns["retries"]
                else ""
            )
        )
        if conns.get("note"):
            console.print(f"[yellow]connections:[/] {conns['note']}", highlight=False)
    if req["errors_by_kind"]:
        console.print(
            f"[red]errors:[/] {req['failed']:,} of {req['measured']:,} failed: "
            f"{words.error_counts(req['errors_by_kind'])}"
        )
    outcome = summary.get("outcome") or {}
    if outcome.get("failed"):
        console.print(f"[bold red]requests failed:[/] {outcome['reason']}", highlight=False)


def _print_stragglers(summary: dict[str, Any], console: Console) -> None:
    st = summary["metrics"]["stragglers"]
    console.print(
        f"stragglers ({st['rule']}, threshold {_fmt(st['threshold_ms'])} ms): {st['count']} "
        f"({st['share_of_requests']:.1%} of requests, {st['share_of_output_tokens']:.1%} of output tokens, "
        f"{st['makespan_share']:.1%} of the makespan)"
    )
    shown = summary.get("straggler_explanations", [])[:STRAGGLERS_SHOWN]
    for s in shown:
        console.print(f"  #{s.get('index')}: {s.get('verdict', '')} — {s.get('detail', '')}")
    if st["count"] > len(shown):
        where = REPORT_HTML if get(summary, "config", "output", "report") is not False else SUMMARY
        console.print(f"  +{st['count'] - len(shown):,} more (see {where})")


def _print_sections(summary: dict[str, Any], console: Console) -> None:
    """The server's side, the groups, the turns of conversations, accuracy, and each sender's share."""
    server = summary.get("server")
    if server:
        _print_server(server, console)
    for tag, groups in (summary.get("groups") or {}).items():
        _print_groups(tag, groups, console)
    if summary.get("turns"):
        from loadgen.report.turn_figures import print_turns

        print_turns(summary, console)
    acc = summary.get("accuracy")
    if acc:
        from loadgen.analysis.accuracy_tables import format_accuracy_table

        console.print(format_accuracy_table(acc), markup=False, highlight=False)
        if acc.get("note"):
            console.print(f"[yellow]{acc['note']}[/]")
    from loadgen.report.senders import senders_lines

    for line in senders_lines(summary):  # --workers / --ray: each sender's share and self-check
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def _print_client_check(summary: dict[str, Any], console: Console) -> None:
    """Whether the run finished and whether the client kept its schedule (its measurements can be trusted)."""
    check = summary["client_check"]
    loop_lag = check.get("event_loop_lag_ms") or {}
    if summary.get("rebuilt"):
        console.print(
            "[yellow]rebuilt summary (the run did not finish); missing:[/] "
            + "; ".join(summary["rebuilt"]["missing"])
        )
    if check["trustworthy"] is None:
        console.print(f"[yellow]client check: not fully checked[/] — {check.get('note', '')}")
    elif check["trustworthy"]:
        console.print(
            f"[green]client check: ok[/] — send lag p99 {_fmt(check['send_lag_ms']['p99'])} ms, "
            f"event-loop lag p99 {_fmt(loop_lag.get('p99'))} / max {_fmt(loop_lag.get('max'))} ms, "
            f"CPU peak {check['cpu_peak_1s']:.0%} of a core"
        )
    else:
        console.print("[bold red]client check: NOT TRUSTWORTHY[/] — " + "; ".join(check["reasons"]))
    console.print(f"results: {summary['output_dir']}")


def _print_server(server: dict[str, Any], console: Console) -> None:
    if "error" in server:
        console.print(f"[yellow]server metrics: {server['error']}[/]")
        return
    kv = server.get("kv_cache_usage") or {}
    parts = [f"dialect {server.get('dialect')}"]
    if kv:
        parts.append(
            f"KV usage mean {_pct(kv.get('mean'))} p99 {_pct(kv.get('p99'))} max {_pct(kv.get('max'))}, "
            f"above 90% for {_fmt(kv.get('time_above_90pct_s'))} s"
        )
    for key, label in (("num_running", "running"), ("num_waiting", "waiting")):
        d = server.get(key) or {}
        if d:
            parts.append(f"{label} mean {_fmt(d.get('mean'))} max {_fmt(d.get('max'))}")
    if server.get("preemptions") is not None:
        parts.append(f"preemptions {server['preemptions']:g}")
    pc = server.get("prefix_cache") or {}
    if pc.get("hit_rate") is not None:
        parts.append(f"prefix-cache hit rate {_pct(pc['hit_rate'])}")
    sd = server.get("spec_decode") or {}
    if sd.get("acceptance_rate") is not None:
        parts.append(
            f"speculative acceptance {_pct(sd['acceptance_rate'])}, mean accepted length "
            f"{_fmt(sd.get('mean_accepted_length'))}"
        )
    console.print("server: " + "; ".join(parts))
    lat = server.get("latency_s") or {}
    if lat.get("ttft") or lat.get("e2e"):
        from loadgen.scrape.summary import format_bucket

        bits = []
        for key in ("ttft", "e2e"):
            d = lat.get(key) or {}
            if d.get("p50") is not None:
                bits.append(f"{key.upper()} p50 {format_bucket(d['p50'])}, p99 {format_bucket(d['p99'])}")
        console.print(
            "server's own histograms (a quantile is the bucket holding it, not a point): " + "; ".join(bits),
            highlight=False,
        )


def _print_groups(tag: str, groups: dict[str, Any], console: Console) -> None:
    t = Table(title=f"latency by {tag} (ms)", header_style="bold")
    columns = (
        tag,
        "ok/n",
        "truncated",
        "out tok",
        "reasoning tok",
        *(latency_column(k, q) for k, q in GROUP_LATENCIES),
    )
    for col in columns:
        t.add_column(col, justify="left" if col == tag else "right")
    for name, g in groups.items():
        t.add_row(
            name,
            f"{g['ok']}/{g['requests']}",
            str(g["truncated"]),
            _fmt(g["mean_output_tokens"]),
            _fmt(g["mean_reasoning_tokens"]),
            *(_fmt(g[k][q]) for k, q in GROUP_LATENCIES),
        )
    console.print(t)


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v:.1%}"
