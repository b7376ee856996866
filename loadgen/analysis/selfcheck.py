"""The client checks itself: event-loop lag and CPU, so a run can say when its own numbers are not trustworthy.

Memory stays fixed however long the run: the lag samples (100 a second) go into a log histogram with exact count
and maximum (``loadgen.analysis.metrics.LogHistogram``: percentiles within 0.6 %), the CPU windows into their peak.
"""

from __future__ import annotations

import asyncio
import gc
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any

import numpy as np

from loadgen.analysis.distribution import LogHistogram

__all__ = ["SelfCheck", "process_cpu_s", "wall_clock_ns"]


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


@dataclass(slots=True)
class SelfCheck:
    """Samples the event loop's lateness every ``interval_s`` and the process CPU once a second."""

    interval_s: float = 0.01
    lag_ms: LogHistogram = field(default_factory=LogHistogram)  # how late each 10 ms timer woke
    cpu_peak_window: float | None = None  # the highest CPU share of one core over a ~1 s window
    _cpu0: float = 0.0
    _wall0: int = 0
    cpu_total_s: float = 0.0
    wall_total_s: float = 0.0
    # the garbage collector's passes while it ran, per generation: count, longest and total pause (ms); a pass
    # holds the loop, so a long one is a stall whose cause the summary can name
    gc_passes: list[int] = field(default_factory=lambda: [0, 0, 0])
    gc_max_ms: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    gc_total_ms: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    # the longest pass in this thread's own CPU time: a wall-clock pause far above it was the machine's (a core
    # taken away mid-pass), not the collector's work
    gc_max_cpu_ms: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    _gc_t: int = 0
    _gc_cpu: int = 0
    # when the longest stall began (s from t0: when the late timer was due) and the run's phase around it
    # (``phase()``'s answer at the last wake-up before the stall and at the one that ended it): where to look
    t0_ns: int | None = None
    phase: Callable[[], str] | None = None
    lag_max_at_s: float | None = None
    lag_max_phase: str | None = None

    def _gc_event(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_t = perf_counter_ns()
            self._gc_cpu = time.thread_time_ns()
            return
        g = info.get("generation", 2)
        ms = (perf_counter_ns() - self._gc_t) / 1e6
        cpu_ms = (time.thread_time_ns() - self._gc_cpu) / 1e6
        self.gc_passes[g] += 1
        self.gc_total_ms[g] += ms
        if ms > self.gc_max_ms[g]:
            self.gc_max_ms[g] = ms
        if cpu_ms > self.gc_max_cpu_ms[g]:
            self.gc_max_cpu_ms[g] = cpu_ms

    def _note_max(self, began_ns: int, phase: str | None) -> None:
        self.lag_max_at_s = None if self.t0_ns is None else round((began_ns - self.t0_ns) / 1e9, 3)
        self.lag_max_phase = phase

    def lag_max_when(self) -> dict[str, Any]:
        """When the longest stall began, s from t0, and in what phase of the run (before first send, sending,
        draining, after last end)."""
        return {"at_s": self.lag_max_at_s, "phase": self.lag_max_phase}

    def _when_text(self) -> str:
        if self.lag_max_at_s is None:
            return ""
        return f" at {self.lag_max_at_s:.3f} s" + (f" ({self.lag_max_phase})" if self.lag_max_phase else "")

    def gc_dict(self) -> dict[str, Any]:
        return {
            f"gen{g}": {
                "passes": self.gc_passes[g],
                "max_ms": round(self.gc_max_ms[g], 3),
                "max_cpu_ms": round(self.gc_max_cpu_ms[g], 3),
                "total_ms": round(self.gc_total_ms[g], 3),
            }
            for g in range(3)
        }

    async def run(self, stop: asyncio.Event) -> None:
        gc.callbacks.append(self._gc_event)
        try:
            await self._sample(stop)
        finally:
            gc.callbacks.remove(self._gc_event)

    async def _sample(self, stop: asyncio.Event) -> None:
        self._cpu0 = _cpu_s()
        self._wall0 = perf_counter_ns()
        win_cpu, win_wall = self._cpu0, self._wall0
        step = int(self.interval_s * 1e9)
        expected = perf_counter_ns() + step
        phase = self.phase
        before = phase() if phase is not None else None
        worst = 0
        while not stop.is_set():
            await asyncio.sleep(self.interval_s)
            now = perf_counter_ns()
            lag = max(now - expected, 0)
            self.lag_ms.add_one(lag / 1e6)
            if phase is not None:
                after = phase()
                if lag > worst:
                    worst = lag
                    self._note_max(expected, before if before == after else f"{before} -> {after}")
                before = after
            elif lag > worst:
                worst = lag
                self._note_max(expected, None)
            expected = now + step
            if now - win_wall >= 1_000_000_000:
                c = _cpu_s()
                share = (c - win_cpu) / ((now - win_wall) / 1e9)
                if self.cpu_peak_window is None or share > self.cpu_peak_window:
                    self.cpu_peak_window = share
                win_cpu, win_wall = c, now
        self.finish()

    @property
    def lags_ns(self) -> LogHistogram:
        """The event-loop lag samples; assigning a sequence of lags (ns) replaces them (to replay samples)."""
        return self.lag_ms

    @lags_ns.setter
    def lags_ns(self, values: Any) -> None:
        self.lag_ms = LogHistogram()
        self.lag_ms.add(np.asarray(values, dtype=np.float64) / 1e6)

    def to_dict(self) -> dict[str, Any]:
        """What a sender process sends its driver: fixed-size whatever the run's length."""
        return {
            "lag_ms": self.lag_ms.to_dict(),
            "cpu_peak_window": self.cpu_peak_window,
            "cpu_total_s": self.cpu_total_s,
            "wall_total_s": self.wall_total_s,
            "gc": self.gc_dict(),
            "lag_max_when": self.lag_max_when(),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SelfCheck:
        """The inverse of :meth:`to_dict`; raw samples (``lags_ns``, ``cpu_windows``) are replayed."""
        c = cls()
        if raw.get("lag_ms") is not None:
            c.lag_ms = LogHistogram.from_dict(raw["lag_ms"])
        else:
            c.lags_ns = [int(x) for x in raw.get("lags_ns") or []]
        peak = raw.get("cpu_peak_window")
        if peak is None and raw.get("cpu_windows"):
            peak = max(float(x) for x in raw["cpu_windows"])
        c.cpu_peak_window = None if peak is None else float(peak)
        c.cpu_total_s = float(raw.get("cpu_total_s") or 0.0)
        c.wall_total_s = float(raw.get("wall_total_s") or 0.0)
        for g, d in enumerate((raw.get("gc") or {}).get(f"gen{g}") or {} for g in range(3)):
            c.gc_passes[g] = int(d.get("passes", 0))
            c.gc_max_ms[g] = float(d.get("max_ms", 0.0))
            c.gc_total_ms[g] = float(d.get("total_ms", 0.0))
            c.gc_max_cpu_ms[g] = float(d.get("max_cpu_ms", 0.0))
        when = raw.get("lag_max_when") or {}
        c.lag_max_at_s, c.lag_max_phase = when.get("at_s"), when.get("phase")
        return c

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
        peak = self.cpu_peak_window if self.cpu_peak_window is not None else cpu_share
        # the pacing spin is voluntary waiting, not work: take it out of the peak in proportion
        peak_busy = max(peak - spin_s / wall, 0.0)
        lag = self.lag_ms.distribution()
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
                f"event-loop lag max {lag['max']:,.1f} ms > {loop_lag_max_limit_ms:g} ms: the loop stalled"
                f"{self._when_text()}, and reads that arrived meanwhile were stamped up to that late"
            )
        return {
            "trustworthy": not reasons,
            "reasons": reasons,
            "send_lag_ms": {k: send_lag_ms.get(k) for k in ("p50", "p99", "max")},
            "event_loop_lag_ms": {k: lag[k] for k in ("p50", "p99", "max")},
            "event_loop_lag_max_when": self.lag_max_when(),
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
            "gc": self.gc_dict(),
        }


def process_cpu_s() -> float:
    """Process CPU seconds so far (user + system)."""
    return _cpu_s()


def wall_clock_ns() -> int:
    return time.time_ns()
