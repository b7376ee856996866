"""The Gamma fit recovers known rate and cv, detects drift, and runs on a BurstGPT-layout file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from loadgen.commands.fit import fit_gaps, fit_trace, format_fit
from loadgen.workload.traces import read_trace

TRACES = Path(__file__).resolve().parents[1] / "data" / "datasets" / "traces"


def _gamma_arrivals(rate: float, cv: float, n_gaps: int, seed: int) -> np.ndarray:
    shape = 1.0 / cv**2
    gaps = np.random.default_rng(seed).gamma(shape, 1.0 / (rate * shape), n_gaps)
    return np.concatenate([[0.0], np.cumsum(gaps)]) + 1000.0


@pytest.mark.parametrize(("rate", "cv"), [(5.0, 2.0), (10.0, 0.5)])
def test_recovers_rate_and_cv(rate, cv):
    r = fit_trace(_gamma_arrivals(rate, cv, 5000, seed=0))
    # standard errors with 5000 gaps: rate ≈ cv/sqrt(n) (2.8% at cv 2, 0.7% at cv 0.5), fitted cv ≈ 1%
    assert r.overall.rate == pytest.approx(rate, rel=0.05)
    assert r.overall.fitted_cv == pytest.approx(cv, rel=0.03)
    assert r.overall.shape == pytest.approx(1 / cv**2, rel=0.06)
    assert r.overall.ks_gamma < r.overall.ks_exp  # Gamma fits, Poisson does not
    assert r.overall.p_gamma > 0.01 and r.overall.p_exp < 1e-6
    assert not r.drifting and r.zero_gap_share < 0.002  # shape 0.25 draws gaps below float resolution
    line = r.reproduce_args()
    assert line.startswith("--arrival gamma --rate ") and f"--cv {r.overall.fitted_cv:.4g}" in line


def test_poisson_is_not_rejected_as_exponential():
    g = fit_gaps(np.random.default_rng(4).exponential(0.5, 3000))
    assert g.fitted_cv == pytest.approx(1.0, rel=0.05) and g.p_exp > 0.01


def test_drift_is_detected_and_windows_are_reported():
    rng = np.random.default_rng(1)
    gaps = np.concatenate([rng.exponential(1 / 5, 2000), rng.exponential(1 / 20, 4000)])
    r = fit_trace(np.cumsum(gaps), window_s=60.0)
    assert r.drifting and r.drift_p < 1e-6
    assert r.windows[0].rate == pytest.approx(5, rel=0.2) and r.windows[-1].rate == pytest.approx(20, rel=0.2)
    text = format_fit(r)
    assert "drifts" in text and "window" in text and text.count("--rate") >= len(r.windows)


def test_zero_gaps_are_floored_and_reported():
    ts = _gamma_arrivals(5.0, 1.0, 2000, seed=2)
    ts = np.sort(np.concatenate([ts, ts[:10]]))  # 10 exact duplicates: 0.5% ties, not a quantised clock
    r = fit_trace(ts)
    assert r.zero_gaps == 10 and r.tick_s is None
    assert any("zero gaps" in n for n in r.notes)


def test_runs_on_a_burstgpt_layout_file_with_whole_second_timestamps(tmp_path):
    rng = np.random.default_rng(5)
    ts = np.floor(np.cumsum(rng.exponential(1 / 2.0, 3000)))  # BurstGPT logs whole seconds
    lines = ["Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"]
    lines += [
        f"{int(t)},ChatGPT,{100 + i % 50},{20 + i % 7},{120 + i % 50 + 20 + i % 7},Conversation log"
        for i, t in enumerate(ts)
    ]
    f = tmp_path / "BurstGPT_sample.csv"
    f.write_text("\n".join(lines) + "\n")
    trace = read_trace(f)
    r = fit_trace(trace.timestamps_s(), source=str(f))
    assert r.tick_s == 1.0 and r.zero_gap_share > 0.2
    assert r.overall.rate == pytest.approx(2.0, rel=0.05)
    assert r.overall.fitted_cv == pytest.approx(1.0, rel=0.08)  # Poisson: spreading within a tick is exact
    text = format_fit(r)
    assert "quantised to 1 s" in text and "reproduce: --arrival gamma --rate" in text


def test_tiny_sample_file_and_too_few_arrivals():
    r = fit_trace(read_trace(TRACES / "burstgpt_sample.csv").timestamps_s())
    assert r.n_arrivals == 6 and "reproduce:" in format_fit(r)
    with pytest.raises(ValueError):
        fit_trace(np.array([1.0, 2.0]))


@pytest.mark.parametrize("n", [3, 9, 60, 140, 600, 5000])
def test_same_fit_and_ks_as_scipy_stats(n):
    # the fit avoids importing scipy.stats (slow to import); its numbers must still be scipy's
    from scipy import stats

    rng = np.random.default_rng(n)
    for cv in (0.4, 1.0, 2.5):
        shape = 1 / cv**2
        g = rng.gamma(shape, 1 / shape, n) + 1e-12
        f = fit_gaps(g)
        a, _, scale = stats.gamma.fit(g, floc=0)
        assert f.shape == pytest.approx(a, rel=1e-9) and f.scale == pytest.approx(scale, rel=1e-9)
        kg = stats.kstest(g, "gamma", args=(a, 0, scale))
        ke = stats.kstest(g, "expon", args=(0, g.mean()))
        assert f.ks_gamma == pytest.approx(kg.statistic, rel=1e-6)
        assert f.ks_exp == pytest.approx(ke.statistic, rel=1e-6)
        for mine, ref in ((f.p_gamma, kg.pvalue), (f.p_exp, ke.pvalue)):
            if n <= 140 or ref < 0.03:  # exact there; Stephens' limit (within 0.01) for large n and large p
                assert mine == pytest.approx(ref, rel=1e-6, abs=1e-12)
            else:
                assert mine == pytest.approx(ref, abs=0.01)


def test_fit_command_imports_only_what_fitting_needs(tmp_path):
    # `python -m loadgen fit` on a small file must answer at once: no scipy.stats / scipy.optimize (the bulk of
    # its old start-up), nothing of the run machinery (network client, rich, the simulator)
    import subprocess
    import sys

    f = tmp_path / "ts.txt"
    f.write_text(
        "\n".join(f"{t:.3f}" for t in np.cumsum(np.random.default_rng(0).exponential(1.0, 10))) + "\n"
    )
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "loadgen", "fit", str(f)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "reproduce: --arrival gamma" in r.stdout
    imported = {ln.split("|")[-1].strip() for ln in r.stderr.splitlines() if ln.startswith("import time:")}
    assert "loadgen.commands.fit" in imported and any(m.startswith("scipy.special.") for m in imported)
    for heavy in (
        "scipy.stats",
        "scipy.optimize",
        "rich",
        "aiohttp",
        "loadgen.run.runner",
        "loadgen.sim",
        "pandas",
    ):
        assert not any(m == heavy or m.startswith(heavy + ".") for m in imported), heavy
