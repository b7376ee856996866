"""A closed loop (``--rate inf`` with ``--max-concurrency``) is judged on the client's own lateness only.

The dispatcher is driven with a stand-in client whose requests each hold their slot until the previous ones are
done, so every request after the first C waits for a slot; that wait must show up as queue wait, and the
self-check must not call it send lag.
"""

import asyncio

import pytest

from loadgen.analysis.metrics import summarize
from loadgen.analysis.selfcheck import SelfCheck
from loadgen.records.record import RequestRecord
from loadgen.run.dispatch import Dispatcher
from loadgen.workload.spec import RequestSpec

N, CAP, HOLD_S = 12, 3, 0.05


class HoldingClient:
    """Stands in for StreamingClient: a request is 'sent', holds for HOLD_S, then ends."""

    class sampling:  # noqa: N801 - mimics the client's attribute
        max_tokens = 8

    def __init__(self, t0: int) -> None:
        self.t0 = t0
        self.in_flight = 0
        self.max_in_flight = 0

    async def execute(self, spec, rec: RequestRecord) -> None:
        from time import perf_counter_ns

        rec.send_ns = perf_counter_ns() - self.t0
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(HOLD_S)
        self.in_flight -= 1
        rec.end_ns = perf_counter_ns() - self.t0


@pytest.mark.parametrize("rate_inf", [True, False])
def test_slot_waits_are_queue_wait_not_send_lag(rate_inf):
    from time import perf_counter_ns

    async def main():
        t0 = perf_counter_ns() + 2_000_000
        client = HoldingClient(t0)
        # rate inf: every request planned at t=0 (the closed-loop path); else one every 1 ms under the cap
        offsets = [0] * N if rate_inf else [i * 1_000_000 for i in range(N)]
        done: list[RequestRecord] = []
        d = Dispatcher(
            client, t0, offsets, [RequestSpec(prompt="x")] * N, 0, CAP, done.append, asyncio.Event()
        )
        assert d._closed_loop is rate_inf
        await d.run()
        await d.drain()
        return client, done

    client, records = asyncio.run(main())
    assert len(records) == N and client.max_in_flight == CAP
    waited = [r for r in records if r.index >= CAP]
    for r in waited:  # each waited for a request that held a slot for HOLD_S
        assert r.slot_ns >= min(x.end_ns for x in records if x.index < r.index)
    m = summarize(records)
    lat = m["latency_ms"]
    # the last requests queued behind (N - CAP) / CAP rounds of HOLD_S each (less their planned offset)
    assert lat["queue_wait"]["max"] >= (N // CAP - 1) * HOLD_S * 1000 - (0 if rate_inf else N)
    assert lat["send_lag"]["max"] < lat["queue_wait"]["max"] / 10
    check = SelfCheck()
    check.finish()
    verdict = check.report(lat["send_lag"], 0.0, send_lag_p99_limit_ms=HOLD_S * 1000 / 2, cpu_limit=10.0)
    assert not any("send lag" in r for r in verdict["reasons"]), verdict["reasons"]


def test_nothing_is_imported_while_requests_are_being_sent(tmp_path):
    """Imports after t0 (the scrape poller's took ~40 ms) made the first requests of every run late by that much:
    in a fresh interpreter, no module may be imported between the dispatcher's creation and its last send."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = f"""
import sys
import loadgen.run.sender as R
class D(R.Dispatcher):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.snap = set(sys.modules)
    async def run(self):
        await super().run()
        print("NEW:", sorted(set(sys.modules) - self.snap))
R.Dispatcher = D
from loadgen.__main__ import main
sys.exit(main(["-n", "3", "--rate", "inf", "--max-concurrency", "2", "--output-dir", {str(tmp_path / "o")!r},
               "--no-report", "--quiet"]))
"""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, env=env)
    assert r.returncode == 0, r.stderr
    assert "NEW: []" in r.stdout, r.stdout
