"""A conversations run by turn index: TTFT vs turn and prompt length vs turn (figures, tables, console), and two
runs' turns side by side (``compare``: strip vs keep reasoning)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loadgen.report.page import fig_block, table
from loadgen.report.svg import PALETTE, Panel, Scale, esc, figure, nice_log_bounds, nice_max

_TTFT = (("ttft", "TTFT from send", None), ("ttft_from_intended", "TTFT from intended start", "5,3"))


def _per_turn(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return list((summary.get("turns") or {}).get("per_turn") or [])


def _label(summary: dict[str, Any], fallback: str) -> str:
    t = summary.get("turns") or {}
    name = str(
        summary.get("label") or (summary.get("config") or {}).get("output", {}).get("label") or fallback
    )
    history = t.get("history")
    return f"{name} ({history})" if history and history not in name else name


def ttft_by_turn_figure(runs: Sequence[tuple[str, dict[str, Any]]]) -> str | None:
    """TTFT p50 (line) and p99 (points) per turn index, one colour per run, on a log axis."""
    series = [(name, _per_turn(s)) for name, s in runs if _per_turn(s)]
    vals = [
        r[k][q] for _, rows in series for r in rows for k, _, _ in _TTFT for q in ("p50", "p99") if r[k][q]
    ]
    if not vals:
        return None
    turns = [r["turn"] for _, rows in series for r in rows]
    W, H = 640, 300
    lo, hi = nice_log_bounds(min(vals), max(vals))
    x = Scale(min(turns) - 0.3, max(turns) + 0.3, 0, W - 90)
    y = Scale(lo, hi, H - 80, 0, log=True)
    p = Panel(x, y, left=60, top=26, width=W - 90, height=H - 80, title="TTFT by turn: p50 (line), p99 (points)",
              xlabel="turn index (0: the session's first)", ylabel="ms (log)",
              xfmt=lambda v: f"{v:g}" if float(v).is_integer() else "")  # fmt: skip
    for i, (name, rows) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        xs = [r["turn"] for r in rows]
        for key, what, dash in _TTFT:
            p.line(xs, [r[key]["p50"] or float("nan") for r in rows], color=color, dash=dash,
                   label=f"{name}: {what}" if len(series) > 1 else what)  # fmt: skip
        p.points(xs, [r["ttft"]["p99"] or float("nan") for r in rows], color=color, r=3,
                 titles=[f"{name} turn {r['turn']}: TTFT p99 {r['ttft']['p99']:.1f} ms" for r in rows])  # fmt: skip
    return figure(W, H, [p.render()], title="TTFT by turn", fig_id="ttft-by-turn")


def prompt_by_turn_figure(runs: Sequence[tuple[str, dict[str, Any]]]) -> str | None:
    """Mean prompt tokens per turn index (line) and the tokens found in the prefix cache (dashed)."""
    series = [(name, _per_turn(s)) for name, s in runs if _per_turn(s)]
    vals = [r["prompt_tokens"]["mean"] or 0 for _, rows in series for r in rows]
    if not vals or max(vals) <= 0:
        return None
    turns = [r["turn"] for _, rows in series for r in rows]
    W, H = 640, 300
    x = Scale(min(turns) - 0.3, max(turns) + 0.3, 0, W - 90)
    y = Scale(0, nice_max(max(vals)), H - 80, 0)
    p = Panel(x, y, left=60, top=26, width=W - 90, height=H - 80,
              title="Prompt tokens by turn: mean (solid), cached by the server (dashed)",
              xlabel="turn index", ylabel="tokens", xfmt=lambda v: f"{v:g}" if float(v).is_integer() else "")  # fmt: skip
    for i, (name, rows) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        xs = [r["turn"] for r in rows]
        p.line(xs, [r["prompt_tokens"]["mean"] or float("nan") for r in rows], color=color,
               label=f"{name}: prompt" if len(series) > 1 else "prompt tokens")  # fmt: skip
        cached = [r.get("cached_tokens_mean") for r in rows]
        if any(c is not None for c in cached):
            p.line(xs, [float("nan") if c is None else c for c in cached], color=color, dash="5,3",
                   label=f"{name}: cached" if len(series) > 1 else "cached tokens")  # fmt: skip
    return figure(W, H, [p.render()], title="Prompt tokens by turn", fig_id="prompt-by-turn")


def turns_rows(summary: dict[str, Any]) -> list[list[str]]:
    """One row per turn index: n, ok, aborted, prompt mean, hit rate, TTFT p50/p99 (send, intended), E2E p50."""
    out = []
    for r in _per_turn(summary):
        hit = r.get("prefix_cache_hit_rate")
        out.append([
            str(r["turn"]), str(r["requests"]), str(r["ok"]), str(r["session_aborted"]),
            _f(r["prompt_tokens"]["mean"]), "-" if hit is None else f"{hit:.1%}",
            _f(r["ttft"]["p50"]), _f(r["ttft"]["p99"]), _f(r["ttft_from_intended"]["p50"]),
            _f(r["ttft_from_intended"]["p99"]), _f(r["ttfvt"]["p50"]), _f(r["e2e"]["p50"]),
        ])  # fmt: skip
    return out


TURN_HEADER = ["turn", "n", "ok", "aborted", "prompt tok", "cache hit", "TTFT p50", "TTFT p99",
               "TTFT p50 (intended)", "TTFT p99 (intended)", "TTFVT p50", "E2E p50"]  # fmt: skip


def _f(v: Any) -> str:
    return "-" if v is None else f"{v:,.1f}"


def print_turns(summary: dict[str, Any], console: Any) -> None:
    """The per-turn table on the terminal (a conversations run only)."""
    if not _per_turn(summary):
        return
    from rich.table import Table

    t = summary["turns"]
    tab = Table(title=f"by turn ({t['sessions']} sessions, history {t.get('history') or '-'}; ms)",
                header_style="bold")  # fmt: skip
    for col in TURN_HEADER:
        tab.add_column(col, justify="right")
    for row in turns_rows(summary):
        tab.add_row(*row)
    console.print(tab)


def turns_section(summary: dict[str, Any], figs: dict[str, str]) -> str:
    """The report's section: the table and both figures."""
    rows = _per_turn(summary)
    if not rows:
        return ""
    t = summary["turns"]
    out = [f'<h2 id="turns">Conversations by turn</h2><p class="note">{t["sessions"]} sessions; history '
           f"{esc(t.get('history') or '-')}. {esc(t.get('note', ''))}.</p>"]  # fmt: skip
    html_rows = []
    for shown in turns_rows(summary):
        html_rows.append("<tr>" + "".join(f'<td class="num">{esc(v)}</td>' for v in shown) + "</tr>")
    out.append(table(TURN_HEADER, html_rows))
    name = _label(summary, "run")
    for key, fig in (("ttft_by_turn", ttft_by_turn_figure([(name, summary)])),
                     ("prompt_by_turn", prompt_by_turn_figure([(name, summary)]))):  # fmt: skip
        if fig:
            figs[key] = fig
            out.append(fig_block(fig))
    return "".join(out)


def compare_turns_lines(summaries: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    """Two or more conversations runs turn by turn (prompt tokens, hit rate, TTFT p50/p99), as text lines."""
    runs = [(name, s) for name, s in summaries if _per_turn(s)]
    if len(runs) < 2:
        return []
    turns = sorted({r["turn"] for _, s in runs for r in _per_turn(s)})
    lines = ["by turn: " + "  |  ".join(_label(s, n) for n, s in runs)]
    head = f"{'turn':>4}  " + "  |  ".join(
        f"{'prompt':>8} {'hit':>6} {'TTFT p50':>9} {'p99':>9}" for _ in runs
    )
    lines.append(head)
    for k in turns:
        parts = []
        for _, s in runs:
            r = next((x for x in _per_turn(s) if x["turn"] == k), None)
            if r is None:
                parts.append(f"{'-':>8} {'-':>6} {'-':>9} {'-':>9}")
                continue
            hit = r.get("prefix_cache_hit_rate")
            parts.append(
                f"{_f(r['prompt_tokens']['mean']):>8} {'-' if hit is None else f'{hit:.0%}':>6} "
                f"{_f(r['ttft']['p50']):>9} {_f(r['ttft']['p99']):>9}"
            )
        lines.append(f"{k:>4}  " + "  |  ".join(parts))
    return lines


def compare_turns_section(compare: dict[str, Any], figs: dict[str, str]) -> str:
    """compare.html's section for conversations runs: both figures with every configuration's first run."""
    runs = [
        (_label({"turns": t}, str(name)), {"turns": t}) for name, t in (compare.get("turns") or {}).items()
    ]
    if len(runs) < 2:
        return ""
    out = ['<h2 id="turns">Conversations by turn</h2><p class="note">The first run of each configuration: '
           "TTFT and prompt tokens per turn index (reasoning stripped from the history or kept).</p>"]  # fmt: skip
    for key, fig in (("compare_ttft_by_turn", ttft_by_turn_figure(runs)),
                     ("compare_prompt_by_turn", prompt_by_turn_figure(runs))):  # fmt: skip
        if fig:
            figs[key] = fig
            out.append(fig_block(fig))
    lines = compare_turns_lines(runs)
    out.append("<pre>" + esc("\n".join(lines)) + "</pre>")
    return "".join(out)
