"""The live progress view on a TTY: sent, in flight, done, errors, rolling TTFT/TPOT percentiles."""

from __future__ import annotations

import asyncio
from collections import deque
from time import perf_counter_ns

import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from loadgen.dispatch import DispatchStats
from loadgen.metrics import request_latencies
from loadgen.records import STATUS_OK, RequestRecord


class LiveView:
    """Keeps the last few hundred finished requests' TTFT/TPOT; redraws four times a second."""

    def __init__(self, console: Console, total: int, window: int = 500) -> None:
        self.console = console
        self.total = total
        self.ttft: deque[float] = deque(maxlen=window)
        self.ttfvt: deque[float] = deque(maxlen=window)
        self.tpot: deque[float] = deque(maxlen=window)
        self.stats: DispatchStats | None = None
        self.t_start = perf_counter_ns()
        self._live: Live | None = None

    def observe(self, rec: RequestRecord) -> None:
        if rec.status != STATUS_OK:
            return
        lat = request_latencies(rec)
        if lat["ttft"] is not None:
            self.ttft.append(lat["ttft"])
        if lat["ttfvt"] is not None:
            self.ttfvt.append(lat["ttfvt"])
        if lat["tpot"] is not None:
            self.tpot.append(lat["tpot"])

    def _render(self) -> Group:
        s = self.stats or DispatchStats()
        elapsed = (perf_counter_ns() - self.t_start) / 1e9
        line1 = (
            f"[bold]{elapsed:6.1f} s[/]  sent {s.sent}/{self.total}  in flight {s.in_flight}"
            + (f"  waiting for a slot {s.waiting_for_slot}" if s.waiting_for_slot else "")
            + f"  done {s.done}  "
            + (f"[red]errors {s.errors}[/]" if s.errors else "errors 0")
        )
        parts = []
        for name, values in (("TTFT", self.ttft), ("TTFVT", self.ttfvt), ("TPOT", self.tpot)):
            if values:
                p50, p99 = np.percentile(np.fromiter(values, float), (50, 99))
                parts.append(f"{name} p50 {p50:,.0f} / p99 {p99:,.0f} ms")
        line2 = "  ".join(parts) or "waiting for the first responses..."
        return Group(Text.from_markup(line1), Text(f"         last {len(self.ttft)} requests: {line2}"))

    def start(self) -> None:
        """Show the view (before the run's t0: starting rich's display and its refresh thread takes a while)."""
        if self._live is None:
            self._live = Live(self._render(), console=self.console, refresh_per_second=4, transient=True)
            self._live.start()

    async def run(self, stop: asyncio.Event) -> None:
        self.start()
        live = self._live
        assert live is not None
        try:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), 0.25)
                except TimeoutError:
                    pass
                live.update(self._render())
        finally:
            self.close()

    def close(self) -> None:
        """Take the view down (idempotent)."""
        live, self._live = self._live, None
        if live is not None:
            live.stop()
