"""A mixed-dataset run with a token-budget sweep against the real CPU vLLM: per-dataset/per-budget tables.

The tiny model is random, so its answers are wrong; what is checked is that the whole pipeline — dataset
prompts through the chat template, budgets, reasoning/answer split, scoring of the visible answer, grouping —
runs on a real engine and reports truncation where the budget cut the output.
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "datasets"


def test_mixed_datasets_budget_sweep_on_vllm(vllm_server, tiny_model_info, tmp_path):
    srv = vllm_server(["--reasoning-parser", "deepseek_r1"])
    bias = json.dumps({"logit_bias": {str(tiny_model_info["think_end_id"]): 5}})
    out = tmp_path / "ds"
    r = subprocess.run(
        [sys.executable, "-m", "loadgen", "--base-url", srv.base_url, "--dataset", "gsm8k:0.5,aime2024:0.5",
         "--dataset-path", str(DATA), "--max-tokens", "16,128", "--repeats", "2", "-n", "4",
         "--sample-with-replacement", "--rate", "8", "--extra-body", bias, "--json", "--no-report",
         "--output-dir", str(out)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["target"]["kind"] == "endpoint"
    assert s["metrics"]["requests"]["ok"] == 4 * 2 * 2
    acc = s["accuracy"]
    assert set(acc["by_dataset"]) == {"gsm8k", "aime2024"}
    assert set(acc["by_budget"]) == {"16", "128"}
    assert acc["overall"]["n"] == 16
    # 16 tokens cannot hold reasoning and an answer: every one of them is truncated
    assert acc["by_budget"]["16"]["truncated"] == acc["by_budget"]["16"]["n"]
    groups = s["groups"]
    assert set(groups["budget"]) == {"16", "128"}
    assert groups["budget"]["128"]["mean_output_tokens"] > groups["budget"]["16"]["mean_output_tokens"]
    recs = [json.loads(x) for x in (out / "requests.jsonl").read_text().splitlines()]
    assert all(rec["completion_tokens"] <= rec["max_tokens"] for rec in recs)
    # the prompt went through the chat template: far more tokens than the question's words
    assert min(rec["prompt_tokens"] for rec in recs) > 20
