"""The client checks itself: event-loop lag and CPU, so a run can say when its own numbers are not trustworthy."""

from __future__ import annotations

import asyncio
import resource
import time
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any

import numpy as np

from loadgen.metrics import distribution


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


@dataclass(slots=True)
class SelfCheck:
    """Samples the event loop's lateness every ``interval_s`` and the process CPU once a second."""

    interval_s: float = 0.01
    lags_ns: list[int] = field(default_factory=list)
    cpu_windows: list[float] = field(default_factory=list)  # CPU share of one core, per ~1 s window
    _cpu0: float = 0.0
    _wall0: int = 0
    cpu_total_s: float = 0.0
    wall_total_s: float = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        self._cpu0 = _cpu_s()
        self._wall0 = perf_counter_ns()
        win_cpu, win_wall = self._cpu0, self._wall0
        step = int(self.interval_s * 1e9)
        expected = perf_counter_ns() + step
        while not stop.is_set():
            await asyncio.sleep(self.interval_s)
            now = perf_counter_ns()
            self.lags_ns.append(max(now - expected, 0))
            expected = now + step
            if now - win_wall >= 1_000_000_000:
                c = _cpu_s()
                self.cpu_windows.append((c - win_cpu) / ((now - win_wall) / 1e9))
                win_cpu, win_wall = c, now
        self.finish()

    def finish(self) -> None:
        self.cpu_total_s = _cpu_s() - self._cpu0
        self.wall_total_s = (perf_counter_ns() - self._wall0) / 1e9

    def report(
        self,
        send_lag_ms: dict[str, Any],
        spin_s: float,
        send_lag_p99_limit_ms: float,
        cpu_limit: float,
        loop_lag_p99_limit_ms: float | None = None,
        loop_lag_max_limit_ms: float = 50.0,
    ) -> dict[str, Any]:
        """Numbers plus a verdict: not trustworthy when send lag p99, event-loop lag or client CPU passes its limit.

        Event-loop lag is how late the loop woke a 10 ms timer: while the loop is held, every read waiting on a
        socket is stamped late by as much. Its p99 is held to ``loop_lag_p99_limit_ms`` (default: the send-lag
        limit) and its max to ``loop_lag_max_limit_ms``: one long stall is a single sample that a p99 never shows.
        """
        if loop_lag_p99_limit_ms is None:
            loop_lag_p99_limit_ms = send_lag_p99_limit_ms
        wall = max(self.wall_total_s, 1e-9)
        cpu_share = self.cpu_total_s / wall
        busy_share = max(self.cpu_total_s - spin_s, 0.0) / wall
        peak = max(self.cpu_windows) if self.cpu_windows else cpu_share
        # the pacing spin is voluntary waiting, not work: take it out of the peak in proportion
        peak_busy = max(peak - spin_s / wall, 0.0)
        lag = distribution(np.asarray(self.lags_ns, dtype=np.float64) / 1e6)
        reasons = []
        p99 = send_lag_ms.get("p99")
        if p99 is not None and p99 > send_lag_p99_limit_ms:
            reasons.append(
                f"send lag p99 {p99:.2f} ms > {send_lag_p99_limit_ms:g} ms: requests left later than planned"
            )
        if peak_busy > cpu_limit:
            reasons.append(
                f"client CPU peaked at {peak_busy:.0%} of a core (limit {cpu_limit:.0%}): latencies may include "
                "client queueing"
            )
        if lag["p99"] is not None and lag["p99"] > loop_lag_p99_limit_ms:
            reasons.append(
                f"event-loop lag p99 {lag['p99']:.1f} ms > {loop_lag_p99_limit_ms:g} ms: timestamps may be late"
            )
        if lag["max"] is not None and lag["max"] > loop_lag_max_limit_ms:
            reasons.append(
                f"event-loop lag max {lag['max']:,.1f} ms > {loop_lag_max_limit_ms:g} ms: the loop stalled, and "
                "reads that arrived meanwhile were stamped up to that late"
            )
        return {
            "trustworthy": not reasons,
            "reasons": reasons,
            "send_lag_ms": {k: send_lag_ms.get(k) for k in ("p50", "p99", "max")},
            "event_loop_lag_ms": {k: lag[k] for k in ("p50", "p99", "max")},
            "limits": {
                "send_lag_p99_ms": send_lag_p99_limit_ms,
                "event_loop_lag_p99_ms": loop_lag_p99_limit_ms,
                "event_loop_lag_max_ms": loop_lag_max_limit_ms,
                "cpu_share": cpu_limit,
            },
            "cpu_s": self.cpu_total_s,
            "wall_s": self.wall_total_s,
            "cpu_share": cpu_share,
            "cpu_share_excluding_pacing_spin": busy_share,
            "cpu_peak_1s": peak_busy,
            "pacing_spin_s": spin_s,
        }


def process_cpu_s() -> float:
    """Process CPU seconds so far (user + system)."""
    return _cpu_s()


def wall_clock_ns() -> int:
    return time.time_ns()
