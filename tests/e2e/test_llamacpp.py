"""loadgen against a real llama.cpp ``llama-server`` (any CPU): streams, reasoning split, token counts, the llamacpp
metrics dialect with /slots, stragglers, a server killed mid-run, Ctrl-C and the HTML report in Chromium.

The server is the launcher's default: 4 slots, continuous batching, ``--reasoning-format deepseek`` with a reasoning
budget of 24 tokens (every chat answer has both phases), ``--metrics --slots``. Every run is bounded and goes to
127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from loadgen.analysis.metrics import request_latencies
from loadgen.config import (
    AnalysisConfig,
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
from loadgen.scrape import VERDICTS
from server_launchers.local_llamacpp import MODEL_NAME, LocalLlamaCppServer

ROOT = Path(__file__).resolve().parents[2]
MAPPED = {
    "num_running", "num_waiting", "prompt_tokens", "generation_tokens", "prefix_cache_hits", "prefix_cache_queries",
    "prompt_seconds", "generation_seconds", "decode_calls", "kv_cache_usage", "slots_busy", "slots_total",
}  # fmt: skip


def _run(
    srv, tmp_path: Path, *, label: str, n: int = 8, rate: float = 8.0, cv: float = 1.0, api: str = "chat",
    max_tokens: int | None = 32, output_len: str | None = None, input_len: str = "64", straggler_k: float = 3.0,
    extra: dict | None = None,
) -> RunResult:  # fmt: skip
    cfg = RunConfig(
        endpoint=EndpointConfig(base_url=srv.base_url, api=api, timeout_s=120),
        schedule=ScheduleConfig(rate=rate, cv=cv, num_requests=n, seed=1),
        workload=WorkloadConfig(
            input_len=LengthDist.parse(input_len, "--input-len"),
            output_len=LengthDist.parse(output_len, "--output-len") if output_len else None,
        ),
        sampling=SamplingConfig(
            max_tokens=max_tokens, ignore_eos=True, extra_body=tuple((extra or {}).items())
        ),
        scrape=ScrapeConfig(interval_s=0.1),
        output=OutputConfig(output_dir=str(tmp_path / label), report=False),
        analysis=AnalysisConfig(straggler_iqr_k=straggler_k),
    )
    return asyncio.run(run_async(cfg, install_signal_handlers=False))


def test_chat_and_completions_counts_match_usage_and_the_servers_timings(llamacpp_server, tmp_path):
    srv = llamacpp_server()
    for api in ("chat", "completions"):
        res = _run(srv, tmp_path, api=api, max_tokens=32, label=api)
        assert res.summary["target"]["model"] == MODEL_NAME
        for r in res.records:
            assert r.status == "ok", r.error_message
            assert r.finish_reason == "length" and r.completion_tokens == 32
            # usage comes only in the final chunk: the split over chunks is estimated, and adds up
            assert sum(r.chunk_tokens) == r.completion_tokens
            assert r.token_count_source in ("usage", "estimated:chars_per_token")
            t = r.server_timings
            assert t is not None and t["predicted_n"] == r.completion_tokens
            assert r.prompt_tokens == t["prompt_n"] + t["cache_n"]
            # the server's own prompt + decode time lies inside the client's send -> end
            assert (r.end_ns - r.send_ns) / 1e6 >= (t["prompt_ms"] + t["predicted_ms"]) * 0.98


def test_reasoning_then_answer_in_every_chat_stream(llamacpp_server, llamacpp_setup, tmp_path):
    # 512 reasoning tokens (~130 ms here) in every stream: the random model is kept from writing <think> or
    # </think> itself (a bias against both: a <think> of its own turns the rest into content), the budget then
    # closes the reasoning, so the two phases never share one read, even when a busy machine holds the client
    # back for tens of milliseconds
    from server_launchers.local_llamacpp import read_model_info

    budget = 512
    info = read_model_info(llamacpp_setup[1])
    # and from spelling "<think>" out of bytes: the tiny GGUF's first 256 tokens are the bytes, in order
    bias = {str(info["think_start_id"]): -100, str(info["think_end_id"]): -100, str(ord("<")): -100}
    res = _run(llamacpp_server(["--reasoning-budget", str(budget)]), tmp_path, max_tokens=640, n=6, label="reasoning",
               extra={"logit_bias": bias})  # fmt: skip
    assert all(r.status == "ok" for r in res.records), [r.error_message for r in res.records]
    # the random model can still spell "<think>" out of byte tokens, which the parser takes as the answer's start
    # (its text then opens the answer): such streams are left out, and must stay rare
    proper = [r for r in res.records if "<think>" not in (r.output_text or "")]
    assert len(proper) >= 0.75 * len(res.records), [r.output_text[:20] for r in res.records]
    for r in proper:
        # the template opens <think>, the budget closes it: reasoning first, then the visible answer
        assert r.chunk_kind.startswith("r") and "c" in r.chunk_kind, r.chunk_kind
        assert r.first_reasoning_ns < r.first_content_ns
        lat = request_latencies(r)
        assert lat["ttfvt"] > lat["ttft"]
        # llama.cpp reports no reasoning_tokens; the stream's count (its unsent </think> included; a chunk's share
        # of the tokens is estimated from its text) is the budget's, give or take that estimate
        assert r.reasoning_tokens is None
        assert 0.8 * budget <= r.reasoning_tokens_stream <= 1.2 * budget + 1 < r.completion_tokens
        assert any("</think>" in note for note in r.count_notes)
    m = res.summary["metrics"]
    assert m["latency_ms"]["ttfvt"]["count"] == len(res.records)
    assert m["tokens"]["reasoning"] >= 0.8 * budget * len(proper)


def test_llamacpp_dialect_and_slot_occupancy_in_the_summary(llamacpp_server, tmp_path):
    srv = llamacpp_server()
    res = _run(
        srv, tmp_path, n=24, rate=20.0, cv=2.0, max_tokens=96, input_len="uniform:64,256", label="load"
    )
    s = res.summary
    server = s["server"]
    assert server["dialect"] == "llamacpp"
    assert set(server["available"]) >= MAPPED, MAPPED - set(server["available"])
    assert not any(server["scrape"]["failures"].values()), server["scrape"]
    assert server["scrape"]["slots"].endswith("/slots")
    assert server["slots"]["total"] == 4 and server["slots"]["busy_max"] >= 2
    assert server["tokens"]["generation"] >= 24 * 96 * 0.9
    assert 0 <= server["prefix_cache"]["hit_rate"] <= 1
    assert "no latency histograms" in server["missing"]["ttft"]
    lines = [json.loads(x) for x in (Path(s["output_dir"]) / "server_metrics.jsonl").read_text().splitlines()]
    kv = [x["values"]["kv_cache_usage"][""] for x in lines if "kv_cache_usage" in x.get("values", {})]
    assert max(kv) > 0 and min(kv) == 0, "slot occupancy should rise under load and fall after"
    # the server's own account: its decode time over the window is within what the client saw
    assert server["server_time"]["generation_s"] > 0


def test_stragglers_are_explained_from_slots_and_queue(llamacpp_server, tmp_path):
    # long and short generations mixed, faster than 4 slots can serve: some wait (deferred), some run long
    res = _run(
        llamacpp_server(), tmp_path, n=32, rate=40.0, cv=2.0, max_tokens=None, output_len="lognormal:24,1.2",
        straggler_k=0.5, label="stragglers",
    )  # fmt: skip
    assert all(r.status == "ok" for r in res.records)
    assert res.summary["server"]["slots"]["busy_max"] >= 2, "requests overlapped on the server's slots"
    explained = res.summary["straggler_explanations"]
    assert explained and len(explained) == res.summary["metrics"]["stragglers"]["count"]
    for e in explained:
        assert e["verdict"] in VERDICTS and e["verdict"] != "no server data"
        assert e["waiting_mean"] is not None and e["kv_mean"] is not None and e["running_mean"] is not None


def test_server_killed_mid_run_every_request_becomes_a_record(llamacpp_setup, tmp_path):
    binary, model = llamacpp_setup
    srv = LocalLlamaCppServer(binary=binary, model=model, log_path=tmp_path / "killed.log").start()
    killer = threading.Timer(1.0, srv.kill)
    killer.start()
    try:
        res = _run(srv, tmp_path, n=30, rate=10.0, max_tokens=64, label="killed")
    finally:
        killer.cancel()
        srv.stop()
    assert len(res.records) == 30
    ok = [r for r in res.records if r.status == "ok"]
    failed = [r for r in res.records if r.status != "ok"]
    assert ok and failed, "some requests finished before the kill, the rest failed"
    assert all(r.error_kind for r in failed)
    assert res.summary["metrics"]["requests"]["total"] == 30
    assert (Path(res.summary["output_dir"]) / "summary.json").is_file()


def test_ctrl_c_keeps_every_finished_request(llamacpp_server, tmp_path):
    srv = llamacpp_server()
    out = tmp_path / "interrupted"
    p = subprocess.Popen(
        [sys.executable, "-m", "loadgen", "--base-url", srv.base_url, "-n", "400", "--rate", "4", "--max-tokens", "16",
         "--no-live", "--no-report", "--output-dir", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    records = out / "requests.jsonl"
    for _ in range(600):  # bounded: until 3 records are on disk
        if records.exists() and records.read_text().count("\n") >= 3:
            break
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=60)
    assert p.returncode == 130
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"]
    lines = records.read_text().splitlines()
    assert len(lines) >= 3 and summary["metrics"]["requests"]["total"] == len(lines)


def test_llamacpp_run_report_in_chromium(llamacpp_server, tmp_path):
    from tests.browser.cdp import find_chromium
    from tests.browser.test_report_browser import _check, _keep

    exe = find_chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but no Chromium was found: apt-get install -y chromium")
        pytest.skip("no Chromium installed (apt-get install -y chromium)")
    srv = llamacpp_server()
    out = tmp_path / "llamacpp-run"
    subprocess.run(
        [sys.executable, "-m", "loadgen", "--base-url", srv.base_url, "--rate", "8", "--cv", "2", "-n", "16",
         "--max-tokens", "64", "--scrape-interval", "0.1", "--quiet", "--output-dir", str(out)],
        check=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    shot = tmp_path / "report-llamacpp.png"
    facts = asyncio.run(_check(exe, out, shot, "endpoint"))
    assert facts["kv_max"] is not None, "the report draws the slot occupancy derived from /slots"
    _keep(shot)


def test_every_cpu_launch_spec_starts_the_real_server(llamacpp_setup, tmp_path):
    """The preset's renderings are accepted by the real llama-server, and prefix caching off shows in its counters."""
    from server_launchers.engines import local_llamacpp_args
    from server_launchers.spec import load_specs

    binary, model = llamacpp_setup
    hits = {}
    for name, spec in load_specs(ROOT / "workloads" / "presets" / "tiny-cpu-llamacpp.toml").items():
        srv = LocalLlamaCppServer(local_llamacpp_args(spec), binary=binary, model=model,
                                  log_path=tmp_path / f"{name}.log")  # fmt: skip
        with srv:
            cfg_dir = tmp_path / name
            res = _run(srv, cfg_dir, n=6, rate=20.0, max_tokens=16, label=name)
            assert all(r.status == "ok" for r in res.records), (name, [r.error_message for r in res.records])
            assert res.summary["server"]["dialect"] == "llamacpp"
            hits[name] = res.summary["server"]["prefix_cache"]["hits"]
    assert hits["prefix-off"] == 0 and hits["baseline"] > 0, hits
