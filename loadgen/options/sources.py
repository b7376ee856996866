"""Options from the environment, ``--config`` files and tables, coerced as the flag would coerce them, merged.

Precedence for every option: command line > ``LOADGEN_*`` environment variable (and the ``ENV_ALIASES``) >
``--config FILE.toml`` > default. A value from the environment, a file or an experiment's table goes through the
flag's own converter (its argparse ``type``, choices, switch or list), so a value means the same wherever it is
written.
"""

from __future__ import annotations

import argparse
import functools
import os
import shlex
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

from loadgen.errors import ConfigError
from loadgen.options.flags import DEFAULTS, ENV_ALIASES, build_parser, mask_secrets


def _env_value(key: str) -> str | None:
    for name in ("LOADGEN_" + key.upper(), *ENV_ALIASES.get(key, ())):
        v = os.environ.get(name)
        if v:
            return v
    return None


@functools.cache
def _actions() -> dict[str, argparse.Action]:
    return {a.dest: a for a in build_parser()._actions if a.option_strings}


def _coerce(key: str, raw: Any) -> Any:
    """An environment, file or table value as the flag would have given it: the flag's own converter."""
    action = _actions()[key]
    if isinstance(action, argparse._StoreTrueAction):
        return raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes", "on")
    if isinstance(action, argparse._AppendAction):
        return list(raw) if isinstance(raw, list) else [s for s in str(raw).split(",") if s]
    if isinstance(raw, bool):
        raise ValueError(f"{key}: not a switch")
    if action.type is None:
        # a TOML number for a text option (input_len = 512, max_tokens = 64) is that text; tables stay as they are
        value = str(raw) if isinstance(raw, int | float) else raw
    else:
        value = action.type(raw if isinstance(raw, str) or action.type in (int, float) else str(raw))
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"{key}: {value!r} is not one of {', '.join(map(str, action.choices))}")
    return value


def read_config_file(path: str) -> dict[str, Any]:
    """A ``--config`` TOML file's options, keys checked (``-`` or ``_``), values as written."""
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read --config {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: {exc}") from None
    out: dict[str, Any] = {}
    for k, v in raw.items():
        key = k.replace("-", "_")
        if key not in DEFAULTS:
            raise ConfigError(f"--config {path}: unknown option {k!r}")
        out[key] = v
    return out


def table_options(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A table of options (an experiment's ``[run]`` or workload table: CLI long names, ``_`` or ``-``) as the
    command line would have given them."""
    out: dict[str, Any] = {}
    for k, v in table.items():
        key = k.replace("-", "_")
        if key not in DEFAULTS:
            raise ConfigError(f"{where}: unknown run option {k!r} (use the CLI's long flag names)")
        try:
            out[key] = _coerce(key, v)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
            raise ConfigError(f"{where}: {k} = {v!r}: invalid value ({exc})") from None
    return out


def merge_options(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Option tables laid one over another as on one command line: a later value wins, repeatable options
    (``--header``, ``--metrics-url``, ...) add up."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key in out and isinstance(_actions()[key], argparse._AppendAction):
                out[key] = [*out[key], *value]
            else:
                out[key] = value
    return out


def resolve_options(ns: argparse.Namespace | Mapping[str, Any]) -> dict[str, Any]:
    """Merge command line (a parsed Namespace, or options given as the command line would give them),
    environment and config file into one plain dict of options."""
    cli = dict(vars(ns) if isinstance(ns, argparse.Namespace) else ns)
    file_opts = read_config_file(cli["config"]) if "config" in cli else {}
    opts: dict[str, Any] = {}
    for key, default in DEFAULTS.items():
        if key in cli:
            opts[key] = cli[key]
            continue
        env = _env_value(key)
        try:
            if env is not None:
                opts[key] = _coerce(key, env)
            elif key in file_opts:
                opts[key] = _coerce(key, file_opts[key])
            else:
                opts[key] = default
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            src = f"environment LOADGEN_{key.upper()}" if env is not None else f"--config {key}"
            raise ConfigError(f"{src}: invalid value") from None
    if opts["trace"] and opts["arrival"] == "gamma" and "arrival" not in cli:
        opts["arrival"] = "trace"
    return opts


def bounded(opts: Mapping[str, Any]) -> bool:
    """Whether the options choose the run's size (--num-requests or --duration from any source), rather than
    leaving it to the default of 100 requests."""
    return opts["num_requests"] is not None or opts["duration"] is not None


def options_from_argv(argv: Sequence[str]) -> dict[str, Any]:
    """The resolved options of a run's command-line arguments given inside another command's (``sweep``)."""
    parser = build_parser()
    try:
        ns = parser.parse_args(list(argv))
    except SystemExit:
        raise ConfigError(f"invalid run options: {shlex.join(mask_secrets(argv, parser))}") from None
    return resolve_options(ns)
