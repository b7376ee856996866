"""The Gamma fit recovers known rate and cv, detects drift, and runs on a BurstGPT-layout file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from loadgen.fit import fit_gaps, fit_trace, format_fit
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
