"""Flags as a person types them: the natural spellings parse to what they say."""

from __future__ import annotations

import pytest

from loadgen.errors import ConfigError
from loadgen.options import build_config, build_parser, resolve_options


def _cfg(*argv: str):
    return build_config(resolve_options(build_parser().parse_args(list(argv))))


@pytest.mark.parametrize(
    "argv",
    [
        ["--sim-arg", "--fault-500 0.3"],  # one quoted shell line
        [
            "--sim-arg",
            "--fault-500",
            "--sim-arg",
            "0.3",
        ],  # word by word: used to fail "expected one argument"
        ["--sim-arg=--fault-500", "--sim-arg=0.3"],  # the only form that worked before
        ["--sim-arg", "--fault-500=0.3"],
    ],
)
def test_sim_arg_forms(argv):
    assert _cfg(*argv).sim.args == (
        ("--fault-500=0.3",) if argv == ["--sim-arg", "--fault-500=0.3"] else ("--fault-500", "0.3")
    )


def test_sim_arg_keeps_other_flags_and_rejects_an_unbalanced_quote():
    cfg = _cfg("--sim-arg", "--set num_blocks=64", "--rate", "7")
    assert cfg.sim.args == ("--set", "num_blocks=64") and cfg.schedule.rate == 7
    with pytest.raises(ConfigError, match="--sim-arg"):
        _cfg("--sim-arg", "--model-name 'x")


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("ttft=500", 500.0),
        ("ttft=500ms", 500.0),
        ("ttft=0.5s", 500.0),
        ("ttft=250us", 0.25),
        ("e2e<2s", 2000.0),
    ],
)
def test_slo_units(text, ms):
    metric = "e2e" if text.startswith("e2e") else "ttft"
    assert _cfg("--slo", text).analysis.slo.as_dict() == {metric: ms}
