"""A short conversation against the real CPU vLLM (skips where it cannot run, like the rest of the tier): with
``--enable-prompt-tokens-details`` vLLM reports each request's cached prompt tokens, and a session's later
turns find their history in the prefix cache."""

from __future__ import annotations

import asyncio

from loadgen.config import (
    EndpointConfig,
    LengthDist,
    OutputConfig,
    RunConfig,
    SamplingConfig,
    ScheduleConfig,
    ScrapeConfig,
    SecondsDist,
    SessionsConfig,
    WorkloadConfig,
)
from loadgen.run.runner import run_async


def test_a_conversation_hits_vllms_prefix_cache_turn_after_turn(vllm_server, tmp_path):
    srv = vllm_server(["--reasoning-parser", "deepseek_r1", "--enable-prompt-tokens-details"])
    cfg = RunConfig(
        endpoint=EndpointConfig(base_url=srv.base_url, api="chat", timeout_s=120),
        schedule=ScheduleConfig(rate=4.0, cv=1.0, seed=3),
        workload=WorkloadConfig(input_len=LengthDist.parse("96", "--input-len"), seed=3),
        sampling=SamplingConfig(max_tokens=24, ignore_eos=True),
        scrape=ScrapeConfig(interval_s=0.2),
        output=OutputConfig(output_dir=str(tmp_path / "conv"), report=False),
        sessions=SessionsConfig(
            sessions=3, turns=LengthDist("fixed", 3), think_time=SecondsDist("fixed", 0.1)
        ),
    )
    res = asyncio.run(run_async(cfg, install_signal_handlers=False))
    recs = res.records
    assert len(recs) == 9 and all(r.status == "ok" for r in recs), [r.error_message for r in recs]
    per_turn = res.summary["turns"]["per_turn"]
    assert [t["turn"] for t in per_turn] == [0, 1, 2]
    prompt = [t["prompt_tokens"]["mean"] for t in per_turn]
    assert prompt[0] < prompt[1] < prompt[2]
    # vLLM leaves prompt_tokens_details out when nothing was cached; later turns report their cached history
    later = [r for r in recs if r.turn and r.turn > 0]
    assert all(r.cached_tokens is not None and 0 < r.cached_tokens < r.prompt_tokens for r in later)
    assert per_turn[2]["prefix_cache_hit_rate"] > per_turn[0]["prefix_cache_hit_rate"]
