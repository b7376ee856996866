"""The client's check of itself, for summary.json's ``client_check``: one sender judged as one, several each alone.

One sender (a one-process run): its self-check (event-loop lag, CPU, pacing spin) and the run's send lag, held to
the run's limits by ``SelfCheck.report``, the one place the limits are applied.

Several senders: each sends its own samples; its send lag comes from its own records (request ``i`` belongs to
sender ``i % n``). Each is held to the run's limits alone, so a sender on a busy node is named, not averaged away.
A Ray sender's clock offset is known within its uncertainty; when that (the schedule error it implies) passes the
send-lag limit the sender is not trustworthy either: its requests may have left that much off their planned time on
the driver's clock. A lost sender never reported its self-check, so the run cannot vouch for it. The run's
``client_check`` keeps the one-process shape (``trustworthy``, ``reasons``, ``send_lag_ms``, ``event_loop_lag_ms``,
``cpu_peak_1s``, ...): send lag over all records, event-loop lag over all samples, CPU of the busiest sender (a
share of one core, as for one process). Each reason names its sender and node, and ``senders`` holds every
sender's own check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "one_sender_check",
    "pooled_check",
    "restore_check",
    "schedule_error",
    "send_lag_ms",
    "sender_name",
    "senders_check",
]

import numpy as np

from loadgen.analysis.distribution import distribution
from loadgen.analysis.metrics import interval_ms
from loadgen.analysis.selfcheck import SelfCheck
from loadgen.config import RunConfig
from loadgen.records.columns import RequestColumns


def restore_check(raw: dict[str, Any]) -> SelfCheck:
    """A sender's ``SelfCheck`` from what it sent (``SelfCheck.to_dict``)."""
    return SelfCheck.from_dict(raw)


def pooled_check(outcomes: Sequence[dict[str, Any] | None]) -> SelfCheck:
    """Every sender's samples together (event-loop lags pooled; CPU of the busiest, as a share of one core)."""
    c = SelfCheck()
    best = 0.0
    for o in outcomes:
        if o is None:
            continue
        one = restore_check(o["selfcheck"])
        if one.lag_ms.n and (not c.lag_ms.n or one.lag_ms.max > c.lag_ms.max):
            c.lag_max_at_s, c.lag_max_phase = one.lag_max_at_s, one.lag_max_phase  # the worst sender's
        c.lag_ms.merge(one.lag_ms)
        share = one.cpu_total_s / one.wall_total_s if one.wall_total_s else 0.0
        if share >= best:
            best = share
            c.cpu_total_s, c.wall_total_s = one.cpu_total_s, one.wall_total_s
            c.cpu_peak_window = one.cpu_peak_window
    return c


def send_lag_ms(cols: RequestColumns, rows: np.ndarray | None = None) -> dict[str, Any]:
    """Send lag (ms) of the measured, dispatched requests (of ``rows``, a mask), as ``metrics.summarize``
    counts it: the catalogue's ``send_lag``."""
    use = cols.measured & ~np.isnan(cols.t["dispatched_ns"])
    if rows is not None:
        use &= rows
    lag = interval_ms(cols, "send_lag")[use]
    return distribution(lag[~np.isnan(lag)])


def _limits(cfg: RunConfig) -> dict[str, Any]:
    a = cfg.analysis
    return {
        "send_lag_p99_limit_ms": a.send_lag_p99_limit_ms,
        "cpu_limit": a.client_cpu_limit,
        "loop_lag_p99_limit_ms": a.loop_lag_p99_limit_ms,
        "loop_lag_max_limit_ms": a.loop_lag_max_limit_ms,
    }


def sender_name(k: int, info: dict[str, Any]) -> str:
    node = info.get("node_ip") or info.get("host") or "?"
    return f"sender {k} on {node} (pid {info.get('pid', '?')})"


def senders_check(
    cfg: RunConfig,
    cols: RequestColumns,
    infos: Sequence[dict[str, Any]],
    outcomes: Sequence[dict[str, Any] | None],
    lost: dict[int, str],
) -> dict[str, Any]:
    """The run's ``client_check``: one check per sender, and the run's verdict from all of them."""
    n = len(infos)
    sender_of = cols.index % n
    lim = _limits(cfg)
    per: list[dict[str, Any]] = []
    reasons: list[str] = []
    for k in range(n):
        info, outcome = infos[k], outcomes[k]
        name = sender_name(k, info)
        clock = info.get("clock") or {}
        entry: dict[str, Any] = {
            "sender": k,
            "node": info.get("node_ip") or info.get("host"),
            "host": info.get("host"),
            "pid": info.get("pid"),
        }
        if outcome is None:
            why = lost.get(k) or "it never reported"
            entry.update(trustworthy=False, reasons=[f"lost before reporting its self-check ({why})"])
        else:
            check = restore_check(outcome["selfcheck"]).report(
                send_lag_ms(cols, sender_of == k),
                float(outcome.get("spin_s") or 0.0),
                lim["send_lag_p99_limit_ms"],
                lim["cpu_limit"],
                loop_lag_p99_limit_ms=lim["loop_lag_p99_limit_ms"],
                loop_lag_max_limit_ms=lim["loop_lag_max_limit_ms"],
            )
            unc_ms = (clock.get("uncertainty_ns") or 0) / 1e6
            if unc_ms > lim["send_lag_p99_limit_ms"]:
                check["trustworthy"] = False
                check["reasons"].append(
                    f"its clock offset to the driver is known only within ±{unc_ms:.2f} ms (> the "
                    f"{lim['send_lag_p99_limit_ms']:g} ms send-lag limit): its schedule may be that far off"
                )
            entry.update(check)
            entry.pop("limits", None)
        entry["clock"] = clock
        per.append(entry)
        reasons.extend(f"{name}: {r}" for r in entry["reasons"])
    pooled = pooled_check(outcomes).report(
        send_lag_ms(cols),
        sum(float(o.get("spin_s") or 0.0) for o in outcomes if o is not None),
        lim["send_lag_p99_limit_ms"],
        lim["cpu_limit"],
        loop_lag_p99_limit_ms=lim["loop_lag_p99_limit_ms"],
        loop_lag_max_limit_ms=lim["loop_lag_max_limit_ms"],
    )
    done = [o for o in outcomes if o is not None]
    pooled.update(
        {
            "trustworthy": not reasons,
            "reasons": reasons,
            "cpu_peak_1s": max((e.get("cpu_peak_1s") or 0.0 for e in per), default=0.0),
            "cpu_s": sum(float(o["selfcheck"].get("cpu_total_s") or 0.0) for o in done),
            "untrustworthy_senders": [e["sender"] for e in per if not e["trustworthy"]],
            "senders": per,
            "note": "CPU figures are the busiest sender's, as a share of one core; cpu_s is all senders' CPU",
        }
    )
    return pooled


def one_sender_check(cfg: RunConfig, send_lag: dict[str, Any], outcome: dict[str, Any]) -> dict[str, Any]:
    """A one-process run's ``client_check``: its sender's self-check against the run's limits."""
    lim = _limits(cfg)
    return restore_check(outcome["selfcheck"]).report(
        send_lag,
        float(outcome.get("spin_s") or 0.0),
        lim["send_lag_p99_limit_ms"],
        lim["cpu_limit"],
        loop_lag_p99_limit_ms=lim["loop_lag_p99_limit_ms"],
        loop_lag_max_limit_ms=lim["loop_lag_max_limit_ms"],
    )


def schedule_error(infos: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The schedule error the senders' clock offsets imply: each sender's t0 is the driver's within its
    uncertainty, so two senders' schedules may differ by up to the sum of the two largest."""
    unc = sorted(((i.get("clock") or {}).get("uncertainty_ns") or 0 for i in infos), reverse=True)
    worst = unc[0] if unc else 0
    pair = sum(unc[:2]) if len(unc) > 1 else worst
    return {
        "vs_driver_max_ms": worst / 1e6,
        "between_senders_max_ms": pair / 1e6,
        "note": "a sender's start is the driver's within ± its clock-offset uncertainty (half its best round "
        "trip); 0 for senders on the driver's host, which share its CLOCK_MONOTONIC",
    }
