"""``python -m loadgen``: argv → options → RunConfig → run(). Heavy imports happen only after the flags are valid.

The options (flags, ``LOADGEN_*`` environment, ``--config`` files, defaults) are ``loadgen.options``; this module
only dispatches on the first word (``fit``, ``report``, ...) and turns results and errors into exit codes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace

from loadgen.errors import EXIT_REQUESTS_FAILED, ConfigError, LoadgenError
from loadgen.options import OptionParser, build_config, build_parser, mask_secrets, resolve_options

# one line per command for the top-level help, as git and docker list theirs
COMMANDS_HELP = (
    ("run", "measure one configuration (the default command; its options are below)"),
    ("fit", "fit a Gamma arrival process (rate, cv) to a trace's timestamps"),
    ("compare", "compare result folders against a baseline, with bootstrap confidence intervals"),
    ("sweep", "measure a rate x burstiness (cv) grid, stopping a cv once the server saturates"),
    ("experiment", "run launch specs x workloads x rates x seeds from an experiment TOML file"),
    ("report", "(re)write a results folder's report.html, or a sweep folder's sweep.html"),
)


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's wrapping, except for a text with its own line breaks (the command list), kept as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def _with_commands(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The run parser as the top-level help shows it: the usage of every command and a line per command."""
    import shutil
    import textwrap

    width = max(min(shutil.get_terminal_size().columns - 2, 110), 40)
    p.usage = "python -m loadgen [run] [OPTIONS]\n       python -m loadgen {fit,compare,sweep,experiment,report} ..."
    commands = "\n".join(f"  {name:<11} {text}" for name, text in COMMANDS_HELP)
    p.description = (
        textwrap.fill(p.description or "", width)
        + "\n\ncommands (python -m loadgen COMMAND --help shows a command's options):\n"
        + commands
    )
    p.formatter_class = _HelpFormatter
    return p


def _run_main(argv: Sequence[str]) -> int:
    parser = _with_commands(build_parser())
    ns = parser.parse_args(argv)
    opts = resolve_options(ns)
    logging.basicConfig(level=opts["log_level"].upper(), format="%(levelname)s %(name)s: %(message)s")
    cfg = build_config(opts)
    command = ("python -m loadgen", *mask_secrets(argv, parser))
    cfg = replace(cfg, output=replace(cfg.output, command=command))

    from loadgen.run.runner import run

    quiet = cfg.output.quiet or cfg.output.json
    try:
        from rich.console import Console
    except ImportError:  # a bare benchmark machine: --quiet --no-live runs without the terminal's tables
        if not quiet or cfg.output.live:
            raise ConfigError(
                "the terminal output needs rich (pip install rich), or pass --quiet --no-live"
            ) from None
        Console = None  # noqa: N806
    console = Console(stderr=True, quiet=quiet) if Console is not None else None
    result = run(cfg, console=console)
    if cfg.output.json:
        import orjson

        sys.stdout.write(orjson.dumps(result.summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif not cfg.output.quiet and Console is not None:
        from loadgen.report.console import print_summary

        out = Console()
        if not out.is_terminal:
            out = Console(width=140)
        print_summary(result.summary, out)
    if result.interrupted:
        return 130
    if result.failure:
        print(f"loadgen: error: {result.failure}", file=sys.stderr)
        return EXIT_REQUESTS_FAILED
    return 0


def _fit_main(argv: Sequence[str]) -> int:
    p = OptionParser(
        allow_abbrev=False,
        prog="python -m loadgen fit",
        description="Fit Gamma arrivals to a trace's inter-arrival gaps",
    )
    p.add_argument("trace", help="BurstGPT CSV, Azure LLM trace CSV, or one timestamp (s) per line")
    p.add_argument("--window", type=float, metavar="S", help="also fit per window of S seconds")
    p.add_argument(
        "--format",
        choices=("auto", "timestamps", "burstgpt", "azure"),
        default="auto",
        help="trace layout (default %(default)s: from the header line)",
    )
    p.add_argument("--start", type=float, metavar="S", help="use the trace from S seconds in")
    p.add_argument("--end", type=float, metavar="S", help="use the trace up to S seconds in")
    ns = p.parse_args(argv)
    from loadgen.commands.fit import fit_trace, format_fit
    from loadgen.workload.traces import read_trace

    trace = read_trace(ns.trace, ns.format, start_s=ns.start, end_s=ns.end)
    if len(trace) < 3:
        raise ConfigError(f"{ns.trace}: fewer than 3 arrivals, nothing to fit")
    print(format_fit(fit_trace(trace.timestamps_s(), window_s=ns.window, source=ns.trace)))
    return 0


# subcommands living in their own modules: name -> module with ``main(argv) -> int``
SUBCOMMAND_MODULES = {
    "experiment": "loadgen.commands.experiment",
    "compare": "loadgen.commands.compare",
    "sweep": "loadgen.commands.sweep",
    "report": "loadgen.report.html",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] == "fit":
            return _fit_main(args[1:])
        if args and args[0] in SUBCOMMAND_MODULES:
            import importlib

            module = importlib.import_module(SUBCOMMAND_MODULES[args[0]])
            return int(module.main(args[1:]) or 0)
        if args and args[0] == "run":
            args = args[1:]
        return _run_main(args)
    except LoadgenError as exc:
        print(f"loadgen: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("loadgen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
