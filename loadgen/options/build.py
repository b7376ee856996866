"""Resolved options -> the frozen ``RunConfig``: every value checked once, here.

``--max-tokens`` (one number, a sweep of budgets or per-dataset budgets) and ``--dataset`` (a weighted mix) are
parsed once into typed fields; past this point code takes the config and derives variants of it with
``dataclasses.replace``, never by writing flags again.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from loadgen.config import (
    DEFAULT_NUM_REQUESTS,
    AnalysisConfig,
    EndpointConfig,
    LengthDist,
    OutputConfig,
    RunConfig,
    SamplingConfig,
    ScheduleConfig,
    ScrapeConfig,
    SecondsDist,
    SendersConfig,
    SessionsConfig,
    SimConfig,
    Slo,
    WorkloadConfig,
)
from loadgen.errors import ConfigError
from loadgen.options.sources import bounded

# a header's name is an RFC 9110 token; a value never holds CR, LF, NUL or another control character but tab, which
# would end the header and start another (header injection)
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def build_config(opts: Mapping[str, Any]) -> RunConfig:
    """The frozen RunConfig of resolved options (see :func:`resolve_options`); every value is checked here."""
    headers = []
    for h in opts["header"]:
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
    if opts["api_key"] and _CONTROL.search(opts["api_key"]):
        raise ConfigError(
            "--api-key (or OPENAI_API_KEY) holds a line break or another control character (refused)"
        )
    extra: tuple[tuple[str, Any], ...] = ()
    if opts["extra_body"]:
        try:
            obj = (
                json.loads(opts["extra_body"]) if isinstance(opts["extra_body"], str) else opts["extra_body"]
            )
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--extra-body is not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise ConfigError("--extra-body must be a JSON object")
        extra = tuple(obj.items())
    simulated = not opts["base_url"]
    endpoint = EndpointConfig(
        base_url=opts["base_url"] or "http://127.0.0.1:0",
        api=opts["api"],
        model=opts["model"],
        api_key=opts["api_key"],
        headers=tuple(headers),
        timeout_s=opts["timeout"],
        connect_timeout_s=opts["connect_timeout"],
        read_timeout_s=opts["read_timeout"],
        simulated=simulated,
    )
    schedule = ScheduleConfig(
        arrival=opts["arrival"],
        rate=opts["rate"],
        cv=opts["cv"],
        seed=opts["seed"],
        trace_path=opts["trace"],
        trace_speedup=opts["trace_speedup"],
        trace_format=opts["trace_format"],
        trace_start_s=opts["trace_start"],
        trace_end_s=opts["trace_end"],
        # the default bound is written into the config, so summary.json says how many were planned
        num_requests=opts["num_requests"] if bounded(opts) or opts["trace"] else DEFAULT_NUM_REQUESTS,
        duration_s=opts["duration"],
        warmup=opts["warmup"],
        max_concurrency=opts["max_concurrency"],
    )
    max_tokens, budgets = _max_tokens(opts["max_tokens"])
    kind = "synthetic"
    if opts["dataset"]:
        kind = "dataset"
    elif opts["prompts"]:
        kind = "file"
    elif opts["trace_lengths"]:
        kind = "trace"
    if opts["dataset_path"] and not opts["dataset"]:
        raise ConfigError(
            "--dataset-path needs --dataset: name what the files hold (--dataset gsm8k --dataset-path FILE), "
            "or --dataset file for a JSONL of prompts"
        )
    if opts["dataset"] and opts["prompts"]:
        raise ConfigError("--dataset and --prompts are alternatives: use --dataset file --dataset-path FILE")
    workload = WorkloadConfig(
        kind=kind,
        dataset=_dataset_mix(opts["dataset"]),
        dataset_paths=tuple(opts["dataset_path"]),
        repeats=opts["repeats"],
        with_replacement=opts["sample_with_replacement"],
        budgets=budgets,
        force_output_len=opts["force_output_len"],
        input_len=LengthDist.parse(str(opts["input_len"]), "--input-len"),
        output_len=LengthDist.parse(str(opts["output_len"]), "--output-len") if opts["output_len"] else None,
        prefix_len=opts["prefix_len"],
        path=opts["prompts"],
        seed=opts["seed"],
    )
    if workload.prefix_len < 0:
        raise ConfigError("--prefix-len must be >= 0")
    sampling = SamplingConfig(
        max_tokens=max_tokens,
        ignore_eos=opts["ignore_eos"],
        temperature=opts["temperature"],
        top_p=opts["top_p"],
        extra_body=extra,
        continuous_usage=not opts["no_continuous_usage"],
    )
    return RunConfig(
        endpoint=endpoint,
        schedule=schedule,
        workload=workload,
        sampling=sampling,
        scrape=ScrapeConfig(
            enabled=not opts["no_scrape"],
            urls=tuple(opts["metrics_url"]),
            interval_s=opts["scrape_interval"],
            gpu_metrics=opts["gpu_metrics"],
        ),
        output=OutputConfig(
            output_dir=opts["output_dir"],
            label=opts["label"],
            quiet=opts["quiet"],
            json=opts["json"],
            live=not (opts["no_live"] or opts["quiet"] or opts["json"]),
            report=not opts["no_report"],
            log_level=opts["log_level"],
            metrics_port=opts["metrics_port"],
            metrics_host=opts["metrics_host"],
            metrics_linger_s=opts["metrics_linger"],
        ),
        analysis=AnalysisConfig(
            slo=Slo.parse(opts["slo"]),
            straggler_iqr_k=opts["straggler_k"],
            send_lag_p99_limit_ms=opts["send_lag_limit_ms"],
            client_cpu_limit=opts["cpu_limit"],
            max_error_share=opts["max_error_share"],
            loop_lag_p99_limit_ms=opts["loop_lag_limit_ms"],
            loop_lag_max_limit_ms=opts["loop_lag_max_ms"],
        ),
        sim=SimConfig(profile=opts["sim_profile"], args=_sim_args(opts["sim_arg"])),
        senders=SendersConfig(workers=opts["workers"], ray_address=opts["ray"]),
        sessions=SessionsConfig(
            sessions=opts["sessions"],
            turns=LengthDist.parse(str(opts["turns"]), "--turns"),
            think_time=SecondsDist.parse(str(opts["think_time"]), "--think-time"),
            history=opts["history"],
            trace_block_size=opts["trace_block_size"],
        ),
    )


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
