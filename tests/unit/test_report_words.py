"""Settings and counts as a person reads them (loadgen.report.words)."""

from __future__ import annotations

import pytest

from loadgen.report import words


def test_slo_and_errors_read_as_words():
    assert words.slo({"ttft": 500.0, "tpot": 50.0}) == "TTFT ≤ 500 ms and TPOT ≤ 50 ms"
    assert words.slo({"e2e": 0.25}) == "E2E ≤ 0.25 ms" and words.slo({}) == ""
    assert words.error_counts({"timeout": 1, "http_5xx": 2}) == "2 HTTP 5xx, 1 timed out"
    assert words.counts({"kv_num_blocks": 1024, "kv_cache_dtype": "fp8", "x": None}) == (
        "kv num blocks 1,024; kv cache dtype fp8"
    )


@pytest.mark.parametrize(
    ("argv", "want"),
    [
        (["/x/loadgen/__main__.py", "--rate", "4"], "python -m loadgen --rate 4"),
        (
            ["/x/loadgen/__main__.py", "--api-key", "sk-1", "--rate", "4"],
            "python -m loadgen --api-key '***' --rate 4",
        ),
        (["/x/loadgen/__main__.py", "--api-key=sk-1"], "python -m loadgen '--api-key=***'"),
        (["/x/loadgen/__main__.py", "--api-k", "sk-1"], "python -m loadgen --api-k '***'"),  # an abbreviation
        (["/x/loadgen/__main__.py", "--api", "chat"], "python -m loadgen --api chat"),  # not the key
        (["/x/loadgen/__main__.py", "--header", "X-Token: t0p"], "python -m loadgen --header 'X-Token: ***'"),
        (["/x/loadgen/__main__.py", "--header=X-Token:t0p"], "python -m loadgen '--header=X-Token: ***'"),
        (["/x/loadgen/__main__.py", "--head", "X:t0p"], "python -m loadgen --head 'X: ***'"),
        (["/x/loadgen/__main__.py", "sweep", "--rates", "1,2"], "python -m loadgen sweep --rates 1,2"),
        (["/venv/bin/loadgen", "--rate", "4"], "loadgen --rate 4"),
    ],
)
def test_command_line_as_typed_with_secrets_masked_by_option(argv, want):
    assert words.command_line(argv) == want
    assert "sk-1" not in words.command_line(argv) and "t0p" not in words.command_line(argv)
