"""Dialect detection and mapping on recorded texts of vLLM, SGLang and TGI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from loadgen.scrape import (
    DIALECTS,
    VOCABULARY,
    default_metrics_url,
    detect_dialect,
    mapping_report,
    parse_text,
)
from loadgen.scrape.parse import filter_text

DATA = Path(__file__).resolve().parents[1] / "data"
METRICS = DATA / "metrics"
REAL_VLLM = sorted((DATA / "vllm").glob("metrics_*.txt"))
# Families every vLLM v1 server exposes from start-up (per-engine labels are created eagerly in loggers.py).
VLLM_ALWAYS = (
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
)
SPEC = ("spec_num_drafts", "spec_draft_tokens", "spec_accepted_tokens")


def _read(name: str) -> str:
    return (METRICS / name).read_text()


@pytest.mark.parametrize(
    ("name", "dialect"),
    [
        ("sglang_idle.txt", "sglang"),
        ("sglang_load.txt", "sglang"),
        ("tgi_idle.txt", "tgi"),
        ("tgi_load.txt", "tgi"),
        ("vllm_standin_load.txt", "vllm"),
    ],
)
def test_detects_dialect_and_filtered_parse_equals_full_parse(name: str, dialect: str) -> None:
    text = _read(name)
    assert detect_dialect(text) == dialect
    d = DIALECTS[dialect]
    fast = parse_text(text, d)
    assert fast == parse_text(text, d, prefiltered=True)  # filtering loses nothing that is mapped
    assert fast == parse_text(text, d, reference=True)  # the fast reader agrees with prometheus_client
    assert len(filter_text(text, d)) < len(text)


def test_unusual_lines_fall_back_to_the_reference_parser() -> None:
    text = "\n".join(
        [
            "# TYPE vllm:num_requests_running gauge",
            'vllm:num_requests_running{engine="0",model_name="a}b \\"q\\""} 3.0',
            'vllm:num_requests_waiting{engine="0"} 2 1700000000000',
        ]
    )
    v = parse_text(text, DIALECTS["vllm"])
    assert v["num_running"] == {'engine="0",model_name="a}b \\"q\\""': 3.0}
    assert v["num_waiting"] == {'engine="0"': 2.0}
    assert v == parse_text(text, DIALECTS["vllm"], reference=True)


def test_invalid_text_raises_value_error() -> None:
    with pytest.raises(ValueError):
        parse_text('vllm:num_requests_running{engine="0" 3', DIALECTS["vllm"])


def test_detect_dialect_none_for_foreign_text() -> None:
    assert detect_dialect("# TYPE process_cpu_seconds counter\nprocess_cpu_seconds_total 3.0\n") is None


def test_vllm_standin_maps_every_table_entry_per_engine() -> None:
    values = parse_text(_read("vllm_standin_load.txt"), DIALECTS["vllm"])
    assert set(values) == set(DIALECTS["vllm"].table)
    # labels are kept: one series per engine, not merged
    assert sorted(values["kv_cache_usage"]) == [
        'engine="0",model_name="qwen3-8b"',
        'engine="1",model_name="qwen3-8b"',
    ]
    for v in values["kv_cache_usage"].values():
        assert 0.0 <= v <= 1.0
    ttft = values["ttft"]['engine="0",model_name="qwen3-8b"']
    assert len(ttft["le"]) == 22 and ttft["le"][0] == 0.001 and ttft["le"][-1] == 2560.0
    assert ttft["count"] == 300 and ttft["cum"] == sorted(ttft["cum"]) and ttft["cum"][-1] <= 300


@pytest.mark.skipif(
    not REAL_VLLM, reason="real vLLM captures (tests/data/vllm/metrics_*.txt) not recorded yet"
)
@pytest.mark.parametrize("path", REAL_VLLM, ids=[p.name for p in REAL_VLLM])
def test_real_vllm_capture_maps_every_core_series(path: Path) -> None:
    text = path.read_text()
    assert detect_dialect(text) == "vllm"
    values = parse_text(text, DIALECTS["vllm"])
    missing = [n for n in VLLM_ALWAYS if n not in values]
    assert not missing, f"{path.name}: not mapped: {missing}"
    assert all("model_name=" in key for key in values["num_running"])
    if "spec" in path.name:
        assert all(n in values for n in SPEC)
    assert values == parse_text(text, DIALECTS["vllm"], prefiltered=True)
    assert values == parse_text(text, DIALECTS["vllm"], reference=True)


def test_vllm_old_names_map_to_same_vocabulary() -> None:
    text = "\n".join(
        [
            "# TYPE vllm:gpu_cache_usage_perc gauge",
            'vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.42',
            "# TYPE vllm:gpu_prefix_cache_hits_total counter",
            'vllm:gpu_prefix_cache_hits_total{engine="0",model_name="m"} 30.0',
            "# TYPE vllm:time_per_output_token_seconds histogram",
            'vllm:time_per_output_token_seconds_bucket{engine="0",le="0.01",model_name="m"} 2.0',
            'vllm:time_per_output_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 5.0',
            'vllm:time_per_output_token_seconds_count{engine="0",model_name="m"} 5.0',
            'vllm:time_per_output_token_seconds_sum{engine="0",model_name="m"} 0.2',
        ]
    )
    v = parse_text(text, DIALECTS["vllm"])
    key = 'engine="0",model_name="m"'
    assert v["kv_cache_usage"] == {key: 0.42}
    assert v["prefix_cache_hits"] == {key: 30.0}
    assert v["itl"] == {key: {"le": [0.01], "cum": [2.0], "sum": 0.2, "count": 5.0}}


def test_sglang_load_values_and_labels() -> None:
    v = parse_text(_read("sglang_load.txt"), DIALECTS["sglang"])
    key = 'engine_type="unified",model_name="qwen3-8b",moe_ep_rank="0",pp_rank="0",tp_rank="0"'
    assert v["kv_cache_usage"] == {key: 0.83}
    assert v["num_running"] == {key: 48.0}
    assert v["num_waiting"] == {key: 7.0}
    assert v["prefix_cache_hit_rate"] == {key: 0.31}  # the gauge, kept apart from the counters
    assert v["spec_accept_length"] == {key: 2.6}
    assert v["preemptions"] == {key: 3.0}
    tok = 'model_name="qwen3-8b"'
    assert v["prefix_cache_queries"] == v["prompt_tokens"]
    assert 0 < v["prefix_cache_hits"][tok] < v["prompt_tokens"][tok]
    assert v["ttft"][tok]["count"] == 400
    assert v["queue_time"][key]["le"][0] == 0.0  # SGLang's queue-time histogram starts at a 0 bucket
    assert not any(n in v for n in SPEC)


def test_sglang_idle_has_no_latency_series_yet() -> None:
    v = parse_text(_read("sglang_idle.txt"), DIALECTS["sglang"])
    assert v["num_running"] and "ttft" not in v and "e2e" not in v


def _tgi_scalar(text: str, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m is not None
    return float(m.group(1))


def test_tgi_load_values_and_unavailable_names() -> None:
    text = _read("tgi_load.txt")
    v = parse_text(text, DIALECTS["tgi"])
    assert v["num_waiting"] == {"": 5.0}
    assert v["num_running"] == {"": 24.0}
    assert v["generation_tokens"] == {"": _tgi_scalar(text, "tgi_request_generated_tokens_sum")}
    assert v["prompt_tokens"] == {"": _tgi_scalar(text, "tgi_request_input_length_sum")}
    assert v["spec_num_drafts"] == {"": _tgi_scalar(text, "tgi_request_skipped_tokens_count")}
    e2e = v["e2e"][""]
    assert len(e2e["le"]) == 35 and e2e["le"][0] == pytest.approx(0.00015) and e2e["count"] == 300
    report = mapping_report(DIALECTS["tgi"])
    unavailable = {n for n, r in report.items() if r["read"] == "unavailable"}
    assert {"kv_cache_usage", "preemptions", "prefix_cache_hits", "ttft", "itl"} <= unavailable
    assert not unavailable & set(v)
    assert "TGI" in report["kv_cache_usage"]["note"]


def test_every_table_entry_is_in_the_vocabulary() -> None:
    for d in DIALECTS.values():
        assert set(d.table) <= set(VOCABULARY)
        assert not set(d.table) & set(d.unavailable)


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/metrics"),
        ("https://host:443/v1/chat/completions?x=1", "https://host:443/metrics"),
        ("http://[::1]:9000", "http://[::1]:9000/metrics"),
    ],
)
def test_default_metrics_url(base: str, url: str) -> None:
    assert default_metrics_url(base) == url


def test_default_metrics_url_rejects_relative() -> None:
    with pytest.raises(ValueError):
        default_metrics_url("127.0.0.1:8000")
