"""Datasets, budgets, traces and the fit as a user runs them: through `python -m loadgen` on loopback."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "datasets"


def cli(*args, env=None, timeout=240):
    return subprocess.run(
        [sys.executable, "-m", "loadgen", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def test_mixed_datasets_with_a_budget_sweep_against_the_simulator(tmp_path):
    out = tmp_path / "run"
    r = cli(
        "--dataset", "gsm8k:0.5,aime2024:0.5", "--dataset-path", str(DATA), "--max-tokens", "256,4096",
        "--repeats", "3", "-n", "10", "--sample-with-replacement", "--rate", "20", "--json",
        "--output-dir", str(out), "--no-report",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["metrics"]["requests"]["measured"] == 10 * 3 * 2
    acc = s["accuracy"]
    assert set(acc["by_dataset"]) == {"gsm8k", "aime2024"}
    assert set(acc["by_budget"]) == {"256", "4096"}
    assert acc["overall"]["n"] == 60
    # a small budget truncates more answers than a large one, and the tables show it
    assert acc["by_budget"]["256"]["truncated"] > acc["by_budget"]["4096"]["truncated"]
    groups = s["groups"]
    assert set(groups["budget"]) == {"256", "4096"} and set(groups["dataset"]) == {"gsm8k", "aime2024"}
    assert groups["budget"]["4096"]["mean_output_tokens"] > groups["budget"]["256"]["mean_output_tokens"]
    recs = [json.loads(x) for x in (out / "requests.jsonl").read_text().splitlines()]
    assert {rec["max_tokens"] for rec in recs} == {256, 4096}
    assert all(rec["tags"]["budget"] == rec["max_tokens"] for rec in recs)


def test_replaying_a_burstgpt_trace_with_its_lengths(tmp_path):
    trace = DATA / "traces" / "burstgpt_sample.csv"
    r = cli("--trace", str(trace), "--trace-lengths", "--trace-speedup", "20", "--json", "--no-report",
            "--output-dir", str(tmp_path / "t"), "--sim-profile", "chat-7b")  # fmt: skip
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["schedule"]["arrival"] == "trace"
    recs = sorted((json.loads(x) for x in (tmp_path / "t" / "requests.jsonl").read_text().splitlines()),
                  key=lambda x: x["index"])  # fmt: skip
    # intended offsets are the trace's gaps divided by the speed-up
    import csv

    rows = list(csv.DictReader(trace.open()))
    kept = [row for row in rows if int(row["Response tokens"]) > 0]  # failed requests are dropped
    ts = np.array([float(row["Timestamp"]) for row in kept])
    assert len(recs) == len(kept)
    # BurstGPT timestamps are whole seconds: the replay keeps them (ties stay ties)
    assert [rec["intended_ns"] for rec in recs] == [int(round((t - ts[0]) / 20 * 1e9)) for t in ts]


def test_fit_recovers_a_known_gamma_process(tmp_path):
    rng = np.random.default_rng(5)
    gaps = rng.gamma(1 / 4, 4 / 5, size=4000)  # rate 5, cv 2
    f = tmp_path / "ts.txt"
    f.write_text("\n".join(f"{t:.6f}" for t in np.cumsum(gaps)))
    r = cli("fit", str(f))
    assert r.returncode == 0, r.stderr
    line = [x for x in r.stdout.splitlines() if x.startswith("reproduce:")][0]
    parts = line.split()
    rate = float(parts[parts.index("--rate") + 1])
    cv = float(parts[parts.index("--cv") + 1])
    assert rate == pytest.approx(5.0, rel=0.06)
    assert cv == pytest.approx(2.0, rel=0.06)
    r = cli("fit", str(DATA / "traces" / "burstgpt_sample.csv"))
    assert r.returncode == 0 and "reproduce:" in r.stdout
    r = cli("fit", str(tmp_path / "missing.csv"))
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_options_from_environment_and_config_file(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('rate = 50\nnum-requests = 3\ninput_len = "32"\nlabel = "from-file"\n')
    r = cli("--config", str(cfg), "--json", "--no-report", "--output-dir", str(tmp_path / "a"),
            "--sim-profile", "chat-7b", "--max-tokens", "8")  # fmt: skip
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["config"]["schedule"]["num_requests"] == 3 and s["config"]["schedule"]["rate"] == 50
    assert s["label"] == "from-file"
    # environment beats the file, the command line beats both
    r = cli("--config", str(cfg), "--json", "--no-report", "--output-dir", str(tmp_path / "b"), "-n", "2",
            "--sim-profile", "chat-7b", "--max-tokens", "8",
            env={"LOADGEN_RATE": "40", "LOADGEN_NUM_REQUESTS": "4"})  # fmt: skip
    s = json.loads(r.stdout)
    assert s["config"]["schedule"]["rate"] == 40 and s["config"]["schedule"]["num_requests"] == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("raet = 5\n")
    r = cli("--config", str(bad))
    assert r.returncode == 2 and "unknown option 'raet'" in r.stderr
