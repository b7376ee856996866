"""A short conversation against a real llama.cpp ``llama-server`` (any CPU): each turn resends the history with
the server's actual answers, and llama.cpp's per-request ``timings.cache_n`` shows the slot reusing it. The
tiny model's chat template strips reasoning from assistant turns (DeepSeek-R1's convention): keep-reasoning
resends it, the template drops it."""

from __future__ import annotations

import asyncio
from pathlib import Path

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
from loadgen.run.runner import RunResult, run_async


def _conversation(srv, tmp_path: Path, history: str, seed: int) -> RunResult:
    cfg = RunConfig(
        endpoint=EndpointConfig(base_url=srv.base_url, api="chat", timeout_s=120),
        schedule=ScheduleConfig(rate=4.0, cv=1.0, seed=seed),
        # a prompt text of its own per run: a first turn finds nothing of an earlier run in the slots
        workload=WorkloadConfig(input_len=LengthDist.parse("48", "--input-len"), seed=seed),
        sampling=SamplingConfig(max_tokens=24),
        scrape=ScrapeConfig(enabled=False),
        output=OutputConfig(output_dir=str(tmp_path / history), report=False),
        sessions=SessionsConfig(
            sessions=2, turns=LengthDist("fixed", 3), think_time=SecondsDist("fixed", 0.1), history=history
        ),
    )
    return asyncio.run(run_async(cfg, install_signal_handlers=False))


def test_a_conversation_reuses_its_cached_history_on_llamacpp(llamacpp_server, tmp_path):
    srv = llamacpp_server()
    for seed, history in enumerate(("strip-reasoning", "keep-reasoning")):
        res = _conversation(srv, tmp_path, history, seed)
        recs = sorted(res.records, key=lambda r: (r.session_id, r.turn))
        assert len(recs) == 6 and all(r.status == "ok" for r in recs), [r.error_message for r in recs]
        assert [(r.session_id, r.turn) for r in recs] == [(s, k) for s in range(2) for k in range(3)]
        for r in recs:
            t = r.server_timings
            assert t is not None and r.cached_tokens == t["cache_n"]  # per request, as the server counted it
            assert r.prompt_tokens == t["prompt_n"] + t["cache_n"]
        for s in range(2):
            turns = [r for r in recs if r.session_id == s]
            assert turns[0].prompt_tokens < turns[1].prompt_tokens < turns[2].prompt_tokens
            # the slot still holds the session's previous turn: most of the resent history is not recomputed
            for prev, r in zip(turns, turns[1:], strict=False):
                assert r.cached_tokens >= 0.5 * prev.prompt_tokens, (prev.prompt_tokens, r.cached_tokens)
        per_turn = res.summary["turns"]["per_turn"]
        assert per_turn[1]["prefix_cache_hit_rate"] > per_turn[0]["prefix_cache_hit_rate"]
        if history == "keep-reasoning":  # the reasoning went back on the wire (the template drops it again)
            assert all(r.reasoning_text for r in recs)
