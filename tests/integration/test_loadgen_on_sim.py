"""loadgen against the simulator as a separate process: ground truth, faults as error kinds, server state."""

import asyncio

import numpy as np
import orjson
import pytest

from loadgen.config import (
    EndpointConfig,
    OutputConfig,
    RunConfig,
    SamplingConfig,
    ScheduleConfig,
    ScrapeConfig,
    SimConfig,
)
from loadgen.run.runner import run_async


def sim_run(
    tmp_path,
    *,
    rate=20.0,
    n=40,
    profile="chat-7b",
    args=(),
    timeout=30.0,
    scrape=False,
    max_tokens=None,
    cv=1.0,
):
    cfg = RunConfig(
        endpoint=EndpointConfig(base_url="http://127.0.0.1:0", simulated=True, timeout_s=timeout),
        schedule=ScheduleConfig(rate=rate, cv=cv, num_requests=n, seed=3),
        sampling=SamplingConfig(max_tokens=max_tokens),
        scrape=ScrapeConfig(enabled=scrape, interval_s=0.2),
        output=OutputConfig(output_dir=str(tmp_path / "out")),
        sim=SimConfig(profile=profile, args=tuple(args)),
    )
    return asyncio.run(run_async(cfg, install_signal_handlers=False))


def ground_truth(tmp_path):
    lines = (tmp_path / "out" / "sim_ground_truth.jsonl").read_bytes().splitlines()
    return {g["id"]: g for g in map(orjson.loads, lines)}


def test_client_timings_and_counts_against_the_servers_ground_truth(tmp_path):
    res = sim_run(tmp_path, profile="reasoning-7b", rate=8.0, n=30, max_tokens=300)
    gt = ground_truth(tmp_path)
    t0 = res.summary["clock"]["t0_ns"]
    assert res.summary["target"]["kind"] == "simulated"
    send_err, ttft_err, end_err, before_write = [], [], [], []
    for r in res.records:
        assert r.status == "ok", r.error_message
        g = gt[r.server_request_id]
        assert r.completion_tokens == g["completion_tokens"]
        assert r.prompt_tokens == g["prompt_tokens"]
        assert sum(r.chunk_tokens) == g["completion_tokens"]
        assert r.reasoning_tokens_stream == g["reasoning_tokens"]
        assert r.finish_reason == g["finish_reason"]
        send_err.append(g["received_ns"] - (t0 + r.send_ns))
        ttft_err.append((t0 + r.first_token_ns) - g["first_token_ns"])
        end_err.append((t0 + r.last_token_ns) - g["last_token_ns"])
        before_write.append((t0 + r.first_token_ns) - g["first_write_ns"])
        before_write.append((t0 + r.last_token_ns) - g["last_write_ns"])
    # causality: no byte is read before the server began to write it (its stamp after the write can be late by
    # however long the niced simulator waits for a core on a busy machine, so that one bounds only the median)
    assert min(before_write) >= 0, min(before_write)
    assert np.min(send_err) / 1e6 > -1.0  # the client stamps its send as the write returns
    for name, errs in (("send->received", send_err), ("first token", ttft_err), ("last token", end_err)):
        e = np.asarray(errs) / 1e6
        assert np.median(e) < 3.0, (name, np.median(e))
    # the budget cuts reasoning: some requests must have hit max_tokens
    assert any(r.finish_reason == "length" for r in res.records)


@pytest.mark.parametrize(
    ("flag", "kind"),
    [
        ("--fault-429", "http_429"),
        ("--fault-500", "http_5xx"),
        ("--fault-503", "http_5xx"),
        ("--fault-cut", "disconnect"),
        ("--fault-malformed", "malformed"),
        ("--fault-stream-error", "stream_error"),
    ],
)
def test_each_fault_is_seen_as_the_right_error_kind(tmp_path, flag, kind):
    res = sim_run(tmp_path, n=30, args=(flag, "0.3"), max_tokens=40)
    gt = ground_truth(tmp_path)
    faulted = {i for i, g in gt.items() if g.get("fault")}
    assert faulted, "the simulator injected no fault"
    for r in res.records:
        if r.server_request_id in faulted:
            assert r.error_kind == kind, (r.error_kind, r.error_message)
        else:
            assert r.status == "ok", r.error_message
    assert res.summary["metrics"]["requests"]["errors_by_kind"] == {kind: len(faulted)}


def test_stall_beyond_the_timeout_is_a_timeout_and_slow_first_byte_shows_in_ttft(tmp_path):
    res = sim_run(
        tmp_path, n=12, args=("--fault-stall", "0.5", "--stall-ms", "1500"), timeout=0.8, max_tokens=40
    )
    gt = ground_truth(tmp_path)
    kinds = (
        {r.error_kind for r in res.records if gt[r.server_request_id].get("fault")}
        if all(r.server_request_id for r in res.records)
        else {r.error_kind for r in res.records if r.status != "ok"}
    )
    assert kinds == {"timeout"}
    res = sim_run(
        tmp_path / "b",
        n=20,
        args=("--fault-slow-first-byte", "0.5", "--slow-first-byte-ms", "300"),
        max_tokens=20,
    )
    gt = ground_truth(tmp_path / "b")
    slow = [r for r in res.records if gt[r.server_request_id].get("fault")]
    fast = [r for r in res.records if not gt[r.server_request_id].get("fault")]
    assert slow and fast
    assert min((r.first_byte_ns - r.send_ns) for r in slow) > 290e6
    assert max((r.first_byte_ns - r.send_ns) for r in fast) < 100e6


def test_high_rate_fills_the_kv_cache_preempts_and_explains_stragglers(tmp_path):
    res = sim_run(tmp_path, profile="reasoning-7b", rate=20.0, cv=2.0, n=120, scrape=True)
    s = res.summary
    server = s["server"]
    assert server["dialect"] == "vllm"
    kv = server["kv_cache_usage"]
    assert kv["max"] > 0.9 and kv["p50"] < kv["max"]
    assert server["preemptions"] > 0
    assert server["num_waiting"]["max"] > 0
    assert s["metrics"]["stragglers"]["count"] > 0
    verdicts = {e["verdict"] for e in s["straggler_explanations"]}
    assert verdicts
    # the scraped series are on the run's clock: samples inside the run window
    lines = (tmp_path / "out" / "server_metrics.jsonl").read_bytes().splitlines()
    ts = [orjson.loads(x)["t_ns"] for x in lines]
    assert ts == sorted(ts) and ts[0] < 1e9 and ts[-1] <= s["metrics"]["window"]["end_ns"] + 2e9
