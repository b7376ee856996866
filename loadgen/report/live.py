"""The live progress view on a TTY: sent, in flight, done, errors, rolling TTFT/TTFVT/TPOT percentiles."""

from __future__ import annotations

import asyncio
from time import perf_counter_ns
from typing import Protocol

import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from loadgen.analysis.metrics import INTERVAL, interval_ms
from loadgen.records.columns import COUNT_FIELDS, TIME_FIELDS, RequestColumns
from loadgen.records.record import STATUS_OK, RequestRecord

__all__ = ["LiveView", "SenderCounters"]

LIVE_KEYS = ("ttft", "ttfvt", "tpot")


class SenderCounters(Protocol):
    """What the live line shows of a sender's counters (``dispatch.DispatchStats`` is one)."""

    sent: int
    in_flight: int
    waiting_for_slot: int
    done: int
    errors: int


class LiveView:
    """Keeps the lifecycle times of the last ``window`` successful requests in fixed arrays (a ring: memory never
    grows with the run) and redraws four times a second, the latencies computed as ``loadgen.analysis.metrics`` defines
    them."""

    def __init__(self, console: Console, total: int, stats: SenderCounters, window: int = 500) -> None:
        self.console = console
        self.total = total
        self.stats = stats  # the sender's live counters (DispatchStats), read at every redraw
        self.window = window
        self._t = {k: np.full(window, np.nan) for k in TIME_FIELDS}
        self._n = {k: np.full(window, np.nan) for k in COUNT_FIELDS}
        self._conn = np.full(window, -1, dtype=np.int8)
        self.seen = 0  # successful requests observed
        self.t_start = perf_counter_ns()
        self._live: Live | None = None

    def observe(self, rec: RequestRecord) -> None:
        if rec.status != STATUS_OK:
            return
        i = self.seen % self.window
        self.seen += 1
        for k, col in self._t.items():
            v = getattr(rec, k)
            col[i] = np.nan if v is None else v
        for k, col in self._n.items():
            v = getattr(rec, k)
            col[i] = np.nan if v is None else v
        self._conn[i] = -1 if rec.conn_reused is None else int(rec.conn_reused)

    def latencies(self) -> dict[str, np.ndarray]:
        """{key: ms} over the requests in the window (missing values dropped)."""
        n = min(self.seen, self.window)
        if n == 0:
            return {k: np.empty(0) for k in LIVE_KEYS}
        cols = RequestColumns.of_times(
            {k: v[:n] for k, v in self._t.items()}, {k: v[:n] for k, v in self._n.items()}, self._conn[:n]
        )
        out = {}
        for k in LIVE_KEYS:
            v = interval_ms(cols, k)
            out[k] = v[~np.isnan(v)]
        return out

    def _render(self) -> Group:
        s = self.stats
        elapsed = (perf_counter_ns() - self.t_start) / 1e9
        line1 = (
            f"[bold]{elapsed:6.1f} s[/]  sent {s.sent}/{self.total}  in flight {s.in_flight}"
            + (f"  waiting for a slot {s.waiting_for_slot}" if s.waiting_for_slot else "")
            + f"  done {s.done}  "
            + (f"[red]errors {s.errors}[/]" if s.errors else "errors 0")
        )
        parts = []
        lat = self.latencies()
        for key in LIVE_KEYS:
            values = lat[key]
            if values.size:
                p50, p99 = np.percentile(values, (50, 99))
                parts.append(f"{INTERVAL[key].name} p50 {p50:,.0f} / p99 {p99:,.0f} ms")
        line2 = "  ".join(parts) or "waiting for the first responses..."
        shown = min(self.seen, self.window)
        return Group(Text.from_markup(line1), Text(f"         last {shown} requests: {line2}"))

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
