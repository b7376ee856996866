"""Senders that each send a shard of one plan on one shared clock send the whole plan, request for request."""

from __future__ import annotations

import asyncio

from loadgen.clock import RunClock
from loadgen.plan import plan_requests
from loadgen.records import RecordSink, read_records
from loadgen.sender import run_shard
from tests.integration.test_client import config, stream_writes
from tests.scripted_server import Script


def test_three_senders_on_one_clock_send_the_whole_plan(scripted, tmp_path):
    scripted.default = Script(stream_writes(gap=0.001, first=0.002))
    n = 3
    done: list[int] = []

    async def main():
        await scripted.start()
        try:
            cfg = config(scripted, tmp_path, rate=200.0, num_requests=30, warmup=4)
            plan = plan_requests(cfg)
            clock = RunClock()
            ready = 0
            go = asyncio.Event()

            async def before_t0():
                # as sender processes will: each reports ready; t0 is chosen once all are, for all of them
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
            return plan
        finally:
            await scripted.stop()

    plan = asyncio.run(main())
    assert done == [len(plan.shard(k, n)) for k in range(n)]
    shards = [read_records(tmp_path / f"shard{k}.jsonl") for k in range(n)]
    for k, recs in enumerate(shards):
        assert {r.index % n for r in recs} == {k}
    records = sorted((r for recs in shards for r in recs), key=lambda r: r.index)
    assert [r.index for r in records] == list(range(len(plan)))  # every request once, merged by index
    for r in records:
        assert r.status == "ok"
        assert r.intended_ns == plan.offsets_ns[r.index]  # one schedule, one t0 for every sender
        assert r.warmup == (r.index < 4)
        assert r.max_tokens == plan.specs[r.index].max_tokens == 16
        assert r.send_ns >= r.intended_ns  # nobody sent before its planned time on the shared clock
    posts = [a for a in scripted.arrivals if a.path.endswith("/completions")]
    assert len(posts) == len(plan) and {a.body["max_tokens"] for a in posts} == {16}
