"""Resolved options -> the frozen ``RunConfig``: every value checked once, here, field by field of the flag table
(``flags.FLAGS``: the field each option sets), with a converter where the value is not the field's as it is.

``--max-tokens`` (one number, a sweep of budgets or per-dataset budgets) and ``--dataset`` (a weighted mix) are
parsed once into typed fields; past this point code takes the config and derives variants of it with
``dataclasses.replace``, never by writing flags again.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from loadgen.config import (
    DEFAULT_NUM_REQUESTS,
    LengthDist,
    RunConfig,
    SecondsDist,
    Slo,
)
from loadgen.errors import ConfigError
from loadgen.options.flags import FIELD_OF, SECTIONS
from loadgen.options.sources import bounded

# a header's name is an RFC 9110 token; a value never holds CR, LF, NUL or another control character but tab, which
# would end the header and start another (header injection)
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def build_config(opts: Mapping[str, Any]) -> RunConfig:
    """The frozen RunConfig of resolved options (see :func:`resolve_options`), built field by field from the flag
    table (``FIELD_OF``: the field each option sets, its converter in ``CONVERT``); every value is checked here."""
    _check(opts)
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for dest, path in FIELD_OF.items():
        if path is None or dest in SET_APART:
            continue
        value = CONVERT.get(dest, _same)(opts[dest])
        section, _, name = path.partition(".")
        sections[section][name] = not value if dest.startswith("no_") else value
    # what no one option sets alone
    endpoint, schedule, workload = sections["endpoint"], sections["schedule"], sections["workload"]
    endpoint.update(base_url=opts["base_url"] or "http://127.0.0.1:0", simulated=not opts["base_url"])
    # the default bound is written into the config, so summary.json says how many were planned
    if not (bounded(opts) or opts["trace"]):
        schedule["num_requests"] = DEFAULT_NUM_REQUESTS
    sections["sampling"]["max_tokens"], workload["budgets"] = _max_tokens(opts["max_tokens"])
    workload.update(kind=_workload_kind(opts), seed=opts["seed"])
    sections["output"]["live"] = not (opts["no_live"] or opts["quiet"] or opts["json"])
    if workload["prefix_len"] < 0:
        raise ConfigError("--prefix-len must be >= 0")
    return RunConfig(**{name: SECTIONS[name](**kw) for name, kw in sections.items()})


# options that set their field through another rule of build_config (max_tokens: a number or budgets)
SET_APART = frozenset({"max_tokens", "no_live"})


def _same(value: Any) -> Any:
    return value


def _check(opts: Mapping[str, Any]) -> None:
    """What no one field can check alone: a key with a line break, a dataset path without a dataset."""
    if opts["api_key"] and _CONTROL.search(opts["api_key"]):
        raise ConfigError(
            "--api-key (or OPENAI_API_KEY) holds a line break or another control character (refused)"
        )
    if opts["dataset_path"] and not opts["dataset"]:
        raise ConfigError(
            "--dataset-path needs --dataset: name what the files hold (--dataset gsm8k --dataset-path FILE), "
            "or --dataset file for a JSONL of prompts"
        )
    if opts["dataset"] and opts["prompts"]:
        raise ConfigError("--dataset and --prompts are alternatives: use --dataset file --dataset-path FILE")


def _workload_kind(opts: Mapping[str, Any]) -> str:
    if opts["dataset"]:
        return "dataset"
    if opts["prompts"]:
        return "file"
    return "trace" if opts["trace_lengths"] else "synthetic"


def _headers(values: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``--header NAME:VALUE`` each: a token name, a value without line breaks (header injection)."""
    headers = []
    for h in values:
        if ":" not in h:
            raise ConfigError(f"--header {h.split(':')[0][:30]!r}: expected NAME:VALUE")
        k, v = h.split(":", 1)
        k, v = k.strip(), v.strip()
        if not _HEADER_NAME.fullmatch(k):
            raise ConfigError(f"--header {k[:30]!r}: not a header name (letters, digits and !#$%&'*+-.^_`|~)")
        if _CONTROL.search(v):
            raise ConfigError(
                f"--header {k}: its value holds a line break or another control character (refused)"
            )
        headers.append((k, v))
    return tuple(headers)


def _extra_body(value: Any) -> tuple[tuple[str, Any], ...]:
    """``--extra-body``: a JSON object (text, or a table from a config file)."""
    if not value:
        return ()
    try:
        obj = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--extra-body is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ConfigError("--extra-body must be a JSON object")
    return tuple(obj.items())


# each option's converter from its resolved value to its field's (the others are taken as they are)
CONVERT: dict[str, Callable[[Any], Any]] = {
    "header": _headers,
    "extra_body": _extra_body,
    "dataset": lambda v: _dataset_mix(v),
    "dataset_path": tuple,
    "metrics_url": tuple,
    "input_len": lambda v: LengthDist.parse(str(v), "--input-len"),
    "output_len": lambda v: LengthDist.parse(str(v), "--output-len") if v else None,
    "turns": lambda v: LengthDist.parse(str(v), "--turns"),
    "think_time": lambda v: SecondsDist.parse(str(v), "--think-time"),
    "slo": Slo.parse,
    "sim_arg": lambda v: _sim_args(v),
}


def _sim_args(values: Sequence[str]) -> tuple[str, ...]:
    """Each ``--sim-arg`` split like a shell line: ``--sim-arg "--fault-500 0.3"`` is two simulator words."""
    out: list[str] = []
    for v in values:
        try:
            out += shlex.split(v)
        except ValueError as exc:
            raise ConfigError(f"--sim-arg {v!r}: {exc}") from None
    return tuple(out)


def _max_tokens(value: Any) -> tuple[int | None, Any]:
    """``--max-tokens``: one number for every request, or a sweep / per-dataset budgets (``Budgets``)."""
    if value is None:
        return None, None
    text = str(value).strip()
    if text.isdigit():
        return int(text), None
    from loadgen.workload.sampling import parse_budgets

    return None, parse_budgets(text)


def _dataset_mix(value: str | None) -> Any:
    """``--dataset``: the mix of canonical dataset names and weights (``DatasetMix``), or None."""
    if not value:
        return None
    from loadgen.workload.sampling import DatasetMix

    return DatasetMix.parse(str(value))
