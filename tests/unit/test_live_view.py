"""The live progress view reads the sender's own counters at every redraw, and the latencies of its window."""

from __future__ import annotations

import io

from rich.console import Console

from loadgen.records.record import RequestRecord
from loadgen.report.live import LiveView
from loadgen.run.dispatch import DispatchStats


def _text(view: LiveView) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(view._render())
    return console.file.getvalue()


def test_the_live_line_shows_the_senders_counters_as_they_change():
    stats = DispatchStats()
    view = LiveView(Console(file=io.StringIO()), 10, stats)
    before = _text(view)
    assert "sent 0/10  in flight 0  done 0  errors 0" in before
    assert "waiting for a slot" not in before and "waiting for the first responses" in before
    stats.sent, stats.in_flight, stats.waiting_for_slot, stats.done, stats.errors = 7, 3, 2, 4, 1
    ms = 1_000_000
    view.observe(
        RequestRecord(
            index=0, send_ns=0, first_byte_ns=10 * ms, first_chunk_ns=20 * ms, first_token_ns=20 * ms,
            first_content_ns=20 * ms, last_token_ns=120 * ms, end_ns=120 * ms, completion_tokens=11,
        )
    )  # fmt: skip
    after = _text(view)
    assert "sent 7/10  in flight 3  waiting for a slot 2  done 4  errors 1" in after
    assert "last 1 requests" in after and "p50 20 / p99 20 ms" in after
