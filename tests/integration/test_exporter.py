"""``--metrics-port``: loadgen's own live figures for Prometheus (loadgen/report/exporter.py), scraped with real
HTTP GETs during and at the end of runs against the built-in simulator, one sender and two; each figure checked
against the records of requests.jsonl with the catalogue's own latencies (loadgen.analysis.metrics)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadgen.analysis.metrics import per_token_itl_ns, request_latencies
from loadgen.records.columns import read_records
from loadgen.report.exporter import BUCKETS_S, METRIC_NAMES
from tests.integration.test_cli import ROOT, cli
from tests.integration.test_ray import ray_cluster  # noqa: F401 (fixture: a one-node Ray cluster on loopback)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(port: int) -> dict[tuple[str, tuple], float] | None:
    """Every sample of the endpoint as {(name, sorted labels): value}, or None while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _run_scraping(
    tmp_path: Path, *args: str, env: dict | None = None
) -> tuple[list[dict], Path, subprocess.CompletedProcess]:
    """Run loadgen with --metrics-port and scrape it every 50 ms until it exits: (every scrape, results folder)."""
    port, out = _free_port(), tmp_path / "run"
    cmd = [sys.executable, "-m", "loadgen", *args, "--metrics-port", str(port), "--metrics-linger", "60",
           "--label", "exp", "--output-dir", str(out), "--no-live", "--quiet"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})  # fmt: skip
    scrapes = []
    try:
        while proc.poll() is None:
            s = _scrape(port)
            if s is not None:
                scrapes.append(s)
            time.sleep(0.05)
        stdout, stderr = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return scrapes, out, subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def _value(s: dict, name: str, **labels: str) -> float:
    return s[(name, tuple(sorted({"run": "exp", **labels}.items())))]


def _requests(s: dict) -> float:
    return sum(_value(s, "loadgen_requests_total", outcome=o) for o in ("ok", "error", "cancelled"))


def _check_final(final: dict, out: Path) -> None:
    """The last scrape equals what the records say, figure by figure."""
    recs = [r for r in read_records(out / "requests.jsonl") if not r.warmup]
    ok = [r for r in recs if r.status == "ok"]
    assert _value(final, "loadgen_requests_total", outcome="ok") == len(ok) > 0
    assert _value(final, "loadgen_requests_total", outcome="error") == len(recs) - len(ok)
    assert _value(final, "loadgen_output_tokens_total") == sum(r.completion_tokens or 0 for r in recs)
    assert _value(final, "loadgen_in_flight_requests") == 0
    lat = [request_latencies(r) for r in ok]
    for name, key in (("ttft", "ttft"), ("tpot", "tpot"), ("e2e", "e2e")):
        values = [x[key] / 1e3 for x in lat if x[key] is not None]
        assert _value(final, f"loadgen_{name}_seconds_count") == len(values)
        assert _value(final, f"loadgen_{name}_seconds_sum") == pytest.approx(sum(values), rel=1e-9)
        for le in (0.005, 0.05, 0.5):  # Prometheus buckets are "<= le"
            below = sum(v <= le for v in values)
            assert _value(final, f"loadgen_{name}_seconds_bucket", le=repr(le)) == below, (name, le)
        assert _value(final, f"loadgen_{name}_seconds_bucket", le="+Inf") == len(values)
    gaps = [g / 1e9 for r in ok for g in per_token_itl_ns(r)]
    assert _value(final, "loadgen_itl_seconds_count") == len(gaps) > 0
    assert _value(final, "loadgen_itl_seconds_sum") == pytest.approx(sum(gaps), rel=1e-6)
    assert _value(final, "loadgen_itl_seconds_bucket", le="0.01") == sum(g <= 0.01 for g in gaps)
    summary = json.loads((out / "summary.json").read_text())
    sent = summary["metrics"]["requests"]
    assert _value(final, "loadgen_send_lag_seconds_count") == len(recs) == sent["measured"]


def test_exporter_serves_the_runs_figures_during_and_at_the_end(tmp_path):
    scrapes, out, r = _run_scraping(tmp_path, "-n", "40", "--warmup", "2", "--rate", "15", "--seed", "3",
                                    "--max-tokens", "40")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert scrapes, "the endpoint never answered"
    names = {name for s in scrapes for name, _ in s}
    for metric in METRIC_NAMES:  # a counter's samples end in _total, a histogram's in _bucket/_count/_sum
        assert any(n == metric or n.startswith(metric + "_") for n in names), metric
    counts = [_requests(s) for s in scrapes]
    assert counts == sorted(counts)  # counters only grow
    assert any(0 < c < 40 for c in counts), "no scrape saw the run in progress"
    assert any(_value(s, "loadgen_in_flight_requests") > 0 for s in scrapes)
    _check_final(scrapes[-1], out)  # the exporter waits for one scrape of the final figures before it stops
    buckets = {dict(k[1]).get("le") for k in scrapes[-1] if k[0] == "loadgen_ttft_seconds_bucket"}
    assert {repr(b) for b in BUCKETS_S} | {"+Inf"} == buckets
    assert (
        min(BUCKETS_S) <= 0.001 and sum(b <= 0.01 for b in BUCKETS_S) >= 10
    )  # buckets fine for milliseconds


def test_two_workers_the_driver_serves_the_whole_runs_figures(tmp_path):
    scrapes, out, r = _run_scraping(tmp_path, "--workers", "2", "-n", "30", "--rate", "15", "--seed", "4",
                                    "--max-tokens", "32")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "summary.json").read_text())["senders"]["count"] == 2
    counts = [_requests(s) for s in scrapes]
    assert counts == sorted(counts) and counts[-1] == 30
    assert any(0 < c < 30 for c in counts), "no scrape saw the run in progress"
    _check_final(scrapes[-1], out)


def test_ray_senders_the_driver_serves_the_whole_runs_figures(ray_cluster, tmp_path):  # noqa: F811
    scrapes, out, r = _run_scraping(tmp_path, "--ray", "auto", "--workers", "2", "-n", "30", "--rate", "15",
                                    "--seed", "4", "--max-tokens", "32", env=ray_cluster)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "summary.json").read_text())["senders"]["mode"] == "ray"
    counts = [_requests(s) for s in scrapes]
    assert counts == sorted(counts) and counts[-1] == 30
    _check_final(scrapes[-1], out)


def test_metrics_port_in_use_is_one_line_and_exit_2(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = cli("-n", "3", "--metrics-port", str(port), "--output-dir", str(tmp_path / "x"), "--no-live")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--metrics-port {port}" in lines[0] and "in use" in lines[0], r.stderr
    assert not (tmp_path / "x" / "requests.jsonl").exists()


@pytest.mark.parametrize(("args", "needle"), [(("--metrics-port", "70000"), "--metrics-port must be a TCP port"),
                                              (("--metrics-port", "x"), "--metrics-port"),
                                              (("--metrics-linger", "-1"), "--metrics-linger must be >= 0")])  # fmt: skip
def test_metrics_options_are_checked(args, needle, tmp_path):
    r = cli("-n", "3", *args, "--output-dir", str(tmp_path / "x"), "--no-live")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, r.stderr
