"""loadgen against a real vLLM 0.32 on CPU: streams, token counts, scraped server state, optimisations.

Every run is bounded (a few dozen requests, tiny model) and goes to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import numpy as np
import pytest

from loadgen.analysis.metrics import per_token_itl_ns, request_latencies
from loadgen.config import (
    EndpointConfig,
    LengthDist,
    OutputConfig,
    RunConfig,
    SamplingConfig,
    ScheduleConfig,
    ScrapeConfig,
    WorkloadConfig,
)
from loadgen.run.runner import RunResult, run_async

REASONING = ["--reasoning-parser", "deepseek_r1"]
MAPPED_VLLM = {
    "kv_cache_usage",
    "num_running",
    "num_waiting",
    "preemptions",
    "prefix_cache_queries",
    "prefix_cache_hits",
    "prompt_tokens",
    "generation_tokens",
    "ttft",
    "itl",
    "e2e",
    "queue_time",
}
# where the client-vs-server comparison is written (the closing note quotes it); default: the test's tmp dir
CROSSCHECK_ENV = "LOADGEN_CROSSCHECK_OUT"


def run(
    srv,
    tmp_path: Path,
    *,
    n: int = 12,
    rate: float = 8.0,
    cv: float = 1.0,
    api: str = "chat",
    max_tokens: int | None = 32,
    ignore_eos: bool = True,
    input_len: str = "64",
    prefix_len: int = 0,
    extra: dict | None = None,
    temperature: float | None = None,
    max_concurrency: int | None = None,
    label: str = "run",
) -> RunResult:
    cfg = RunConfig(
        endpoint=EndpointConfig(base_url=srv.base_url, api=api, timeout_s=120),
        schedule=ScheduleConfig(rate=rate, cv=cv, num_requests=n, seed=1, max_concurrency=max_concurrency),
        workload=WorkloadConfig(input_len=LengthDist.parse(input_len, "--input-len"), prefix_len=prefix_len),
        sampling=SamplingConfig(
            max_tokens=max_tokens,
            ignore_eos=ignore_eos,
            temperature=temperature,
            extra_body=tuple((extra or {}).items()),
        ),
        scrape=ScrapeConfig(interval_s=0.25),
        output=OutputConfig(output_dir=str(tmp_path / label)),
    )
    return asyncio.run(run_async(cfg, install_signal_handlers=False))


def test_chat_and_completions_with_exact_token_counts(vllm_server, tmp_path):
    srv = vllm_server(REASONING)
    for api in ("chat", "completions"):
        res = run(srv, tmp_path, api=api, n=8, max_tokens=24, label=api)
        assert res.summary["target"]["model"] == "tiny-llama"
        for r in res.records:
            assert r.status == "ok", r.error_message
            assert r.completion_tokens == 24
            assert sum(r.chunk_tokens) == 24
            assert r.token_count_source == "continuous_usage"
            assert r.prompt_tokens and r.prompt_tokens > 20
            assert r.finish_reason == "length"


def test_reasoning_then_answer_and_the_visible_token_metric(vllm_server, tiny_model_info, tmp_path):
    srv = vllm_server(REASONING)
    # seeded sampling: the random model's output is then the same on every run
    bias = {"logit_bias": {str(tiny_model_info["think_end_id"]): 4}, "seed": 7}
    res = run(srv, tmp_path, n=8, max_tokens=160, ignore_eos=False, extra=bias)
    ok = [r for r in res.records if r.status == "ok"]
    assert len(ok) == 8, [r.error_message for r in res.records]
    # the random model now and then writes its own <think>, which puts everything into content: skip those
    with_answer = [r for r in ok if "r" in r.chunk_kind and "c" in r.chunk_kind]
    kinds = [r.chunk_kind for r in ok]
    assert len(with_answer) >= 2, f"logit_bias on </think> should end most reasonings in the budget: {kinds}"
    for r in with_answer:
        # both can arrive in one read, so the same timestamp is possible
        assert r.first_reasoning_ns is not None and r.first_reasoning_ns <= r.first_content_ns
        # 'x': a token with no text yet (half a UTF-8 character) may open the stream
        assert r.chunk_kind.lstrip("x").startswith("r") and "c" in r.chunk_kind
        lat = request_latencies(r)
        assert lat["ttfvt"] >= lat["ttft"]
        assert r.reasoning_tokens_stream and r.reasoning_tokens_stream > 0
    # vLLM 0.32 says reasoning_tokens 0 when <think> is in the prompt: the disagreement is flagged
    flagged = [r for r in with_answer if r.reasoning_tokens == 0]
    assert all(any("reasoning_tokens" in n for n in r.count_notes) for r in flagged)
    m = res.summary["metrics"]
    assert m["latency_ms"]["ttfvt"]["count"] >= len(with_answer)
    # the reasoning phase delays the visible answer: strictly, summed over the streams that had one
    gaps = [request_latencies(r)["ttfvt"] - request_latencies(r)["ttft"] for r in with_answer]
    assert sum(gaps) > 0
    assert m["tokens"]["reasoning"] > 0


def test_scraped_series_kv_rising_and_client_vs_server_latency(vllm_server, tmp_path):
    srv = vllm_server(REASONING)
    res = run(srv, tmp_path, n=40, rate=16.0, cv=2.0, max_tokens=96, input_len="uniform:64,256")
    s = res.summary
    server = s["server"]
    assert server["dialect"] == "vllm"
    assert set(server["available"]) >= MAPPED_VLLM, set(MAPPED_VLLM) - set(server["available"])
    assert server["engine"]["kv_block_size"] > 0
    samples = [
        json.loads(x) for x in (Path(s["output_dir"]) / "server_metrics.jsonl").read_text().splitlines()
    ]
    kv = [sum(x["values"]["kv_cache_usage"].values()) for x in samples if "values" in x]
    assert max(kv) > 0 and max(kv) > min(kv), "KV usage should rise under load and fall after"
    assert server["num_running"]["max"] >= 2
    assert server["tokens"]["generation"] >= 40 * 96 * 0.9

    # the client measures what the server measures, plus the network and the HTTP layer: never less
    c_ttft = s["metrics"]["latency_ms"]["ttft"]
    c_e2e = s["metrics"]["latency_ms"]["e2e"]
    v_ttft = server["latency_s"]["ttft"]
    v_e2e = server["latency_s"]["e2e"]
    assert c_ttft["count"] == 40 and v_ttft["count"] >= 40
    assert c_ttft["mean"] >= v_ttft["mean"] * 1000 * 0.98
    assert c_e2e["mean"] >= v_e2e["mean"] * 1000 * 0.98
    out = Path(os.environ.get(CROSSCHECK_ENV) or tmp_path / "client_vs_server_vllm.json")
    out.write_text(
        json.dumps(
            {
                "what": "loadgen client vs vLLM's own histograms, same run (40 chat streams, 96 tokens, Gamma 16/s cv 2)",
                "client_ms": {"ttft": c_ttft, "e2e": c_e2e},
                "server_ms": {
                    "ttft": {
                        k: (v * 1000 if isinstance(v, float) and k != "count" else v)
                        for k, v in v_ttft.items()
                    },
                    "e2e": {
                        k: (v * 1000 if isinstance(v, float) and k != "count" else v)
                        for k, v in v_e2e.items()
                    },
                },
            },
            indent=2,
        )
    )


def test_forced_preemption_is_seen(vllm_server, tmp_path):
    srv = vllm_server([*REASONING, "--max-model-len", "1024", "--num-gpu-blocks-override", "16"])
    res = run(srv, tmp_path, n=16, rate=200.0, max_tokens=400, input_len="32")
    server = res.summary["server"]
    assert server["engine"]["kv_num_blocks"] == 16
    assert server["preemptions"] > 0
    assert server["kv_cache_usage"]["max"] >= 0.9
    assert server["num_waiting"]["max"] > 0
    assert all(r.status == "ok" and r.completion_tokens == 400 for r in res.records)
    verdicts = {e["verdict"] for e in res.summary.get("straggler_explanations", [])}
    assert verdicts <= {"preempted", "queued behind others", "busy server", "moderate load",
                        "long generation on an unloaded server", "no server data"}  # fmt: skip


@pytest.mark.parametrize("prefix_caching", [True, False])
def test_prefix_caching_on_and_off(vllm_server, tmp_path, prefix_caching):
    flag = "--enable-prefix-caching" if prefix_caching else "--no-enable-prefix-caching"
    srv = vllm_server([*REASONING, flag])
    res = run(srv, tmp_path, n=10, rate=4.0, max_tokens=8, input_len="700", prefix_len=600)
    pc = res.summary["server"]["prefix_cache"]
    if prefix_caching:
        assert pc["hits"] > 0 and pc["hit_rate"] > 0.3
    else:
        assert not pc.get("hits") and not pc.get("hit_rate")


def test_fp8_kv_cache_doubles_capacity(vllm_server, tmp_path):
    base = run(vllm_server(REASONING), tmp_path, n=2, label="auto").summary["server"]["engine"]
    fp8 = run(vllm_server([*REASONING, "--kv-cache-dtype", "fp8"]), tmp_path, n=2, label="fp8")
    info = fp8.summary["server"]["engine"]
    assert info["kv_cache_dtype"] == "fp8"
    assert info["kv_capacity_tokens"] == 2 * base["kv_capacity_tokens"]
    assert all(r.status == "ok" for r in fp8.records)


def test_ngram_speculation_multi_token_chunks_and_per_token_itl(vllm_server, tmp_path):
    spec = json.dumps({"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 4})
    srv = vllm_server(["--speculative-config", spec])
    # a repetitive prompt, greedy: n-gram drafts get accepted
    res = run(srv, tmp_path, n=6, rate=2.0, max_tokens=128, input_len="300", prefix_len=280, temperature=0.0)
    ok = [r for r in res.records if r.status == "ok"]
    assert len(ok) == 6
    assert max(max(r.chunk_tokens) for r in ok) > 1, "no chunk carried more than one token"
    assert res.summary["metrics"]["tokens"]["mean_tokens_per_chunk"] > 1.0
    sd = res.summary["server"]["spec_decode"]
    assert sd["acceptance_rate"] > 0 and sd["mean_accepted_length"] > 1
    for r in ok:
        # per-token ITL spreads each gap over the chunk's tokens: its mean is exactly the TPOT
        itl = np.asarray(per_token_itl_ns(r)) / 1e6
        assert len(itl) == r.completion_tokens - r.chunk_tokens[0]
        first_tokens = r.chunk_tokens[0]
        tpot_after_first = (r.last_token_ns - r.first_token_ns) / 1e6 / (r.completion_tokens - first_tokens)
        assert itl.mean() == pytest.approx(tpot_after_first, rel=1e-6)
