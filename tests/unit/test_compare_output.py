"""compare's tables fit the terminal (never a cut number) and are plain text when piped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from loadgen.analysis.catalogue import METRIC_BY_KEY
from loadgen.commands.compare import compare_runs
from loadgen.report.compare_console import _fmt, format_compare
from tests.unit.test_compare import lognormal, write_run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    rng = np.random.default_rng(7)
    d = tmp_path_factory.mktemp("cmp")
    # big numbers (tens of seconds) make the widest cells; "fast" is clearly better
    return [
        write_run(
            d / "baseline-config", lognormal(rng, 300, 12_345), label="baseline-config", throughput=1234.5
        ),
        write_run(d / "fast", lognormal(rng, 300, 6_000), label="fast", throughput=2345.6),
        write_run(d / "same", lognormal(rng, 300, 12_345), label="same", throughput=1234.5),
    ]


def _render(result, width: int) -> str:
    with open(os.devnull, "w") as sink:
        con = Console(width=width, force_terminal=True, color_system=None, record=True, file=sink)
        format_compare(result, con)
    return con.export_text()


@pytest.mark.parametrize("width", [60, 80, 100])
def test_a_narrow_terminal_gets_every_number_whole(runs, width):
    result = compare_runs(runs, n_boot=200)
    text = _render(result, width)
    assert max(len(ln) for ln in text.splitlines()) <= width
    assert "…" not in text  # rich's ellipsis: a cut number
    # the vertical layout: one row per metric and configuration, never the metrics side by side
    assert not any("TTFT p50" in ln and "E2E p99" in ln for ln in text.splitlines())
    for c in result["configs"]:
        for key in ("ttft_p50", "e2e_p99", "throughput_rps"):
            shown = _fmt(c["metrics"][key], METRIC_BY_KEY[key].unit)
            assert shown in text, (width, c["name"], key, shown)


def test_a_wide_terminal_keeps_configurations_as_rows(runs):
    text = _render(compare_runs(runs, n_boot=200), 240)
    header = next(ln for ln in text.splitlines() if "TTFT p50" in ln)
    assert "E2E p99" in header  # every latency metric a column of one table
    assert "…" not in text and max(len(ln) for ln in text.splitlines()) <= 240


def test_piped_output_is_plain_text(runs):
    r = subprocess.run(
        [sys.executable, "-m", "loadgen", "compare", *map(str, runs), "--n-boot", "200"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "COLUMNS": "300", "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "\x1b[" not in out and not any(ch in out for ch in "┃│━─┏└")  # no colours, no box drawing
    lines = out.splitlines()
    assert all(ln == ln.rstrip() for ln in lines)  # not padded to a fixed width
    assert "configuration baseline-config (baseline): 1 run(s), 300 requests" in out
    fast_ttft = next(ln for ln in lines if ln.split()[:1] == ["fast"] and "%" in ln)
    assert fast_ttft.endswith("* better")  # a significant change says which way, without colour
    thr = next(ln for ln in lines if ln.split()[:1] == ["fast"] and "pt" not in ln and ln.endswith("n/a"))
    assert "[" in thr  # one run a side: the interval is shown, without a verdict
