"""The llama.cpp dialect and /slots, on texts captured from a real llama-server (tests/data/llamacpp/, written by
the llama.cpp build the e2e tier uses; the e2e tier checks the same names against a live server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadgen.scrape import DIALECTS, detect_dialect, mapping_report, parse_text, server_summary
from loadgen.scrape.parse import parse_raw
from loadgen.scrape.series import Sample
from loadgen.scrape.slots import slots_values

DATA = Path(__file__).resolve().parents[1] / "data" / "llamacpp"


def test_detected_and_mapped_from_a_real_text() -> None:
    text = (DATA / "metrics_after_load.txt").read_text()
    assert detect_dialect(text) == "llamacpp"
    v = parse_text(text, DIALECTS["llamacpp"])
    assert v["prompt_tokens"] == {"": 5376.0}
    assert v["prefix_cache_hits"] == {"": 92.0}
    assert v["generation_tokens"] == {"": 1260.0}
    assert v["prompt_seconds"] == {"": pytest.approx(0.474592)}
    assert v["generation_seconds"] == {"": pytest.approx(1.30643)}
    assert v["decode_calls"] == {"": 941.0}
    assert v["num_running"] == {"": 0.0} and v["num_waiting"] == {"": 0.0}
    assert v["busy_slots_per_decode"] == {"": pytest.approx(1.339)}
    assert v["spec_draft_tokens"] == {"": 0.0}
    # nothing invented: no KV metric and no histograms in llama.cpp's text
    assert not {"kv_cache_usage", "ttft", "e2e", "preemptions"} & set(v)


def test_mapping_report_says_where_kv_and_latency_come_from() -> None:
    report = mapping_report(DIALECTS["llamacpp"])
    assert report["kv_cache_usage"]["read"] == "unavailable" and "/slots" in report["kv_cache_usage"]["note"]
    assert report["ttft"]["read"] == "unavailable" and "timings" in report["ttft"]["note"]
    assert report["prefix_cache_queries"]["read"] == "derived"
    assert report["prefix_cache_queries"]["from"] == "prefix_cache_hits + prompt_tokens"


def test_slots_give_occupancy() -> None:
    busy = slots_values((DATA / "slots_busy.json").read_bytes())
    assert busy["slots_busy"] == {"": 3.0} and busy["slots_total"] == {"": 4.0}
    # four per-slot caches of 2,048 tokens; the busy slots hold 208 + 206 + 202 tokens (the idle one keeps 18
    # cached prompt tokens: reusable, not in use)
    assert busy["kv_cache_usage"][""] == pytest.approx((208 + 206 + 202) / 8192)
    idle = slots_values((DATA / "slots_idle.json").read_bytes())
    assert idle["slots_busy"] == {"": 0.0} and idle["kv_cache_usage"] == {"": 0.0}
    with pytest.raises(ValueError):
        slots_values(b'{"error": "slots disabled"}')


def test_summary_derives_prefix_cache_lookups_and_server_time() -> None:
    def sample(t_s: float, prompt: float, cached: float, busy: float) -> Sample:
        values = {
            "prompt_tokens": {"": prompt},
            "prefix_cache_hits": {"": cached},
            "prompt_seconds": {"": prompt / 1000},
            "generation_seconds": {"": t_s / 2},
            "slots_busy": {"": busy},
            "slots_total": {"": 4.0},
            "kv_cache_usage": {"": busy / 8},
        }
        return Sample(int(t_s * 1e9), int(t_s * 1e9), "u", "llamacpp", values)

    samples = [sample(0, 0, 0, 0), sample(1, 300, 100, 2), sample(2, 600, 300, 4)]
    s = server_summary(samples, (0, 2_500_000_000))
    assert s["prefix_cache"]["hits"] == 300 and s["prefix_cache"]["queries"] == 900
    assert s["prefix_cache"]["hit_rate"] == pytest.approx(1 / 3)
    assert s["server_time"]["prompt_s"] == pytest.approx(0.6) and s["server_time"]["generation_s"] == 1.0
    assert s["slots"]["total"] == 4 and s["slots"]["busy_max"] == 4
    assert s["kv_cache_usage"]["max"] == 0.5
    assert "prefix_cache_queries" not in s["missing"]
    assert "no latency histograms" in s["missing"]["ttft"]


def test_unknown_text_keeps_raw_samples() -> None:
    text = '# TYPE my_engine_queue gauge\nmy_engine_queue 3\nmy_engine_tokens_total{model="m"} 12.5\n'
    assert detect_dialect(text) is None
    assert parse_raw(text) == {"my_engine_queue": 3.0, 'my_engine_tokens_total{model="m"}': 12.5}
    many = "\n".join(f"m_{i} {i}" for i in range(2000))
    assert len(parse_raw(many)) == 500
