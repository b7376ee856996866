"""The arrival plan: exact process parameters, seeded, never rescaled."""

import math

import numpy as np
import pytest
from scipy import stats

from loadgen.errors import ConfigError, WorkloadError
from loadgen.plan.schedule import GammaSchedule, TraceSchedule, make_schedule


@pytest.mark.parametrize(("rate", "cv"), [(4.0, 2.0), (50.0, 2.0), (10.0, 0.5), (5.0, 1.0)])
def test_gamma_gaps_follow_the_intended_distribution(rate, cv):
    sched = GammaSchedule(rate, cv, seed=7)
    off = sched.offsets_ns(20_001)
    gaps = np.diff(off) / 1e9
    shape, scale = 1 / cv**2, cv**2 / rate
    ks = stats.kstest(gaps, stats.gamma(shape, scale=scale).cdf)
    assert ks.pvalue > 0.001, ks
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.06)


def test_poisson_is_exponential_and_constant_is_exact():
    gaps = np.diff(make_schedule("poisson", 8.0, 3.0, 1).offsets_ns(10_001)) / 1e9
    assert stats.kstest(gaps, stats.expon(scale=1 / 8).cdf).pvalue > 0.001
    const = make_schedule("constant", 4.0, 2.0, 1).offsets_ns(5)
    assert const.tolist() == [0, 250_000_000, 500_000_000, 750_000_000, 1_000_000_000]


def test_offsets_start_at_zero_are_sorted_and_seeded():
    a = GammaSchedule(10, 2, seed=3).offsets_ns(1000)
    b = GammaSchedule(10, 2, seed=3).offsets_ns(1000)
    c = GammaSchedule(10, 2, seed=4).offsets_ns(1000)
    assert a[0] == 0 and np.all(np.diff(a) >= 0)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.dtype == np.int64


def test_duration_truncates_but_never_rescales():
    sched = GammaSchedule(20, 2, seed=5)
    by_n = sched.offsets_ns(100_000)
    by_d = sched.offsets_ns(duration_s=30)
    assert by_d.max() < 30e9
    # same process: the duration-bounded plan is a prefix of the count-bounded one
    assert np.array_equal(by_d, by_n[: len(by_d)])
    both = sched.offsets_ns(50, 30)
    assert len(both) == 50 and np.array_equal(both, by_n[:50])


def test_rate_inf_sends_everything_at_once():
    assert GammaSchedule(math.inf, 1.0).offsets_ns(5).tolist() == [0] * 5
    with pytest.raises(ConfigError):
        GammaSchedule(math.inf, 1.0).offsets_ns(None, 10)


@pytest.mark.parametrize(("rate", "cv"), [(0, 1), (-1, 1), (1, -0.5), (1, math.inf)])
def test_invalid_parameters_are_config_errors(rate, cv):
    with pytest.raises(ConfigError):
        GammaSchedule(rate, cv)


def test_trace_replay_and_speedup(tmp_path):
    p = tmp_path / "ts.txt"
    p.write_text("timestamp\n100.0\n100.5\n101.0\n# comment\n103.0\n")
    t = TraceSchedule.from_file(p)
    assert t.offsets_ns().tolist() == [0, 500_000_000, 1_000_000_000, 3_000_000_000]
    fast = TraceSchedule.from_file(p, speedup=2)
    assert fast.offsets_ns().tolist() == [0, 250_000_000, 500_000_000, 1_500_000_000]
    assert t.offsets_ns(n=2).tolist() == [0, 500_000_000]
    assert t.offsets_ns(duration_s=1.0).tolist() == [0, 500_000_000]
    assert t.describe()["rate"] == pytest.approx(1.0)


def test_bad_trace_files(tmp_path):
    with pytest.raises(WorkloadError, match="cannot read"):
        TraceSchedule.from_file(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("1.0\nabc\n")
    with pytest.raises(WorkloadError, match=":2: not a timestamp"):
        TraceSchedule.from_file(bad)
