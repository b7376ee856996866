"""sweep against the built-in simulator: the grid, sweep.json, and the saturation stop rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from loadgen.__main__ import main as loadgen_main
from loadgen.commands.sweep import in_flight_series, saturation
from loadgen.errors import ConfigError
from loadgen.records.record import RequestRecord

# a low-capacity simulated server: 64 KV blocks of 16 tokens, so 40 req/s of 200-token prompts overloads it
SIM = ["--sim-profile", "chat-7b", "--sim-arg=--set", "--sim-arg=num_blocks=64",
       "--sim-arg=--set", "--sim-arg=max_num_batched_tokens=512"]  # fmt: skip


def test_sweep_against_the_simulator_stops_a_saturated_cv(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", "--rates", "40,2,80", "--cvs", "1", "-n", "30", "--input-len", "200", "--max-tokens", "64",
            "--scrape-interval", "0.2", "--no-report", "--output-dir", str(out), *SIM]  # fmt: skip
    assert loadgen_main(argv) == 0
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["status"] == "done"
    assert doc["config"]["rates"] == [2.0, 40.0, 80.0]  # run in increasing order
    cells = {c["rate"]: c for c in doc["cells"]}

    low = cells[2.0]
    assert low["status"] == "ok" and low["saturated"] is False and low["reason"] is None
    assert low["offered_rate"] == pytest.approx(2.0, rel=0.5)
    assert low["throughput"] == pytest.approx(low["offered_rate"], rel=0.35)
    assert low["error_share"] == 0.0
    assert low["goodput_rps"] > 0 and low["p99_ttft_ms"] > 0 and low["p50_e2e_ms"] > 0
    run = json.loads((out / low["dir"] / "summary.json").read_text())
    assert run["config"]["schedule"]["rate"] == 2.0 and run["metrics"]["requests"]["measured"] == 30
    assert run["target"]["kind"] == "simulated"

    high = cells[40.0]
    assert high["status"] == "ok" and high["saturated"] is True
    assert high["throughput"] < 0.9 * high["offered_rate"]
    q = high["queue"]
    assert q["source"] == "server num_waiting" and q["growing"] is True
    assert q["second_half"] >= 1.5 * q["first_half"]
    assert "throughput" in high["reason"]
    # the stop rule: no time spent on an even higher rate for this cv
    assert cells[80.0]["status"] == "skipped" and "saturated at rate 40" in cells[80.0]["reason"]
    assert not (out / cells[80.0]["dir"]).exists()
    # stationary vs growing queue: the low-rate cell's halves agree
    assert low["queue"]["growing"] is False

    # rates over the steady window (no drain), said so; p99 TTFT from the intended start (corrected) shown
    assert low["goodput_rps"] == low["throughput"]  # no --slo: every successful request counts
    assert "shifted later by the median E2E" in low["rate_window"]["window"]
    assert low["throughput_whole_run"] is not None and low["goodput_whole_run"] is not None
    for c in (low, high):  # per request, from intended >= from send, so every quantile is too
        assert c["p99_ttft_from_intended_ms"] >= c["p99_ttft_ms"] > 0
        assert c["p99_ttfvt_from_intended_ms"] is not None and isinstance(c["trustworthy"], bool)
    printed = " ".join(capsys.readouterr().out.split())  # the table's title wraps above its narrow grid
    assert "successful req/s (no --slo set) / p99 TTFT from intended start (ms)" in printed
    assert "saturated" in printed and "skipped" in printed and "shifted later by the median E2E" in printed
    assert (
        f"{low['p99_ttft_from_intended_ms']:.2f}" in printed
        or f"{low['p99_ttft_from_intended_ms']:,.0f}" in printed
    )

    # the sweep page from this real sweep.json: well-formed cells, links only to runs that exist
    from loadgen.report.html import write_sweep_report

    html = write_sweep_report(out).read_text()
    assert "<td>class=" not in html and 'data-key="cells.0.rate"' in html
    assert f'href="{low["dir"]}/report.html"' in html
    assert f'href="{cells[80.0]["dir"]}/report.html"' not in html


def test_sweep_needs_bounded_cells_and_owns_rate_and_cv(tmp_path):
    with pytest.raises(ConfigError, match="bounded"):
        from loadgen.commands.sweep import run_sweep

        run_sweep([1.0], [1.0], ["--input-len", "16"], tmp_path / "s")
    assert loadgen_main(["sweep", "--rates", "1", "--rate", "2", "-n", "3"]) == 2


def _rec(i, send_s, end_s, ok=True):
    return RequestRecord(
        index=i, intended_ns=int(send_s * 1e9), send_ns=int(send_s * 1e9), end_ns=int(end_s * 1e9),
        status="ok" if ok else "error",
    )  # fmt: skip


def _summary(n, failed, planned, thr, e2e_p50_ms):
    return {
        "metrics": {
            "requests": {"measured": n, "failed": failed},
            "rate": {"planned": planned, "target": planned},
            "throughput": {"requests_per_s": thr},
            "latency_ms": {"e2e": {"p50": e2e_p50_ms}},
        }
    }


def test_stop_rule_on_constructed_runs(tmp_path):
    # stable: 10/s for 20 s, each request takes 0.5 s -> in-flight ~5 throughout
    stable = [_rec(i, i / 10, i / 10 + 0.5) for i in range(200)]
    s = saturation(_summary(200, 0, 10.0, 9.7, 500), stable, tmp_path)
    assert s["saturated"] is False and s["queue"]["source"] == "client in-flight"
    assert s["queue"]["second_half"] == pytest.approx(s["queue"]["first_half"], rel=0.1)

    # overloaded: the server finishes one request per 0.2 s while 10/s arrive -> the queue grows linearly
    over = [_rec(i, i / 10, 0.2 * (i + 1) + 0.1) for i in range(200)]
    s = saturation(_summary(200, 0, 10.0, 5.0, 5000), over, tmp_path)
    assert s["saturated"] is True and s["queue"]["growing"] is True
    assert s["queue"]["second_half"] > 1.5 * s["queue"]["first_half"]

    # low throughput alone (a short run's drain) is not saturation when the queue is stationary
    s = saturation(_summary(200, 0, 10.0, 8.0, 500), stable, tmp_path)
    assert s["saturated"] is False

    # errors alone are
    s = saturation(_summary(200, 30, 10.0, 9.7, 500), stable, tmp_path)
    assert s["saturated"] is True and "error share 15%" in s["reason"]


def test_in_flight_series_counts_requests_in_flight():
    recs = [_rec(0, 0.0, 2.0), _rec(1, 1.0, 3.0), _rec(2, 1.5, 1.8)]
    t, v = in_flight_series(recs)
    assert list(np.asarray(t) / 1e9) == [0.0, 1.0, 1.5, 1.8, 2.0, 3.0]
    assert list(v) == [1, 2, 3, 2, 1, 0]


def test_sweep_json_paths_are_relative(tmp_path):
    # cells name their folder relative to the sweep dir, so a sweep folder can be moved
    from loadgen.commands.sweep import _cell_row

    row = _cell_row(4.0, 0.5, tmp_path / "rate-4_cv-0.5")
    assert row["dir"] == "rate-4_cv-0.5" and Path(row["dir"]).name == row["dir"]


def test_nearby_rates_stay_distinct_cells(tmp_path):
    """Rates were passed as f"{x:g}" (6 significant digits): 1.0000001 and 1.0000002 both ran at 1, in one folder."""
    from loadgen.commands.sweep import _label, run_sweep
    from tests.integration.test_cli import ThreadedServer, slow_stream

    rates = [1.0000001, 1.0000002]
    with ThreadedServer(slow_stream(0.01, 2)) as srv:
        doc = run_sweep(
            rates,
            [1.0],
            ["--base-url", srv.base_url, "-n", "1", "--no-scrape", "--no-report"],
            tmp_path / "s",
            install_signal_handlers=False,
        )
    cells = doc["cells"]
    assert [c["rate"] for c in cells] == rates and all(c["status"] == "ok" for c in cells)
    assert len({c["dir"] for c in cells}) == 2
    for c in cells:
        run = json.loads((tmp_path / "s" / c["dir"] / "summary.json").read_text())
        assert run["config"]["schedule"]["rate"] == c["rate"]  # each ran at its own rate, exactly
    assert _label(4.0) == "4" and _label(0.5) == "0.5" and _label(1.0000001) == "1.0000001"
