"""The HTML report of a real CPU vLLM run, rendered in headless Chromium (the simulator's is in tests/browser)."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser.cdp import find_chromium
from tests.browser.test_report_browser import _check, _keep

ROOT = Path(__file__).resolve().parents[2]


def test_vllm_run_report_in_chromium(vllm_server, tiny_model_info, tmp_path):
    exe = find_chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but no Chromium was found: apt-get install -y chromium")
        pytest.skip("no Chromium installed (apt-get install -y chromium)")
    srv = vllm_server(["--reasoning-parser", "deepseek_r1"])
    out = tmp_path / "vllm-run"
    # end the reasoning early so answers (and so TTFVT) exist
    bias = json.dumps({"logit_bias": {str(tiny_model_info["think_end_id"]): 6}})
    subprocess.run(
        [sys.executable, "-m", "loadgen", "--base-url", srv.base_url, "--rate", "8", "--cv", "2", "-n", "16",
         "--max-tokens", "96", "--extra-body", bias, "--scrape-interval", "0.25", "--quiet", "--output-dir", str(out)],
        check=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert (out / "report.html").is_file()
    shot = tmp_path / "report-vllm.png"
    facts = asyncio.run(_check(exe, out, shot, "endpoint"))
    assert facts["kv_max"] is not None, "a real vLLM run shows its KV-cache usage"
    _keep(shot)
