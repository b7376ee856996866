"""The CPU experiment (workloads/experiments/tiny-cpu.toml) for real on the local CPU vLLM, then compare.

Four servers start one after the other (~35 s each), 8 cells of 20 requests: about 3 minutes on 2 cores.
"""

from __future__ import annotations

import json
from pathlib import Path

from loadgen.commands.compare import compare_runs
from loadgen.commands.experiment import load_plan, run_experiment

ROOT = Path(__file__).resolve().parents[2]
CPU = ROOT / "workloads/experiments/tiny-cpu.toml"


def _diff(result, config, metric):
    (d,) = [x for x in result["differences"] if x["config"] == config and x["metric"] == metric]
    return d


def test_cpu_experiment_end_to_end_and_compare(vllm_setup, tmp_path):
    plan = load_plan(CPU)
    out = tmp_path / "exp"
    manifest = run_experiment(plan, out, install_signal_handlers=False)
    assert manifest["counts"] == {"ok": 8}, [(c["id"], c.get("error")) for c in manifest["cells"]]
    for name, s in manifest["specs"].items():
        assert s["server"]["status"] == "stopped", name
        assert s["server"]["command"].endswith(" ".join(s["rendered"]["local_vllm_args"])) or name == "ngram"
    for c in manifest["cells"]:
        # dev mode is on, so vLLM empties its prefix cache after each warm-up
        assert c["prefix_cache_reset"] == "done (POST /reset_prefix_cache)", c
        assert c["warmup"]["ok"] == plan.warmup
        assert c["summary"]["requests_ok"] == 20
    assert json.loads((out / "manifest.json").read_text())["status"] == "done"

    res = compare_runs([out], n_boot=2000, seed=0)
    vals = {c["name"]: c["metrics"] for c in res["configs"]}
    assert res["baseline"] == "baseline"

    # prefix caching: > 0 hit rate with it on (a 320-token shared prefix), exactly 0 with it off
    assert vals["baseline"]["prefix_hit_rate"] > 0.3
    assert vals["prefix-off"]["prefix_hit_rate"] == 0.0
    hit = _diff(res, "prefix-off", "prefix_hit_rate")
    assert hit["significant"] is True and hit["ci_high"] < 0

    # fp8 KV cache: twice the tokens in the same memory
    assert vals["fp8-kv"]["kv_capacity_tokens"] == 2 * vals["baseline"]["kv_capacity_tokens"]
    cap = _diff(res, "fp8-kv", "kv_capacity_tokens")
    assert cap["rel_diff"] == 1.0 and cap["significant"] is True

    # n-gram speculation: drafts accepted (greedy decoding over a repetitive prompt)
    assert vals["ngram"]["spec_acceptance"] > 0
    assert vals["ngram"]["spec_accepted_length"] > 1
    assert vals["baseline"]["spec_acceptance"] is None

    for name in vals:
        assert vals[name]["error_share"] == 0.0
        assert vals[name]["ttft_p50"] > 0 and vals[name]["e2e_p99"] >= vals[name]["e2e_p50"]
