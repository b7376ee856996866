"""The sweep page and table say what they plot: corrected p99, the rate window, untrustworthy cells marked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from loadgen.commands.sweep import STOP_RULE, format_sweep
from loadgen.report.html import write_sweep_report


def _cell(rate, cv, **kw):
    c = {
        "rate": rate, "cv": cv, "dir": f"rate-{rate:g}_cv-{cv:g}", "status": "ok", "offered_rate": rate,
        "throughput": rate * 0.98, "goodput_rps": rate * 0.9, "p99_ttft_ms": 40.0 * rate,
        "p99_ttft_from_intended_ms": 55.0 * rate, "p99_ttfvt_ms": 900.0, "p99_ttfvt_from_intended_ms": 950.0,
        "p50_e2e_ms": 1200.0, "error_share": 0.0, "saturated": False, "reason": None, "trustworthy": True,
        "client_check_reasons": [], "rate_window": {"window": "arrival window (first to last intended start) "
        "shifted later by the median E2E from intended start", "duration_s": 10.0, "short": False},
    }  # fmt: skip
    c.update(kw)
    return c


def _sweep(tmp_path: Path, slo: dict | None) -> Path:
    cells = [
        _cell(1.0, 1.0),
        _cell(
            4.0,
            1.0,
            trustworthy=False,
            client_check_reasons=["send lag p99 12 ms > 5 ms: requests left late"],
        ),
        _cell(16.0, 1.0, saturated=True, reason="throughput 9/s is 56% of the offered 16/s", throughput=9.0),
        _cell(1.0, 3.0, rate_window={"window": "w", "short": True}),
        _cell(4.0, 3.0, status="skipped", reason="cv 3 saturated at rate 1", goodput_rps=None),
        _cell(16.0, 3.0, status="skipped", reason="cv 3 saturated at rate 1", goodput_rps=None),
    ]
    doc = {
        "config": {"rates": [1.0, 4.0, 16.0], "cvs": [1.0, 3.0], "stop_rule": STOP_RULE,
                   "run_config": {"analysis": {"slo_ms": slo or {}}}},
        "status": "done", "cells": cells,
    }  # fmt: skip
    d = tmp_path / "sweep"
    d.mkdir()
    (d / "sweep.json").write_text(json.dumps(doc))
    return d


@pytest.mark.parametrize("slo", [None, {"ttft": 500.0}])
def test_sweep_page_labels_what_it_plots_and_marks_untrustworthy_cells(tmp_path, slo):
    html = write_sweep_report(_sweep(tmp_path, slo)).read_text()
    if slo:
        assert "Goodput (requests meeting the SLO)" in html and "requests/s with TTFT ≤ 500 ms" in html
    else:
        assert "meeting the SLO" not in html  # no SLO: the figure says what it shows instead
        assert "Successful requests (no --slo set: no goodput)" in html and "<th>ok req/s</th>" in html
    assert "p99 TTFT from intended start (corrected)" in html
    assert 'data-key="cells.0.p99_ttft_from_intended_ms" data-value="55.0"' in html
    assert 'data-key="cells.0.p99_ttft_ms" data-value="40.0"' in html  # and the uncorrected one beside it
    assert 'id="untrusted" data-count="1"' in html and "send lag p99 12 ms &gt; 5 ms" in html
    assert html.count('<tr class="untrusted">') == 1 and "NOT trustworthy" in html
    assert "client check failed" in html  # the figures' legend for the crossed-out points
    assert "shifted later by the median E2E" in html
    assert "ok (short)" in html  # the short cell; the saturated one is not called short


def test_sweep_console_table_marks_untrustworthy_cells_and_uses_corrected_ttft(tmp_path):
    doc = json.loads((_sweep(tmp_path, None) / "sweep.json").read_text())
    con = Console(width=160, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    format_sweep(doc, con)
    text = con.export_text()
    flat = " ".join(text.split())
    assert "successful req/s (no --slo set) / p99 TTFT from intended start (ms)" in flat
    assert "0.90 / 55.00" in text and "40.00" not in text  # rate 1: goodput / corrected p99 TTFT
    assert text.count("untrustworthy") == 1 and "client check failed" in text and "send lag p99 12 ms" in text
    assert "short: reads low" in text and "shifted later by the median E2E" in flat
