"""Senders that each send a shard of one plan on one shared clock send the whole plan, request for request: the
union of what N senders send is what one process sends with the same seed (N = 1, 2, 3, 7)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from loadgen.plan.clock import RunClock
from loadgen.plan.planner import plan_requests
from loadgen.records.columns import read_records
from loadgen.records.record import RecordSink
from loadgen.run.runner import run_async
from loadgen.run.sender import run_shard
from tests.integration.test_client import config, stream_writes
from tests.scripted_server import Script


def _bodies(server) -> list[bytes]:
    """What the server received, request for request (canonical JSON), in a stable order."""
    posts = [a for a in server.arrivals if a.path.endswith("/completions")]
    return sorted(orjson.dumps(a.body, option=orjson.OPT_SORT_KEYS) for a in posts)


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_senders_on_one_clock_send_the_one_process_plan(scripted, tmp_path, n):
    scripted.default = Script(stream_writes(gap=0.001, first=0.002))
    done: list[int] = []

    async def main():
        await scripted.start()
        try:
            # the one-process run with the same configuration and seed: the reference
            ref_cfg = config(scripted, tmp_path / "one", rate=200.0, num_requests=30, warmup=4)
            await run_async(ref_cfg, install_signal_handlers=False)
            reference = _bodies(scripted)
            scripted.arrivals.clear()

            cfg = config(scripted, tmp_path, rate=200.0, num_requests=30, warmup=4)
            plan = plan_requests(cfg)
            clock = RunClock()
            ready = 0
            go = asyncio.Event()

            async def before_t0():
                # as sender processes do: each reports ready; t0 is chosen once all are, for all of them
                nonlocal ready
                assert not clock.started
                ready += 1
                if ready == n:
                    clock.start(20_000_000)
                    go.set()
                await go.wait()

            sinks = [RecordSink(tmp_path / f"shard{k}.jsonl") for k in range(n)]
            try:
                stats = await asyncio.gather(
                    *(
                        run_shard(cfg, plan.shard(k, n), clock, sinks[k], before_t0=before_t0)
                        for k in range(n)
                    )
                )
            finally:
                for s in sinks:
                    s.close()
            done.extend(s.done for s in stats)
            return plan, reference
        finally:
            await scripted.stop()

    plan, reference = asyncio.run(main())
    assert done == [len(plan.shard(k, n)) for k in range(n)]
    shards = [read_records(tmp_path / f"shard{k}.jsonl") for k in range(n)]
    for k, recs in enumerate(shards):
        assert {r.index % n for r in recs} == ({k} if recs else set())
    records = sorted((r for recs in shards for r in recs), key=lambda r: r.index)
    assert [r.index for r in records] == list(range(len(plan)))  # every request once, merged by index
    one = {r.index: r for r in read_records(tmp_path / "one" / "out" / "requests.jsonl")}
    for r in records:
        assert r.status == "ok"
        assert r.intended_ns == plan.offsets_ns[r.index] == one[r.index].intended_ns  # one schedule, one t0
        assert r.warmup == (r.index < 4) == one[r.index].warmup
        assert r.max_tokens == plan.specs[r.index].max_tokens == 16 == one[r.index].max_tokens
        assert r.send_ns >= r.intended_ns  # nobody sent before its planned time on the shared clock
    # the server received exactly what the one-process run sent it, request for request
    assert _bodies(scripted) == reference and len(reference) == len(plan)
