"""The senders of a multi-sender run (``--workers`` / ``--ray``) as the report and the console show them: where each
ran, its clock, its share of the requests and its own self-check, so the one that was not trustworthy, or was lost,
is named rather than averaged away. Runs of one process have no ``senders`` section and show nothing here."""

from __future__ import annotations

from typing import Any

from loadgen.report.svg import esc

__all__ = ["sender_rows", "senders_html", "senders_lines"]


def _ms(ns: Any) -> float | None:
    return None if ns is None else ns / 1e6


def sender_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One plain row per sender: the summary's ``senders.list`` joined with ``client_check.senders``."""
    sec = summary.get("senders") or {}
    checks = {c.get("sender"): c for c in (summary.get("client_check") or {}).get("senders") or []}
    rows = []
    for s in sec.get("list") or []:
        c = checks.get(s.get("sender")) or {}
        clock = s.get("clock") or {}
        lag = c.get("event_loop_lag_ms") or {}
        rows.append(
            {
                "sender": s.get("sender"),
                "node": s.get("node_ip") or s.get("host"),
                "process": s.get("actor") or s.get("pid"),
                "planned": s.get("planned"),
                "records": s.get("records"),
                "worker_lost": s.get("worker_lost"),
                "offset_uncertainty_ms": _ms(clock.get("uncertainty_ns")),
                "drift_ms": _ms(clock.get("drift_ns")),
                "send_lag_p99_ms": (c.get("send_lag_ms") or {}).get("p99"),
                "loop_lag_p99_ms": lag.get("p99"),
                "loop_lag_max_ms": lag.get("max"),
                "cpu_peak": c.get("cpu_peak_1s"),
                "trustworthy": c.get("trustworthy"),
                "reasons": list(c.get("reasons") or []),
                "lost": s.get("lost"),
            }
        )
    return rows


def senders_html(summary: dict[str, Any]) -> str:
    """The report's "Senders" section ("" for a one-process run)."""
    from loadgen.report.page import cell, fmt, table

    sec = summary.get("senders")
    if not sec:
        return ""
    kind = "Ray actors" if sec.get("mode") == "ray" else "local processes"
    err = sec.get("schedule_error") or {}
    parts = [
        '<h2 id="senders">Senders</h2>',
        f'<p class="note">{fmt(sec.get("count"))} senders ({kind}) on {fmt(sec.get("nodes"))} node(s) shared the '
        "one plan: sender <i>k</i> of <i>n</i> sent requests <i>i</i> with <i>i</i> mod <i>n</i> = <i>k</i>, on one "
        f"t0. {esc(sec.get('sizing') or '')}. Clock offsets imply a schedule error of at most ±"
        f"{fmt(err.get('vs_driver_max_ms'), 'dec')} ms against the driver, "
        f"{fmt(err.get('between_senders_max_ms'), 'dec')} ms between two senders. The run is trustworthy only if "
        "every sender is.</p>",
    ]
    lost = [r for r in sender_rows(summary) if r["lost"]]
    if lost:
        items = "".join(
            f"<li>sender {r['sender']} on {esc(r['node'])}: {esc(r['lost'])} ({fmt(r['worker_lost'])} worker_lost "
            "records)</li>"
            for r in lost
        )
        parts.append(
            f'<div class="verdict bad" id="senders-lost" data-count="{len(lost)}"><b>{len(lost)} sender(s) lost.</b> '
            f"The run went on without them; their requests without a record count as failed (worker_lost).<ul>"
            f"{items}</ul></div>"
        )
    rows = []
    for r in sender_rows(summary):
        ok = r["trustworthy"]
        verdict = (
            '<td class="ok">ok</td>'
            if ok
            else f'<td class="bad" title="{esc("; ".join(r["reasons"]))}"><b>NOT trustworthy</b></td>'
        )
        k = r["sender"]
        attrs = "" if ok else ' class="untrusted"'
        rows.append(
            f'<tr data-sender="{k}"{attrs}>'
            + cell(k, cls="")
            + cell(r["node"], cls="")
            + cell(r["process"], cls="")
            + cell(r["planned"], f"senders.list.{k}.planned")
            + cell(r["records"], f"senders.list.{k}.records")
            + cell(r["worker_lost"], f"senders.list.{k}.worker_lost")
            + cell(r["offset_uncertainty_ms"], kind="dec")
            + cell(r["drift_ms"], kind="dec")
            + cell(r["send_lag_p99_ms"], f"client_check.senders.{k}.send_lag_ms.p99")
            + cell(r["loop_lag_p99_ms"])
            + cell(r["loop_lag_max_ms"])
            + cell(r["cpu_peak"], kind="pct")
            + verdict
            + "</tr>"
        )
        if not ok and r["reasons"]:
            rows.append(f'<tr class="why"><td></td><td colspan="12">{esc("; ".join(r["reasons"]))}</td></tr>')
    head = ("sender", "node", "process", "planned", "records", "worker_lost", "offset ± (ms)", "drift (ms)",
            "send lag p99 (ms)", "loop lag p99 (ms)", "loop lag max (ms)", "CPU peak", "self-check")  # fmt: skip
    parts.append(table(head, rows))
    return "".join(parts)


def senders_lines(summary: dict[str, Any]) -> list[str]:
    """The console's lines about the senders (none for a one-process run)."""
    sec = summary.get("senders")
    if not sec:
        return []
    kind = "Ray actors" if sec.get("mode") == "ray" else "local processes"
    err = sec.get("schedule_error") or {}
    out = [
        f"senders: {sec.get('count')} {kind} on {sec.get('nodes')} node(s); schedule error from clock offsets "
        f"≤ ±{err.get('vs_driver_max_ms', 0):.3f} ms"
    ]
    for r in sender_rows(summary):
        state = "LOST" if r["lost"] else ("ok" if r["trustworthy"] else "NOT trustworthy")
        lag = r["send_lag_p99_ms"]
        cpu = r["cpu_peak"]
        out.append(
            f"  sender {r['sender']} on {r['node']}: {r['records'] or 0:,}/{r['planned'] or 0:,} records"
            + (f", {r['worker_lost']:,} worker_lost" if r["worker_lost"] else "")
            + (f", send lag p99 {lag:.2f} ms" if lag is not None else "")
            + (f", CPU peak {cpu:.0%}" if cpu is not None else "")
            + f" - {state}"
        )
    return out
