"""What ``--help`` tells a person: every command listed, every flag explained with its default."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ("run", "fit", "compare", "sweep", "experiment", "report")


class _Captured(Exception):
    pass


def _parser_of(main, argv) -> argparse.ArgumentParser:
    """The parser a subcommand's ``main`` builds, taken at the moment it parses (nothing else runs)."""
    seen: list[argparse.ArgumentParser] = []

    def capture(self, args=None, namespace=None):
        seen.append(self)
        raise _Captured

    mp = pytest.MonkeyPatch()
    mp.setattr(argparse.ArgumentParser, "parse_known_args", capture)
    try:
        with pytest.raises(_Captured):
            main(argv)
    finally:
        mp.undo()
    return seen[0]


def _parsers() -> dict[str, tuple[argparse.ArgumentParser, dict]]:
    """name -> (parser, the defaults that apply when a flag is absent)."""
    import loadgen.__main__ as cli
    import loadgen.commands.compare
    import loadgen.commands.experiment
    import loadgen.commands.sweep
    import loadgen.options as opt
    import loadgen.report.html
    import loadgen.sim.__main__
    import server_launchers.__main__

    run = opt.build_parser()  # argument_default=SUPPRESS: the defaults live in DEFAULTS (CLI > env > file)
    out = {"run": (run, dict(opt.DEFAULTS))}
    for name, main, argv in (
        ("fit", cli.main, ["fit", "x"]),
        ("compare", loadgen.commands.compare.main, ["x"]),
        ("sweep", loadgen.commands.sweep.main, ["--rates", "1"]),
        ("experiment", loadgen.commands.experiment.main, ["x"]),
        ("report", loadgen.report.html.main, ["x"]),
    ):
        p = _parser_of(main, argv)
        out[name] = (p, {a.dest: a.default for a in p._actions})
    for name, p in (
        ("sim", loadgen.sim.__main__.build_parser()),
        ("launchers", server_launchers.__main__.build_parser()),
    ):
        out[name] = (p, {a.dest: a.default for a in p._actions})
    return out


def _shown(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@pytest.mark.parametrize(
    "name", ["run", "fit", "compare", "sweep", "experiment", "report", "sim", "launchers"]
)
def test_every_flag_has_help_and_shows_its_default(name):
    parser, defaults = _parsers()[name]
    fmt = parser._get_formatter()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        flag = "/".join(action.option_strings) or action.dest
        assert action.help and action.help is not argparse.SUPPRESS, f"{name}: {flag} has no help"
        text = fmt._expand_help(action)
        default = defaults.get(action.dest)
        if action.option_strings and default not in (None, False, [], "", argparse.SUPPRESS):
            assert "default" in text and _shown(default) in text, (
                f"{name}: {flag} hides its default: {text!r}"
            )


@pytest.mark.parametrize("flag", ["--temperature", "--top-p", "--log-level", "--send-lag-limit-ms"])
def test_flags_named_in_the_issue_show_a_default(flag):
    parser, _ = _parsers()["run"]
    action = next(a for a in parser._actions if flag in a.option_strings)
    assert "default" in action.help, action.help


def test_top_level_help_lists_the_commands():
    r = subprocess.run([sys.executable, "-m", "loadgen", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for cmd in COMMANDS:
        # one line per command, as git and docker list theirs: the name, then what it does
        hit = [ln for ln in lines if ln.strip().startswith(cmd + " ")]
        assert len(hit) == 1 and len(hit[0].split()) > 3, (cmd, hit)
    assert "{fit,compare,sweep,experiment,report}" in r.stdout  # the usage names the subcommand form
    flat = " ".join(r.stdout.split())
    assert '--sim-arg "--fault-500 0.3"' in flat  # the natural form, shown
    assert "a bare number is milliseconds" in flat  # --slo says what a unitless value means
