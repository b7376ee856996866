"""Options: defaults from the config dataclasses only, one coercion for flags, environment, files and tables."""

from __future__ import annotations

import dataclasses

import pytest

from loadgen.config import DEFAULT_NUM_REQUESTS, RunConfig
from loadgen.errors import ConfigError
from loadgen.options import (
    DEFAULTS,
    FIELD_OF,
    bounded,
    build_config,
    build_parser,
    merge_options,
    options_from_argv,
    resolve_options,
    table_options,
)
from loadgen.workload.sampling import Budgets, DatasetMix


def _cfg(*argv: str) -> RunConfig:
    return build_config(resolve_options(build_parser().parse_args(list(argv))))


def test_every_flag_sets_a_config_field_whose_default_is_the_flags():
    dests = {a.dest for a in build_parser()._actions if a.option_strings} - {"help", "config"}
    assert dests == set(FIELD_OF)
    cfg = _cfg()
    for dest, path in FIELD_OF.items():
        if path is None:
            continue
        section, _, name = path.partition(".")
        value = getattr(getattr(cfg, section), name)
        field = next(f for f in dataclasses.fields(type(getattr(cfg, section))) if f.name == name)
        if path == "schedule.num_requests":  # the default bound is written into the config
            assert value == DEFAULT_NUM_REQUESTS and DEFAULTS[dest] is None
        else:
            assert value == field.default, dest
    assert DEFAULTS["input_len"] == "256" and DEFAULTS["no_scrape"] is False and DEFAULTS["rate"] == 4.0
    assert cfg.endpoint.simulated and cfg.output.log_level == "warning"


def test_max_tokens_and_dataset_become_typed_fields():
    cfg = _cfg("--max-tokens", "1024,2k")
    assert cfg.sampling.max_tokens is None and cfg.workload.budgets == Budgets(sweep=(1024, 2048))
    assert cfg.public_dict()["workload"]["budgets"] == "1024,2k"
    assert _cfg("--max-tokens", "64").sampling.max_tokens == 64
    cfg = _cfg("--dataset", "gsm8k:3,aime24:1", "--max-tokens", "gsm8k=2048")
    assert cfg.workload.dataset == DatasetMix((("gsm8k", 0.75), ("aime2024", 0.25)))
    assert cfg.workload.budgets.per_dataset == {"gsm8k": 2048}
    assert cfg.public_dict()["workload"]["dataset"] == "gsm8k:3,aime24:1"
    with pytest.raises(ConfigError, match="--dataset"):
        _cfg("--dataset", "nosuchset")
    with pytest.raises(ConfigError, match="--max-tokens"):
        _cfg("--max-tokens", "1024,1024")


def test_environment_and_file_values_are_coerced_like_the_flags(monkeypatch, tmp_path):
    monkeypatch.setenv("LOADGEN_RATE", "inf")
    monkeypatch.setenv("LOADGEN_NUM_REQUESTS", "7")
    monkeypatch.setenv("LOADGEN_MAX_TOKENS", "128,256")  # a sweep, not an integer
    monkeypatch.setenv("LOADGEN_NO_SCRAPE", "1")
    monkeypatch.setenv("LOADGEN_HEADER", "A: 1,B: 2")
    cfg = _cfg()
    assert cfg.schedule.rate == float("inf") and cfg.schedule.num_requests == 7
    assert cfg.workload.budgets == Budgets(sweep=(128, 256)) and not cfg.scrape.enabled
    assert cfg.endpoint.headers == (("A", "1"), ("B", "2"))
    assert _cfg("--rate", "3").schedule.rate == 3  # the command line wins
    monkeypatch.setenv("LOADGEN_API", "nonsense")
    with pytest.raises(ConfigError, match="LOADGEN_API"):
        _cfg()
    for name in ("API", "RATE", "NUM_REQUESTS", "MAX_TOKENS", "NO_SCRAPE", "HEADER"):
        monkeypatch.delenv("LOADGEN_" + name)
    f = tmp_path / "c.toml"
    f.write_text('input-len = 512\nmax_tokens = 64\nno_live = true\ncv = 2\nlog_level = "info"\n')
    cfg = _cfg("--config", str(f))
    assert cfg.workload.input_len.a == 512 and cfg.sampling.max_tokens == 64 and not cfg.output.live
    assert cfg.schedule.cv == 2.0 and cfg.output.log_level == "info"
    f.write_text('log_level = "loud"\n')
    with pytest.raises(ConfigError, match="--config log_level"):
        _cfg("--config", str(f))


def test_tables_merge_as_one_command_line():
    run = table_options({"header": ["A: 1"], "timeout": 30, "input_len": 64}, "[run]")
    work = table_options({"header": ["B: 2"], "input-len": 128, "no_report": True}, "[workloads.w]")
    opts = resolve_options(merge_options(run, work, {"num_requests": 5}))
    cfg = build_config(opts)
    assert cfg.endpoint.headers == (("A", "1"), ("B", "2"))  # repeatable options add up
    assert cfg.workload.input_len.a == 128 and cfg.endpoint.timeout_s == 30.0 and not cfg.output.report
    assert bounded(opts) and not bounded(resolve_options({}))
    with pytest.raises(ConfigError, match="bogus"):
        table_options({"bogus": 1}, "[run]")
    with pytest.raises(ConfigError, match="timeout"):
        table_options({"timeout": "soon"}, "[run]")


def test_variants_of_a_config_are_what_the_flags_would_give():
    base = _cfg("-n", "5", "--seed", "1")
    assert base.with_seed(9) == _cfg("-n", "5", "--seed", "9")
    assert base.at("http://127.0.0.1:9") == _cfg("-n", "5", "--seed", "1", "--base-url", "http://127.0.0.1:9")
    out = base.unattended("/tmp/loadgen-cell", "c")
    assert out == _cfg(
        "-n", "5", "--seed", "1", "--output-dir", "/tmp/loadgen-cell", "--label", "c", "--no-live", "--quiet"
    )  # fmt: skip
    with pytest.raises(ConfigError, match="invalid run options: --api-key '\\*\\*\\*' --bogus"):
        options_from_argv(["--api-key", "sk-secret", "--bogus"])
