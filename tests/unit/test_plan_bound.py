"""A plan is sized before it is built: one its senders could not send, or one that would not fit in half of the
available memory, is refused with one line and exit 2 before any of it is allocated."""

from __future__ import annotations

import tracemalloc

import pytest

from loadgen.__main__ import main
from loadgen.errors import ConfigError
from loadgen.options import build_config, build_parser, resolve_options
from loadgen.plan.planner import PLAN_BYTES_PER_REQUEST, SENDS_PER_SENDER_S, check_plan_size, plan_requests


def _cfg(*argv: str):
    return build_config(resolve_options(build_parser().parse_args(list(argv))))


def test_rate_1e9_for_2s_is_refused_in_one_line_before_the_plan_takes_memory(capsys, tmp_path):
    tracemalloc.start()
    try:
        rc = main(["--rate", "1e9", "--duration", "2", "--no-live", "--output-dir", str(tmp_path / "r")])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("loadgen: error: ") and "Traceback" not in err
    assert f"{SENDS_PER_SENDER_S:,} requests/s" in err
    would_be = 2_000_000_000 * PLAN_BYTES_PER_REQUEST
    assert peak < would_be / 1000  # the would-be plan is ~128 GB; the refusal allocates a few MB at most
    assert not (tmp_path / "r").exists()  # refused before the results folder or the server


def test_the_sending_bound_counts_every_sender():
    with pytest.raises(ConfigError, match="1 sender sends at most"):
        check_plan_size(_cfg("--rate", str(SENDS_PER_SENDER_S * 3), "--duration", "1"), memory=1 << 40)
    check_plan_size(_cfg("--rate", str(SENDS_PER_SENDER_S * 3), "--duration", "1", "--workers", "3"), 1 << 40)


def test_a_burst_bounded_by_num_requests_is_not_a_sending_refusal():
    cfg = _cfg("--rate", "1e9", "-n", "50")
    check_plan_size(cfg, memory=1 << 40)
    assert len(plan_requests(cfg)) == 50


def test_a_plan_larger_than_half_the_available_memory_is_refused():
    cfg = _cfg("-n", "1000000")  # ~64 MB planned
    check_plan_size(cfg, memory=1 << 30)
    with pytest.raises(ConfigError, match=r"more than half of the 100 MiB available"):
        check_plan_size(cfg, memory=100 << 20)


def test_the_measured_plan_stays_within_its_stated_bytes_per_request():
    """PLAN_BYTES_PER_REQUEST is what the refusal counts: the plan built must not take more at its peak."""
    cfg = _cfg("--rate", "2e4", "--duration", "10", "--output-len", "uniform:1,100")
    tracemalloc.start()
    try:
        plan = plan_requests(cfg)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(plan) > 150_000
    assert peak < len(plan) * PLAN_BYTES_PER_REQUEST


@pytest.mark.parametrize("value", ["inf", "nan"])
def test_duration_inf_is_one_line_exit_2(capsys, value):
    assert main(["--duration", value, "--no-live"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--duration" in err
