"""compare: hierarchical bootstrap on synthetic result folders with known distributions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from loadgen.commands.compare import (
    ConfigData,
    RunData,
    compare_configs,
    compare_runs,
    hierarchical_percentile_boot,
    main,
)
from loadgen.errors import ConfigError
from loadgen.records.record import RecordSink, RequestRecord
from loadgen.report.compare_console import format_compare

MS = 1_000_000


def write_run(
    d: Path,
    ttft_ms: np.ndarray,
    *,
    label: str | None = None,
    seed: int = 0,
    server: dict | None = None,
    throughput: float = 5.0,
) -> Path:
    """A run folder: requests.jsonl with the given TTFTs (E2E = TTFT + 100 ms, 11 tokens) and a summary.json."""
    d.mkdir(parents=True)
    with RecordSink(d / "requests.jsonl") as sink:
        for i, t in enumerate(ttft_ms):
            send = 1_000 * MS + i * 10 * MS
            first = send + int(round(t * MS))
            sink.write(
                RequestRecord(
                    index=i,
                    intended_ns=send,
                    dispatched_ns=send,
                    send_ns=send,
                    first_token_ns=first,
                    first_content_ns=first,
                    last_token_ns=first + 100 * MS,
                    end_ns=first + 100 * MS,
                    completion_tokens=11,
                )
            )
        sink.write(
            RequestRecord(index=len(ttft_ms), warmup=True, send_ns=0, first_token_ns=10**12, end_ns=10**12)
        )
    summary = {
        "label": label,
        "config": {"schedule": {"seed": seed}},
        "metrics": {
            "requests": {"measured": len(ttft_ms), "failed": 0, "ok": len(ttft_ms)},
            "throughput": {"requests_per_s": throughput, "output_tokens_per_s": 11 * throughput},
            "goodput": {"requests_per_s": throughput},
            "stragglers": {"share_of_requests": 0.0},
        },
        "server": server or {},
    }
    (d / "summary.json").write_text(json.dumps(summary))
    return d


def lognormal(rng, n, median):
    return rng.lognormal(np.log(median), 0.5, n)


def diff_of(result, config, metric):
    (d,) = [x for x in result["differences"] if x["config"] == config and x["metric"] == metric]
    return d


def test_a_real_difference_is_significant_and_identical_configs_are_not(tmp_path):
    rng = np.random.default_rng(7)
    dirs = []
    for s in (1, 2, 3):
        dirs.append(write_run(tmp_path / f"base-{s}", lognormal(rng, 400, 100.0), label="baseline", seed=s))
        dirs.append(write_run(tmp_path / f"same-{s}", lognormal(rng, 400, 100.0), label="same", seed=s))
        dirs.append(write_run(tmp_path / f"slow-{s}", lognormal(rng, 400, 130.0), label="slow", seed=s))
    res = compare_runs(dirs, n_boot=1000, seed=0)
    assert res["baseline"] == "baseline"
    names = {c["name"]: c for c in res["configs"]}
    assert set(names) == {"baseline", "same", "slow"}
    assert names["slow"]["seeds"] == [1, 2, 3] and names["slow"]["requests"] == 1200  # warm-up excluded

    slow = diff_of(res, "slow", "ttft_p50")
    assert slow["significant"] is True
    assert 20 < slow["diff"] < 40  # true difference 30 ms
    assert 0 < slow["ci_low"] < slow["diff"] < slow["ci_high"]
    assert slow["rel_diff"] == pytest.approx(slow["diff"] / slow["baseline_value"])
    # E2E = TTFT + 100 ms, so its p50 difference is the same
    assert diff_of(res, "slow", "e2e_p50")["diff"] == pytest.approx(slow["diff"], abs=1e-6)

    same = diff_of(res, "same", "ttft_p50")
    assert same["significant"] is False
    assert same["ci_low"] < 0 < same["ci_high"]
    assert abs(same["diff"]) < 10
    # TPOT is exactly 10 ms everywhere: a zero difference with a zero-width interval is not a finding
    tpot = diff_of(res, "slow", "tpot_p50")
    assert tpot["diff"] == pytest.approx(0.0) and tpot["significant"] is False


def test_interval_covers_the_true_difference_with_run_to_run_variation():
    """Runs differ by a random offset (server state); requests within a run share it. The hierarchical interval
    must cover the true difference of medians in most trials; resampling requests alone would not."""
    trials, covered, covered_naive, false_pos = 60, 0, 0, 0
    delta = 8.0
    for t in range(trials):
        rng = np.random.default_rng(1000 + t)

        def config(name, shift, rng=rng):
            runs = []
            for s in range(5):
                offset = rng.normal(0, 6.0)  # run effect
                lat = 100 + shift + offset + rng.normal(0, 20.0, 300)
                runs.append(RunData(Path(f"{name}{s}"), name, s, _lat(lat), _no_run_metrics(), 300))
            return ConfigData(name, runs)

        base, cand, twin = config("baseline", 0.0), config("cand", delta), config("twin", 0.0)
        res = compare_configs([base, cand, twin], n_boot=500, seed=t)
        d = diff_of(res, "cand", "ttft_p50")
        covered += d["ci_low"] <= delta <= d["ci_high"]
        false_pos += bool(diff_of(res, "twin", "ttft_p50")["significant"])
        # the same data as one run per configuration: only the request level is resampled
        naive = compare_configs([_one_run(base), _one_run(cand)], n_boot=500, seed=t)
        nd = diff_of(naive, "cand", "ttft_p50")
        covered_naive += nd["ci_low"] <= delta <= nd["ci_high"]
    assert covered / trials >= 0.85, covered
    assert false_pos / trials <= 0.15, false_pos
    assert covered_naive < covered - 10, (covered_naive, covered)


def _lat(ttft):
    ttft = np.asarray(ttft, float)
    return {"ttft": ttft, "ttfvt": ttft, "tpot": np.full(ttft.size, 10.0), "e2e": ttft + 100}


def _no_run_metrics():
    from loadgen.analysis.catalogue import METRICS

    return {m.key: None for m in METRICS if m.level == "run"}


def _one_run(cfg: ConfigData) -> ConfigData:
    lat = {k: np.concatenate([r.latencies_ms[k] for r in cfg.runs]) for k in cfg.runs[0].latencies_ms}
    return ConfigData(cfg.name, [RunData(Path(cfg.name), cfg.name, 0, lat, _no_run_metrics(), 1500)])


def test_fast_bootstrap_matches_brute_force_resampling():
    rng = np.random.default_rng(3)
    runs = [rng.lognormal(3, 0.6, 120), rng.lognormal(3.2, 0.6, 200), rng.lognormal(2.9, 0.6, 160)]
    for q in (50.0, 99.0):
        fast = hierarchical_percentile_boot(runs, q, 4000, np.random.default_rng(1))
        brute = []
        r2 = np.random.default_rng(2)
        for _ in range(4000):
            pick = r2.integers(0, 3, 3)
            brute.append(np.percentile(np.concatenate([r2.choice(runs[i], runs[i].size) for i in pick]), q))
        brute = np.asarray(brute)
        assert fast.mean() == pytest.approx(brute.mean(), rel=0.03)
        assert fast.std() == pytest.approx(brute.std(), rel=0.15)
        lo, hi = np.percentile(fast, [2.5, 97.5])
        blo, bhi = np.percentile(brute, [2.5, 97.5])
        assert lo == pytest.approx(blo, rel=0.05) and hi == pytest.approx(bhi, rel=0.08)


def test_bootstrap_of_100k_requests():
    rng = np.random.default_rng(0)
    runs = [rng.lognormal(4, 1, 25_000) for _ in range(4)]
    # its time is measured in benchmarks/report_and_compare.py (a busy CI machine misses time limits)
    reps = hierarchical_percentile_boot(runs, 99.0, 2000, np.random.default_rng(0))
    pooled_p99 = np.percentile(np.concatenate(runs), 99)
    assert abs(np.median(reps) - pooled_p99) / pooled_p99 < 0.02
    assert np.isfinite(reps).all()


def test_run_level_metrics_need_two_runs_per_side(tmp_path):
    rng = np.random.default_rng(1)
    on = {
        "prefix_cache": {"hit_rate": 0.7, "hits": 70, "queries": 100},
        "engine": {"kv_capacity_tokens": 1000},
    }
    off = {
        "prefix_cache": {"hit_rate": None, "hits": 0, "queries": 0},
        "engine": {"kv_capacity_tokens": 2000},
    }
    d = [
        write_run(tmp_path / "b1", lognormal(rng, 50, 100), label="baseline", seed=1, server=on),
        write_run(tmp_path / "b2", lognormal(rng, 50, 100), label="baseline", seed=2, server={**on, "prefix_cache": {"hit_rate": 0.74}}),
        write_run(tmp_path / "o1", lognormal(rng, 50, 100), label="off", seed=1, server=off),
        write_run(tmp_path / "o2", lognormal(rng, 50, 100), label="off", seed=2, server=off),
        write_run(tmp_path / "x1", lognormal(rng, 50, 100), label="single", seed=1, server=off),
    ]  # fmt: skip
    res = compare_runs(d, n_boot=500)
    hit = diff_of(res, "off", "prefix_hit_rate")
    assert hit["value"] == 0.0 and hit["baseline_value"] == pytest.approx(0.72)
    assert hit["significant"] is True and hit["ci_high"] < 0
    cap = diff_of(res, "off", "kv_capacity_tokens")
    assert cap["diff"] == 1000 and cap["rel_diff"] == pytest.approx(1.0) and cap["significant"] is True
    assert diff_of(res, "single", "prefix_hit_rate")["significant"] is None  # one run: no verdict


def test_experiment_folder_groups_cells_by_config_and_baseline_choice(tmp_path, capsys):
    rng = np.random.default_rng(2)
    exp = tmp_path / "exp"
    cells = []
    for spec in ("baseline", "fast"):
        for s in (1, 2):
            cid = f"{spec}__w__seed{s}"
            write_run(exp / cid, lognormal(rng, 200, 100 if spec == "baseline" else 60), label=spec, seed=s)
            cells.append({"id": cid, "dir": cid, "config": spec, "spec": spec, "seed": s, "status": "ok"})
    cells.append(
        {"id": "broken", "dir": "broken", "config": "fast", "spec": "fast", "seed": 3, "status": "failed"}
    )
    (exp / "manifest.json").write_text(json.dumps({"cells": cells}))
    res = compare_runs([exp], n_boot=300)
    by = {c["name"]: c for c in res["configs"]}
    assert by["fast"]["seeds"] == [1, 2] and len(by["fast"]["dirs"]) == 2  # the failed cell is left out
    assert diff_of(res, "fast", "ttft_p50")["significant"] is True
    assert diff_of(res, "fast", "ttft_p50")["diff"] < -25

    # baseline by name, and by a run folder of that configuration
    res2 = compare_runs([exp], baseline="fast", n_boot=300)
    assert res2["baseline"] == "fast" and diff_of(res2, "baseline", "ttft_p50")["diff"] > 25
    res3 = compare_runs([exp], baseline=str(exp / "fast__w__seed2"), n_boot=300)
    assert res3["baseline"] == "fast"
    with pytest.raises(ConfigError):
        compare_runs([exp], baseline="nope", n_boot=300)

    # seeded: the same inputs give the same intervals
    again = compare_runs([exp], n_boot=300)
    assert diff_of(again, "fast", "ttft_p99") == diff_of(res, "fast", "ttft_p99")

    assert main([str(exp), "--json", "--n-boot", "300"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {c["name"] for c in doc["configs"]} == {"baseline", "fast"}

    from rich.console import Console

    console = Console(record=True, width=250)
    format_compare(res, console)
    text = console.export_text()
    assert "baseline (baseline)" in text and "TTFT p50" in text and "*" in text


def test_multi_workload_experiments_compare_within_each_workload(tmp_path):
    rng = np.random.default_rng(5)
    exp = tmp_path / "exp"
    cells = []
    for spec in ("baseline", "opt"):
        for w, med in (("short", 50), ("long", 500)):
            cid = f"{spec}-{w}"
            write_run(exp / cid, lognormal(rng, 200, med * (0.8 if spec == "opt" else 1)), label=cid, seed=1)
            cells.append(
                {"id": cid, "dir": cid, "config": f"{spec}/{w}", "spec": spec, "seed": 1, "status": "ok"}
            )
    (exp / "manifest.json").write_text(json.dumps({"cells": cells}))
    res = compare_runs([exp], n_boot=300)
    assert sorted(res["baseline"]) == ["baseline/long", "baseline/short"]
    d_short = diff_of(res, "opt/short", "ttft_p50")
    d_long = diff_of(res, "opt/long", "ttft_p50")
    assert d_short["baseline"] == "baseline/short" and d_long["baseline"] == "baseline/long"
    assert -15 < d_short["diff"] < -5 and -150 < d_long["diff"] < -50


def test_not_a_result_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError):
        compare_runs([tmp_path / "empty"])
    with pytest.raises(ConfigError):
        compare_runs([tmp_path / "missing"])
