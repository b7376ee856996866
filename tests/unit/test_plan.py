"""The request plan: one final spec and one absolute offset per request, split among senders by index."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from loadgen.config import (
    EndpointConfig,
    LengthDist,
    RunConfig,
    SamplingConfig,
    ScheduleConfig,
    WorkloadConfig,
)
from loadgen.errors import ConfigError
from loadgen.plan.planner import RequestPlan, merge, plan_requests
from loadgen.workload.sampling import parse_budgets
from loadgen.workload.spec import RequestSpec


def _cfg(**sched) -> RunConfig:
    sched.setdefault("num_requests", 40)
    sched.setdefault("warmup", 3)
    return RunConfig(
        endpoint=EndpointConfig(base_url="http://127.0.0.1:1"),
        schedule=ScheduleConfig(rate=10.0, cv=2.0, seed=7, **sched),
        sampling=SamplingConfig(max_tokens=64),
    )


def test_a_plan_is_a_frozen_value_with_absolute_offsets():
    plan = plan_requests(_cfg())
    assert isinstance(plan, RequestPlan) and len(plan) == 43 and plan.total == 43
    assert plan.offsets_ns.dtype == np.int64 and plan.offsets_ns[0] == 0
    assert np.all(np.diff(plan.offsets_ns) >= 0)
    assert list(plan.indices) == list(range(43)) and plan.warmup == 3 and plan.seed == 7
    assert plan.measured == 40
    assert plan.describe() == plan.schedule.describe() and plan.describe()["cv"] == 2.0
    with pytest.raises(ValueError):
        plan.offsets_ns[0] = 5  # read-only
    with pytest.raises(AttributeError):
        plan.seed = 1  # type: ignore[misc]
    # the same configuration plans the same requests
    again = plan_requests(_cfg())
    assert np.array_equal(again.offsets_ns, plan.offsets_ns) and again.specs == plan.specs


def test_each_spec_carries_its_final_max_tokens():
    plan = plan_requests(_cfg())
    assert {s.max_tokens for s in plan.specs} == {64}  # --max-tokens, for specs without a budget of their own
    own = replace(_cfg(), workload=WorkloadConfig(output_len=LengthDist("uniform", 5, 9)))
    assert all(5 <= s.max_tokens <= 9 for s in plan_requests(own).specs)  # their own budget wins
    none = replace(_cfg(), sampling=SamplingConfig())
    assert {s.max_tokens for s in plan_requests(none).specs} == {None}  # the server's default
    sweep = replace(
        _cfg(), sampling=SamplingConfig(), workload=WorkloadConfig(budgets=parse_budgets("16,32"))
    )
    specs = plan_requests(sweep).specs
    assert {s.max_tokens for s in specs} == {16, 32}
    assert all(s.max_tokens == s.tags["budget"] for s in specs)


def test_simulated_runs_hint_the_reference_and_given_specs_replace_the_workload():
    given = [RequestSpec(prompt=f"q{i}", reference=str(i), tags={"difficulty": "hard"}) for i in range(50)]
    sim = replace(_cfg(), endpoint=EndpointConfig(base_url="http://127.0.0.1:0", simulated=True))
    plan = plan_requests(sim, given)
    assert len(plan) == 43 and plan.specs[5].prompt == "q5" and plan.specs[5].max_tokens == 64
    assert plan.specs[5].extra_body == {"sim": {"reference": "5", "difficulty": 0.85}}
    assert plan_requests(_cfg(), given).specs[5].extra_body is None  # a real server gets no hint
    with pytest.raises(ConfigError, match="43 arrivals planned but only 10 requests given"):
        plan_requests(_cfg(), given[:10])


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_shards_split_by_index_and_merge_back_request_for_request(n):
    plan = plan_requests(_cfg())
    shards = [plan.shard(k, n) for k in range(n)]
    for k, sh in enumerate(shards):
        assert (sh.shard_k, sh.shard_n, sh.total, sh.warmup, sh.seed) == (k, n, plan.total, 3, 7)
        assert all(int(i) % n == k for i in sh.indices)
        assert np.all(np.diff(sh.offsets_ns) >= 0)  # each sender's requests stay in send order
        for i, off, spec in sh.requests():  # global indices, with their own offsets and specs
            assert off == plan.offsets_ns[i] and spec == plan.specs[i]  # made when asked: equal, not the same
            assert sh.spec_of(i) == spec
    assert sum(len(s) for s in shards) == len(plan)
    assert sorted(int(i) for s in shards for i in s.indices) == list(range(len(plan)))
    assert sum(s.measured for s in shards) == plan.measured
    for order in (shards, shards[::-1]):  # merged by index, whatever order the shards come in
        whole = merge(order)
        assert list(whole.indices) == list(range(len(plan)))
        assert np.array_equal(whole.offsets_ns, plan.offsets_ns) and whole.specs == plan.specs
        assert list(whole.requests()) == list(plan.requests())


def test_a_shard_travels_to_another_process_as_it_is():
    import pickle

    from loadgen.plan.clock import RunClock

    shard = plan_requests(_cfg()).shard(1, 3)
    back = pickle.loads(pickle.dumps(shard))
    assert list(back.requests()) == list(shard.requests()) and (back.shard_k, back.total) == (1, 43)
    assert not back.offsets_ns.flags.writeable and not back.indices.flags.writeable
    clock = RunClock()
    clock.start(1_000_000)
    same = pickle.loads(pickle.dumps(clock))
    assert (same.t0_ns, same.t0_unix_ns) == (clock.t0_ns, clock.t0_unix_ns)


def test_merge_refuses_shards_that_do_not_make_the_plan():
    plan = plan_requests(_cfg())
    with pytest.raises(ValueError, match="exactly once"):
        merge([plan.shard(0, 3), plan.shard(1, 3)])
    with pytest.raises(ValueError, match="exactly once"):
        merge([plan.shard(0, 2), plan.shard(0, 2), plan.shard(1, 2)])
    with pytest.raises(ValueError):
        plan.shard(3, 3)
    with pytest.raises(ValueError, match="whole plan"):
        plan.shard(0, 2).shard(0, 2)


def test_a_day_long_plan_costs_bytes_a_request_not_objects():
    """Six hours at 50 req/s are 1.08 M requests (a day, 4.3 M): a spec per request made up front (~600 bytes
    each) was 2.6 GB a day before the first send. Specs are made when sent; the plan holds arrays."""
    import gc
    import sys

    day = replace(
        _cfg(),
        schedule=ScheduleConfig(rate=50.0, cv=1.0, seed=7, duration_s=6 * 3600, warmup=0),
        workload=WorkloadConfig(output_len=LengthDist("lognormal", 300, 0.5)),
    )
    gc.collect()
    blocks = sys.getallocatedblocks()
    plan = plan_requests(day)
    gc.collect()
    assert len(plan) > 1_000_000
    assert sys.getallocatedblocks() - blocks < 20_000  # not one object per request (that was 5+ M)
    table = plan.specs
    assert table.rows.nbytes + table.source.in_lens.nbytes + table.source.out_lens.nbytes < 17 * len(plan)
    a, b = plan.specs[123_456], plan.specs[123_457]
    assert a == plan.specs[123_456] and a.prompt != b.prompt  # the same request, the same spec, every time
    assert a.prompt.startswith("123456: ") and abs(len(a.prompt.split()) - (a.input_tokens_hint - 1)) <= 1
    assert a.max_tokens == table.max_tokens()[123_456] and not table.has_references


def test_synthetic_specs_travel_and_come_back_the_same():
    import pickle

    plan = plan_requests(replace(_cfg(), workload=WorkloadConfig(prefix_len=16)))
    back = pickle.loads(pickle.dumps(plan.shard(1, 2)))
    assert list(back.specs) == list(plan.shard(1, 2).specs)
    prefixes = {s.prompt.split(": ", 1)[0].rsplit(" ", 1)[0] for s in plan.specs}
    assert len(prefixes) == 1  # the shared prefix, then each request's own number
    assert len({s.prompt for s in plan.specs}) == len(plan)
