"""LaunchSpec: TOML loading, one-line validation errors, override precedence."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from server_launchers.__main__ import build_parser, resolve_spec
from server_launchers.spec import LaunchSpec, LaunchSpecError, load_spec, load_specs

ROOT = Path(__file__).resolve().parents[2]
GPU_PRESET = ROOT / "workloads" / "presets" / "r1-distill-qwen-7b-gpu.toml"
CPU_PRESET = ROOT / "workloads" / "presets" / "tiny-cpu.toml"


def test_presets_load_with_study_configurations():
    gpu = load_specs(GPU_PRESET)
    assert list(gpu) == [
        "baseline",
        "fp8-weights",
        "gptq",
        "awq",
        "fp8-kv",
        "fp8-kv-e5m2",
        "prefix-off",
        "ngram",
    ]
    assert {s.served_name for s in gpu.values()} == {"r1-distill-qwen-7b"}  # one workload addresses all
    assert gpu["baseline"].dtype == "bfloat16" and gpu["baseline"].quantization == "none"
    assert gpu["gptq"].model != gpu["baseline"].model and gpu["awq"].model != gpu["baseline"].model
    assert gpu["fp8-weights"].model == gpu["baseline"].model  # FP8 is quantised in flight
    assert gpu["ngram"].speculative.method == "ngram" and gpu["ngram"].speculative.num_tokens == 4
    assert gpu["prefix-off"].prefix_caching is False and gpu["baseline"].prefix_caching is True
    cpu = load_specs(CPU_PRESET)
    assert list(cpu) == ["baseline", "prefix-off", "fp8-kv", "ngram"]
    assert cpu["fp8-kv"].kv_cache_dtype == "fp8"


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({}, "'model' is required"),
        ({"model": "m", "engine": "ollama"}, "engine must be one of vllm, sglang, tgi, llamacpp"),
        ({"model": "m", "kv_cache_dtype": "fp4"}, "kv_cache_dtype must be one of"),
        ({"model": "m", "quantization": "int3"}, "quantization must be one of"),
        ({"model": "m", "gpu_memory_fraction": 1.5}, "gpu_memory_fraction must be in (0, 1]"),
        (
            {"model": "m", "tensor_parallel": 2, "gpus": [0]},
            "tensor_parallel=2 needs at least that many gpus",
        ),
        (
            {"model": "m", "speculative": {"method": "ngram"}},
            "speculative.num_tokens must be an integer >= 1",
        ),
        ({"model": "m", "speculative": {"method": "eagle", "num_tokens": 3}}, "draft_model"),
        ({"model": "m", "speculative": {"num_tokens": 3}}, "speculative.method is 'none'"),
        (
            {
                "model": "m",
                "speculative": {"method": "ngram", "num_tokens": 4, "ngram_min": 5, "ngram_max": 2},
            },
            "<=",
        ),
        ({"model": "m", "env": {"HF_TOKEN": "hf_abc"}}, "looks like a secret"),
        ({"model": "m", "hf_token_env": "hf_abc123!"}, "NAME of an environment variable"),
        ({"model": "m", "colour": "red"}, "unknown key(s) colour"),
    ],
)
def test_validation_errors_are_one_clear_line(data, needle):
    with pytest.raises(LaunchSpecError) as exc:
        LaunchSpec.from_dict(data, name="t")
    msg = str(exc.value)
    assert needle in msg and "\n" not in msg and msg.startswith("launch spec 't'")


def test_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("model = [")
    with pytest.raises(LaunchSpecError, match="invalid TOML"):
        load_specs(bad)
    with pytest.raises(LaunchSpecError, match="does not exist"):
        load_specs(tmp_path / "missing.toml")
    with pytest.raises(LaunchSpecError, match="pick one by name"):
        load_spec(GPU_PRESET)
    with pytest.raises(LaunchSpecError, match="has no spec 'nope'"):
        load_spec(GPU_PRESET, "nope")


def test_single_spec_file_and_overrides(tmp_path):
    f = tmp_path / "one.toml"
    f.write_text('model = "org/m"\nengine = "sglang"\ngpus = [0, 1]\ntensor_parallel = 2\n')
    spec = load_spec(f)
    assert (spec.name, spec.engine, spec.gpus, spec.model_name) == ("one", "sglang", (0, 1), "org/m")
    assert load_spec(f, overrides={"gpus": "2,3"}).gpus == (2, 3)


def _ns(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["render", *argv])


def test_gpu_selection_precedence_cli_over_env_over_file():
    args = (str(GPU_PRESET), "--name", "baseline")
    assert resolve_spec(_ns(*args), environ={}).gpus == (0,)
    assert resolve_spec(_ns(*args), environ={"CUDA_VISIBLE_DEVICES": "3"}).gpus == (3,)
    assert resolve_spec(_ns(*args), environ={"CUDA_VISIBLE_DEVICES": "3", "LOADGEN_GPUS": "5"}).gpus == (5,)
    assert resolve_spec(_ns(*args, "--gpus", "6"), environ={"LOADGEN_GPUS": "5"}).gpus == (6,)


def test_engine_and_image_tag_overrides():
    args = (str(GPU_PRESET), "--name", "fp8-kv", "--engine", "sglang")
    spec = resolve_spec(_ns(*args), environ={})
    assert spec.engine == "sglang" and spec.image_ref == "lmsysorg/sglang:v0.5.23"
    spec = resolve_spec(_ns(*args), environ={"LOADGEN_SGLANG_IMAGE_TAG": "v0.5.24"})
    assert spec.image_ref == "lmsysorg/sglang:v0.5.24"
    spec = resolve_spec(_ns(*args, "--image-tag", "dev"), environ={"LOADGEN_SGLANG_IMAGE_TAG": "v0.5.24"})
    assert spec.image_ref == "lmsysorg/sglang:dev"


def test_launch_state_lives_under_the_one_cache_variable(tmp_path, monkeypatch):
    from server_launchers.__main__ import state_dir
    from server_launchers.local_vllm import LocalVllmServer

    monkeypatch.setenv("LOADGEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("LOADGEN_CACHE", str(tmp_path / "old"))  # what server_launchers once read
    assert state_dir() == tmp_path / "launchers"
    assert LocalVllmServer.state_path("x").parent == tmp_path / "run"
