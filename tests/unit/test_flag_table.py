"""One flag table (issue 19, item 4): the parser, the field each option sets and the RunConfig come from FLAGS, and
--help shows every option's default as the config dataclasses have it."""

from __future__ import annotations

import re
from dataclasses import fields

import pytest

from loadgen.config import RunConfig, ScheduleConfig, WorkloadConfig
from loadgen.options import FIELD_OF, build_config, build_parser, options_from_argv
from loadgen.options.flags import DEFAULTS, FLAGS, NO_FIELD, SECTIONS


def _help() -> str:
    return re.sub(r"\s+", " ", build_parser().format_help())


def test_every_option_is_one_row_of_the_table():
    parser_dests = {a.dest for a in build_parser()._actions if a.option_strings and a.dest != "help"}
    assert parser_dests == {f.dest for f in FLAGS}
    assert {f.dest: f.field for f in FLAGS if f.field != NO_FIELD} == FIELD_OF
    for path in filter(None, FIELD_OF.values()):
        section, _, name = path.partition(".")
        assert name in {f.name for f in fields(SECTIONS[section])}, path


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--seed", ScheduleConfig().seed),
        ("--warmup", ScheduleConfig().warmup),
        ("--prefix-len", WorkloadConfig().prefix_len),
        ("--max-concurrency", "none"),
        ("--output-len", "none"),
        ("--timeout", 600),
        ("--rate", 4),
    ],
)
def test_help_shows_the_dataclass_default(flag, value):
    action = next(a for a in build_parser()._actions if flag in a.option_strings)
    assert action.help.endswith(f"(default {value})"), action.help
    assert f"(default {value})" in _help()


def test_every_valued_option_says_its_default():
    for action in build_parser()._actions:
        repeatable = DEFAULTS.get(action.dest) == []  # --header, --metrics-url: none unless given
        if action.dest in DEFAULTS and action.option_strings and action.nargs != 0 and not repeatable:
            assert "default" in action.help, action.option_strings


def test_the_config_is_built_field_by_field_from_the_table():
    cfg = build_config(options_from_argv(["--seed", "7", "--warmup", "3", "--no-scrape", "--timeout", "9"]))
    assert isinstance(cfg, RunConfig)
    assert (cfg.schedule.seed, cfg.workload.seed, cfg.schedule.warmup) == (7, 7, 3)
    assert cfg.scrape.enabled is False and cfg.endpoint.timeout_s == 9.0 and cfg.endpoint.simulated
