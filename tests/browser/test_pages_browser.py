"""The run, comparison and sweep pages as a person sees them in headless Chromium: no script errors, numbers equal
to their JSON, figure text that does not collide (note, axis label, legend) and legends that cover no data.

Skips (one reason) without Chromium; fails when CI is set and Chromium is missing. Screenshots go to the test's
tmp dir and to tests/browser/artifacts/ (git-ignored), to be looked at.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import orjson
import pytest

from loadgen.commands.compare import compare_runs
from loadgen.commands.sweep import STOP_RULE
from loadgen.report.html import write_compare_report, write_run_report, write_sweep_report
from loadgen.report.synthetic_run import write_folder
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


def _keep(shot: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / shot.name)


# Boxes (page pixels) of what each figure draws outside and inside its panel, and the data points in the panel.
FIGURE_LAYOUT = """(() => {
  const box = e => { const r = e.getBoundingClientRect(); return {x0: r.left, y0: r.top, x1: r.right, y1: r.bottom}; };
  const out = {};
  document.querySelectorAll('svg.figure').forEach(s => {
    const q = sel => [...s.querySelectorAll(sel)].map(box);
    const pts = [];
    s.querySelectorAll('path.series').forEach(p => {
      const n = p.getTotalLength(), m = p.getScreenCTM();
      for (let i = 0; i <= 60; i++) {
        const pt = p.getPointAtLength(n * i / 60), sp = pt.matrixTransform(m); pts.push([sp.x, sp.y]);
      }
    });
    s.querySelectorAll('circle.point, path.point').forEach(c => { const b = box(c); pts.push([(b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2]); });
    out[s.id] = {frame: q('rect.frame'), xlabel: q('text.xlabel'), legend: q('g.legend'), notes: q('text.note'),
                 pts, w: s.getBoundingClientRect().width, empty: s.classList.contains('empty')};
  });
  return out;
})()"""


def _overlap(a: dict, b: dict) -> bool:
    return (
        a["x0"] < b["x1"] - 0.5
        and b["x0"] < a["x1"] - 0.5
        and a["y0"] < b["y1"] - 0.5
        and b["y0"] < a["y1"] - 0.5
    )


def _inside(pt: list[float], b: dict) -> bool:
    return b["x0"] + 1 < pt[0] < b["x1"] - 1 and b["y0"] + 1 < pt[1] < b["y1"] - 1


def _check_layout(layout: dict, fid: str, *, data_free_legend: bool = True) -> None:
    f = layout[fid]
    assert not f["empty"] and f["frame"], (fid, f)
    texts = f["xlabel"] + f["notes"] + f["legend"]
    for i, a in enumerate(texts):
        for b in texts[i + 1 :]:
            assert not _overlap(a, b), (fid, "texts collide", a, b)
    for n in f["notes"]:
        assert not _overlap(n, f["frame"][0]), (fid, "note inside the plot")
    if data_free_legend:
        for lg in f["legend"]:
            covered = [p for p in f["pts"] if _inside(p, lg)]
            assert not covered, (fid, "legend covers data", lg, covered[:3])


async def _open(exe: str, page: Path, shot: Path, width: int = 1280) -> tuple[dict, list, Browser]:
    async with Browser(exe, width, 900) as b:
        await b.open(page.resolve().as_uri())
        layout = await b.eval(FIGURE_LAYOUT)
        facts = await b.eval(
            "(() => { const v = {}; document.querySelectorAll('[data-key]').forEach(e => v[e.dataset.key] ="
            " e.dataset.value); return {values: v, title: document.title, text: document.body.innerText}; })()"
        )
        await b.screenshot(shot)
        errors = list(b.errors)
    facts["layout"] = layout
    return facts, errors, b


def test_run_page_figures_keep_notes_labels_and_legends_apart(chromium, tmp_path):
    # a run with a binned ITL (the figure whose note sat on the axis label and whose legend hid the curve)
    run = write_folder(tmp_path / "run", 3000, hours=0.05, interval_s=0.5, seed=11)
    write_run_report(run)
    shot = tmp_path / "report-synthetic-figures.png"
    facts, errors, _ = asyncio.run(_open(chromium, run / "report.html", shot))
    assert errors == []
    for fid in ("cdf-ttft", "cdf-ttfvt", "cdf-tpot", "cdf-itl", "cdf-e2e"):
        _check_layout(facts["layout"], fid)
    assert facts["layout"]["cdf-itl"]["notes"], "the ITL figure says it is binned"
    assert "p95" in facts["text"]
    _keep(shot)


@pytest.fixture(scope="module")
def comparison(tmp_path_factory) -> tuple[dict, Path]:
    d = tmp_path_factory.mktemp("compare")
    runs = []
    for i, name in enumerate(("baseline", "fp8-kv")):
        r = write_folder(d / name, 600, hours=0.03, interval_s=0.5, seed=20 + i)
        s = json.loads((r / "summary.json").read_text())
        s["label"] = name
        (r / "summary.json").write_text(json.dumps(s))
        runs.append(r)
    result = compare_runs(runs, n_boot=300)
    return result, write_compare_report(result, d / "compare.html")


def test_compare_page_in_chromium(chromium, comparison, tmp_path):
    result, page = comparison
    shot = tmp_path / "compare.png"
    facts, errors, _ = asyncio.run(_open(chromium, page, shot))
    assert errors == []
    for c in result["configs"]:
        for key, value in c["metrics"].items():
            raw = facts["values"].get(f"configs.{c['name']}.metrics.{key}")
            if value is None:
                assert raw in (None, "")
            else:
                assert float(raw) == pytest.approx(value, rel=1e-12), key
    cdfs = [fid for fid in facts["layout"] if fid.startswith("compare-cdf")]
    assert cdfs and "compare-bars" in facts["layout"]
    for fid in cdfs:
        _check_layout(facts["layout"], fid)
    _keep(shot)


def _cell(rate, cv, **kw):
    c = {
        "rate": rate, "cv": cv, "dir": f"rate-{rate:g}_cv-{cv:g}", "status": "ok", "offered_rate": rate * 1.02,
        "throughput": min(rate, 9.0), "goodput_rps": min(rate, 9.0 if cv == 1 else 6.0) * 0.97,
        "p99_ttft_ms": 30.0 * rate * cv, "p99_ttft_from_intended_ms": 34.0 * rate * cv,
        "p99_ttfvt_ms": 900.0 * rate ** 0.5 * cv, "p99_ttfvt_from_intended_ms": 950.0 * rate ** 0.5 * cv,
        "p50_e2e_ms": 1200.0, "error_share": 0.0, "saturated": False, "reason": None, "trustworthy": True,
        "client_check_reasons": [], "rate_window": {"window": "arrival window (first to last intended start) "
        "shifted later by the median E2E from intended start", "duration_s": 10.0, "short": False},
    }  # fmt: skip
    c.update(kw)
    return c


def test_sweep_page_in_chromium(chromium, tmp_path):
    bad = ["send lag p99 12.3 ms > 5 ms: requests left later than planned"]
    cells = [
        _cell(1.0, 1.0), _cell(2.0, 1.0, trustworthy=False, client_check_reasons=bad), _cell(4.0, 1.0),
        _cell(8.0, 1.0), _cell(16.0, 1.0, saturated=True, reason="throughput 9.0/s is 55% of the offered 16.3/s"),
        _cell(1.0, 4.0), _cell(2.0, 4.0), _cell(4.0, 4.0, trustworthy=False, client_check_reasons=bad),
        _cell(8.0, 4.0, saturated=True, reason="throughput 6.0/s is 74% of the offered 8.2/s"),
        _cell(16.0, 4.0, status="skipped", reason="cv 4 saturated at rate 8", offered_rate=None, throughput=None,
              goodput_rps=None, p99_ttft_ms=None, p99_ttft_from_intended_ms=None, p99_ttfvt_ms=None,
              p99_ttfvt_from_intended_ms=None, p50_e2e_ms=None, error_share=None, trustworthy=None),
    ]  # fmt: skip
    d = tmp_path / "sweep"
    d.mkdir()
    doc = {"config": {"rates": [1, 2, 4, 8, 16], "cvs": [1, 4], "stop_rule": STOP_RULE,
                      "run_config": {"analysis": {"slo_ms": {}}}}, "status": "done", "cells": cells}  # fmt: skip
    (d / "sweep.json").write_bytes(orjson.dumps(doc))
    page = write_sweep_report(d)
    shot = tmp_path / "sweep.png"
    facts, errors, _ = asyncio.run(_open(chromium, page, shot))
    assert errors == []
    text = " ".join(facts["text"].split())
    assert (
        "2 of 10 cells are not trustworthy" in text
        and "Successful requests (no --slo set: no goodput)" in text
    )
    assert "p99 TTFT from intended start (corrected)" in text
    for i, c in enumerate(cells):
        for key in ("goodput_rps", "p99_ttft_from_intended_ms", "p99_ttft_ms"):
            raw = facts["values"][f"cells.{i}.{key}"]
            assert (raw == "") if c[key] is None else float(raw) == pytest.approx(c[key])
    for fid in ("sweep-goodput_rps", "sweep-p99_ttft_ms", "sweep-p99_ttfvt_ms"):
        _check_layout(facts["layout"], fid)
    _keep(shot)
