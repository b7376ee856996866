"""The run report as a user sees it: real headless Chromium, no console errors, figures drawn, numbers = summary.

Skips (one reason) without Chromium; FAILS when the environment variable CI is set and Chromium is missing.
A real CPU vLLM run's report is checked by tests/e2e/test_report_vllm_browser.py, where that server runs.
Screenshots go to the test's tmp dir and to tests/browser/artifacts/ (git-ignored).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from loadgen.report.page import fmt
from tests.browser.cdp import Browser, find_chromium

ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="module")
def chromium() -> str:
    exe = find_chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail(
                "CI is set but no Chromium was found: apt-get install -y chromium (or set LOADGEN_CHROMIUM)"
            )
        pytest.skip("no Chromium installed (apt-get install -y chromium, or set LOADGEN_CHROMIUM)")
    return exe


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("browser") / "run"
    cmd = [sys.executable, "-m", "loadgen", "--rate", "10", "--cv", "2", "-n", "20", "--output-dir", str(out),
           "--quiet", "--seed", "1"]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=300, cwd=out.parent)
    assert (out / "report.html").is_file(), "a run writes report.html at its end"
    return out


PAGE_FACTS = """(() => {
  const v = k => { const e = document.querySelector(`[data-key="${k}"]`); return e ? e.getAttribute('data-value') : null; };
  const txt = k => { const e = document.querySelector(`td[data-key="${k}"]`); return e ? e.textContent : null; };
  const figs = {};
  document.querySelectorAll('svg.figure').forEach(s => {
    const r = s.getBoundingClientRect();
    const paths = [...s.querySelectorAll('path.series')].filter(p => (p.getAttribute('d') || '').length > 20).length;
    figs[s.id] = {w: r.width, h: r.height, paths, reqs: s.querySelectorAll('g.req').length,
                  empty: s.classList.contains('empty')};
  });
  return {figs, ttft_p50: v('metrics.latency_ms.ttft.p50'), ttft_p50_text: txt('metrics.latency_ms.ttft.p50'),
          measured: v('metrics.requests.measured'), kv_max: v('server.kv_cache_usage.max'),
          kv_max_text: txt('server.kv_cache_usage.max'), verdict: document.getElementById('verdict').dataset.trustworthy,
          target: document.getElementById('target-kind').dataset.kind, title: document.title};
})()"""


async def _check(exe: str, run: Path, shot: Path, kind: str) -> dict:
    summary = orjson.loads((run / "summary.json").read_bytes())
    async with Browser(exe, 1280, 900) as b:
        await b.open((run / "report.html").resolve().as_uri())
        facts = await b.eval(PAGE_FACTS)
        # hover a request of the timeline: the tooltip shows its details
        box = await b.eval(
            "(() => { const g = document.querySelector('#timeline g.req rect'); g.scrollIntoView({block:'center'});"
            " const r = g.getBoundingClientRect(); return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()"
        )
        await b.hover(box["x"], box["y"])
        await asyncio.sleep(0.1)
        tip = await b.eval("document.getElementById('tip').textContent")
        await b.eval("window.scrollTo(0, 0)")
        await b.screenshot(shot)
        errors = list(b.errors)
    assert errors == [], errors
    m = summary["metrics"]
    assert float(facts["ttft_p50"]) == pytest.approx(m["latency_ms"]["ttft"]["p50"], rel=1e-12)
    assert facts["ttft_p50_text"] == fmt(m["latency_ms"]["ttft"]["p50"])  # what the reader sees
    assert int(float(facts["measured"])) == m["requests"]["measured"]
    assert facts["verdict"] == str(summary["client_check"]["trustworthy"]).lower()
    assert facts["target"] == kind
    figs = facts["figs"]
    for fid in ("cdf-ttft", "cdf-ttfvt", "cdf-tpot", "cdf-itl", "cdf-e2e", "timeline"):
        f = figs[fid]
        assert f["w"] > 300 and f["h"] > 200 and not f["empty"], (fid, f)
        assert f["paths"] >= 1, (fid, f)
    assert figs["timeline"]["reqs"] == m["requests"]["total"]
    server = summary.get("server") or {}
    if "kv_cache_usage" in server:
        assert float(facts["kv_max"]) == pytest.approx(server["kv_cache_usage"]["max"], rel=1e-12)
        assert facts["kv_max_text"] == f"{server['kv_cache_usage']['max']:.1%}"
        assert figs["timeline"]["paths"] >= 3  # KV, running, waiting (+ throughput)
    assert tip.startswith("request #") and "TTFT" in tip and "tokens" in tip
    return facts


def _keep(shot: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / shot.name)


def test_sim_run_report_in_chromium(chromium: str, sim_run: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report-sim.png"
    asyncio.run(_check(chromium, sim_run, shot, "simulated"))
    assert shot.stat().st_size > 50_000
    _keep(shot)
