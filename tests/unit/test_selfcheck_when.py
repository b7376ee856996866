"""The self-check says when its longest event-loop stall began and in what phase of the run (issue 18 item 10)."""

from __future__ import annotations

import asyncio
import time
from time import perf_counter_ns

from loadgen.analysis.client_check import pooled_check
from loadgen.analysis.selfcheck import SelfCheck


def test_the_longest_stall_is_placed_in_its_phase_and_time_from_t0():
    check = SelfCheck()
    phase = ["before first send"]

    async def main():
        stop = asyncio.Event()
        check.t0_ns, check.phase = perf_counter_ns(), lambda: phase[0]
        task = asyncio.get_running_loop().create_task(check.run(stop))
        await asyncio.sleep(0.05)
        phase[0] = "draining"
        await asyncio.sleep(0.05)
        time.sleep(0.5)  # the loop held: far longer than any wake-up the scheduler delays on a loaded machine
        await asyncio.sleep(0.05)
        stop.set()
        await task

    asyncio.run(main())
    assert check.lag_ms.max >= 400
    report = check.report({}, 0.0, 10.0, 1.0)
    when = report["event_loop_lag_max_when"]
    assert when["phase"] == "draining"
    assert any("the loop stalled at " in r and "(draining)" in r for r in report["reasons"])
    assert 0.05 <= when["at_s"] <= check.wall_total_s


def test_a_phase_that_changed_during_the_stall_names_both():
    check = SelfCheck()
    phase = ["draining"]

    async def main():
        stop = asyncio.Event()
        check.t0_ns, check.phase = perf_counter_ns(), lambda: phase[0]
        task = asyncio.get_running_loop().create_task(check.run(stop))
        await asyncio.sleep(0.05)
        time.sleep(0.5)
        phase[0] = "after last end"
        await asyncio.sleep(0.05)
        stop.set()
        await task

    asyncio.run(main())
    assert check.lag_max_phase == "draining -> after last end"


def test_the_pooled_check_keeps_the_worst_senders_when():
    a, b = SelfCheck(), SelfCheck()
    a.lag_ms.add_one(5.0)
    a.lag_max_at_s, a.lag_max_phase = 1.0, "sending"
    b.lag_ms.add_one(90.0)
    b.lag_max_at_s, b.lag_max_phase = 59.2, "after last end"
    pooled = pooled_check([{"selfcheck": a.to_dict()}, {"selfcheck": b.to_dict()}])
    assert pooled.lag_max_when() == {"at_s": 59.2, "phase": "after last end"}
    assert SelfCheck.from_dict(b.to_dict()).lag_max_when() == b.lag_max_when()
