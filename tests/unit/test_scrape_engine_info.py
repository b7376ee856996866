"""KV-cache capacity from vLLM's cache_config_info, on real captured /metrics texts."""

from pathlib import Path

from loadgen.scrape.parse import engine_info

DATA = Path(__file__).resolve().parents[1] / "data"


def test_capacity_from_a_real_vllm_text():
    info = engine_info((DATA / "vllm" / "metrics_idle.txt").read_text())
    assert info["kv_block_size"] == 128
    assert info["kv_num_blocks"] == 4096
    assert info["kv_capacity_tokens"] == 4096 * 128
    assert info["kv_cache_dtype"] == "auto"


def test_forced_block_count_is_visible():
    info = engine_info((DATA / "vllm" / "metrics_preemption.txt").read_text())
    assert info["kv_num_blocks"] == 16 and info["num_gpu_blocks_override"] == "16"


def test_other_engines_have_no_cache_info():
    assert engine_info((DATA / "metrics" / "sglang_idle.txt").read_text()) == {}
