"""The run's flags: the parser table, each flag's config field and default, and the masking of secret values.

Defaults live on the config dataclasses only (``loadgen.config``): :data:`FIELD_OF` says which field each option
sets, :data:`DEFAULTS` is read from those fields, and the help shows it. The parser itself has no defaults
(``argument_default=SUPPRESS``), so what came from the command line can be told from what the environment or a
file gives (``loadgen.options.sources``).
"""

from __future__ import annotations

import argparse
import difflib
import math
import sys
from collections.abc import Sequence
from dataclasses import MISSING, fields
from typing import Any

from loadgen.config import (
    LOG_LEVELS,
    AnalysisConfig,
    EndpointConfig,
    LengthDist,
    OutputConfig,
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
from loadgen.records import Scrubber

# the config field each option sets: its default is the option's default (negated for a --no-... flag). None: the
# option sets no one field (--base-url: absent means the built-in simulator; --trace-lengths picks the workload)
FIELD_OF: dict[str, str | None] = {
    "base_url": None, "api": "endpoint.api", "model": "endpoint.model", "api_key": "endpoint.api_key",
    "header": "endpoint.headers", "timeout": "endpoint.timeout_s",
    "connect_timeout": "endpoint.connect_timeout_s", "read_timeout": "endpoint.read_timeout_s",
    "arrival": "schedule.arrival", "rate": "schedule.rate", "cv": "schedule.cv", "seed": "schedule.seed",
    "trace": "schedule.trace_path", "trace_speedup": "schedule.trace_speedup",
    "trace_format": "schedule.trace_format", "trace_start": "schedule.trace_start_s",
    "trace_end": "schedule.trace_end_s", "trace_lengths": None,
    "force_output_len": "workload.force_output_len", "dataset": "workload.dataset",
    "dataset_path": "workload.dataset_paths", "repeats": "workload.repeats",
    "sample_with_replacement": "workload.with_replacement", "num_requests": "schedule.num_requests",
    "duration": "schedule.duration_s", "warmup": "schedule.warmup",
    "max_concurrency": "schedule.max_concurrency", "input_len": "workload.input_len",
    "output_len": "workload.output_len", "prefix_len": "workload.prefix_len", "prompts": "workload.path",
    "max_tokens": "sampling.max_tokens", "ignore_eos": "sampling.ignore_eos",
    "temperature": "sampling.temperature", "top_p": "sampling.top_p", "extra_body": "sampling.extra_body",
    "no_continuous_usage": "sampling.continuous_usage", "metrics_url": "scrape.urls",
    "scrape_interval": "scrape.interval_s", "gpu_metrics": "scrape.gpu_metrics", "no_scrape": "scrape.enabled", "slo": "analysis.slo",
    "straggler_k": "analysis.straggler_iqr_k", "send_lag_limit_ms": "analysis.send_lag_p99_limit_ms",
    "cpu_limit": "analysis.client_cpu_limit", "max_error_share": "analysis.max_error_share",
    "loop_lag_limit_ms": "analysis.loop_lag_p99_limit_ms",
    "loop_lag_max_ms": "analysis.loop_lag_max_limit_ms", "output_dir": "output.output_dir",
    "label": "output.label", "quiet": "output.quiet", "json": "output.json", "no_live": "output.live",
    "no_report": "output.report", "log_level": "output.log_level", "metrics_port": "output.metrics_port",
    "metrics_host": "output.metrics_host", "metrics_linger": "output.metrics_linger_s", "sim_profile": "sim.profile",
    "sim_arg": "sim.args", "workers": "senders.workers", "ray": "senders.ray_address",
    "sessions": "sessions.sessions", "turns": "sessions.turns", "think_time": "sessions.think_time",
    "history": "sessions.history", "trace_block_size": "sessions.trace_block_size",
}  # fmt: skip

_SECTIONS: dict[str, type] = {
    "endpoint": EndpointConfig,
    "schedule": ScheduleConfig,
    "workload": WorkloadConfig,
    "sampling": SamplingConfig,
    "scrape": ScrapeConfig,
    "output": OutputConfig,
    "analysis": AnalysisConfig,
    "sim": SimConfig,
    "senders": SendersConfig,
    "sessions": SessionsConfig,
}


def _option_default(dest: str, path: str | None) -> Any:
    """The default of ``dest`` in the option's own terms (what one would type), from its config field."""
    if path is None:
        return False if dest == "trace_lengths" else None
    section, _, name = path.partition(".")
    f = next(f for f in fields(_SECTIONS[section]) if f.name == name)
    value = f.default if f.default is not MISSING else None
    if dest.startswith("no_"):
        return not value
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, (LengthDist, SecondsDist)):
        return value.describe()
    if isinstance(value, Slo):
        return None if not value.limits_ms else value
    return value


# every option's default, derived from the dataclasses (the parser itself has none: see build_parser)
DEFAULTS: dict[str, Any] = {dest: _option_default(dest, path) for dest, path in FIELD_OF.items()}

# environment variables that also feed an option (besides LOADGEN_<OPTION>)
ENV_ALIASES = {"base_url": ("OPENAI_BASE_URL",), "api_key": ("OPENAI_API_KEY",)}

# options whose values are secrets, by dest: every spelling the parser accepts for them is masked
SECRET_DESTS = frozenset({"api_key", "header"})


def _rate(text: str) -> float:
    if text.strip().lower() in ("inf", "infinite", "infinity"):
        return math.inf
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a rate: {text!r} (a number of requests/s, or inf)") from None


class OptionParser(argparse.ArgumentParser):
    """One line for a bad flag instead of argparse's usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"loadgen: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        ns, extras = self.parse_known_args(args, namespace)
        if (
            extras
        ):  # argparse would join them into its message, and with them a mistyped option's secret value
            names = [s for a in self._actions for s in a.option_strings if s.startswith("--")]
            self.error(_explain_unrecognized(extras, names))
        return ns

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        return super().parse_known_args(_glue_sim_args(args), namespace)


def _glue_sim_args(args: Sequence[str] | None) -> list[str]:
    """``--sim-arg VALUE`` always takes the next word, even one starting with ``-`` (argparse would read
    ``--sim-arg --fault-500`` as a missing value): glued into ``--sim-arg=VALUE``."""
    args = list(sys.argv[1:] if args is None else args)
    out: list[str] = []
    i = 0
    while i < len(args):
        if args[i] == "--sim-arg" and i + 1 < len(args):
            out.append("--sim-arg=" + args[i + 1])
            i += 2
            continue
        out.append(args[i])
        i += 1
    return out


def _explain_unrecognized(extras: Sequence[str], names: Sequence[str]) -> str:
    """ "unrecognized arguments" with every value that follows an unknown option masked (a mistyped
    ``--api-keyy sk-...`` is a secret all the same) and the nearest option named."""
    out, unknown, after_option = [], [], False
    for tok in extras:
        if tok.startswith("-") and len(tok) > 1:
            name, eq, _ = tok.partition("=")
            unknown.append(name)
            out.append(name + "=***" if eq else name)
            after_option = not eq
        else:
            out.append("***" if after_option else tok)
            after_option = False
    hints = []
    for name in unknown:
        longer = [n for n in names if n.startswith(name)] if len(name) > 2 else []
        if longer:
            hints.append(f"{name}: options are not abbreviated; did you mean {longer[0]}?")
        elif close := difflib.get_close_matches(name, names, n=1, cutoff=0.75):
            hints.append(f"{name}: did you mean {close[0]}?")
    return "unrecognized arguments: " + " ".join(out) + (f" ({'; '.join(hints)})" if hints else "")


def build_parser() -> argparse.ArgumentParser:
    S = argparse.SUPPRESS
    p = OptionParser(
        allow_abbrev=False,
        prog="python -m loadgen",
        description="Open-loop, reasoning-aware load generator for OpenAI-compatible LLM servers. "
        "Without --base-url (or OPENAI_BASE_URL) it runs against the built-in simulated server.",
        argument_default=S,
    )
    p.add_argument("--config", help="TOML file of options (keys as the long flag names, with _ or -)")
    g = p.add_argument_group("target")
    g.add_argument(
        "--base-url",
        help="server root, e.g. http://127.0.0.1:8000 (or /v1); env OPENAI_BASE_URL (default: none: the simulator)",
    )
    g.add_argument(
        "--api", choices=("chat", "completions"), help="endpoint: /v1/chat/completions or /v1/completions"
    )
    g.add_argument("--model", help="model id; default: the first id of /v1/models")
    g.add_argument("--api-key", help="bearer token; env OPENAI_API_KEY (never written to results)")
    g.add_argument("--header", action="append", metavar="NAME:VALUE", help="extra HTTP header (repeatable)")
    g.add_argument("--timeout", type=float, metavar="S", help="per-request timeout in seconds (default 600)")
    g.add_argument(
        "--connect-timeout",
        type=float,
        metavar="S",
        help="a new connection must be up within S seconds, or the request fails unsent (default 10)",
    )
    g.add_argument(
        "--read-timeout",
        type=float,
        metavar="S",
        help="fail a request after S seconds without a byte from the server (default: no such limit)",
    )
    g = p.add_argument_group("arrivals")
    g.add_argument("--arrival", choices=("constant", "poisson", "gamma", "trace"), help="arrival process")
    g.add_argument("--rate", type=_rate, help="mean requests per second, or inf (default 4)")
    g.add_argument("--cv", type=float, help="coefficient of variation of the gaps: 1 Poisson, 0 constant")
    g.add_argument("--seed", type=int, help="seed for arrivals and synthetic lengths")
    g.add_argument(
        "--trace", metavar="FILE", help="arrival timestamps (s), one per line; implies --arrival trace"
    )
    g.add_argument("--trace-speedup", type=float, help="divide the trace's gaps by this factor")
    g.add_argument(
        "--trace-format",
        choices=("auto", "timestamps", "burstgpt", "azure", "mooncake"),
        help="trace layout (mooncake: JSONL of timestamp, input_length, output_length, hash_ids[, session_id, "
        "delay]: prompts rebuilt block for block)",
    )
    g.add_argument("--trace-start", type=float, metavar="S", help="replay the trace from S seconds in")
    g.add_argument("--trace-end", type=float, metavar="S", help="replay the trace up to S seconds in")
    g.add_argument(
        "--num-requests", "-n", type=int, help="requests to measure (default 100 without --duration)"
    )
    g.add_argument("--duration", type=float, metavar="S", help="send for at most S seconds")
    g.add_argument("--warmup", type=int, help="extra requests sent first and kept out of the statistics")
    g.add_argument(
        "--max-concurrency", type=int, help="cap on requests in flight (waiting ones keep their start)"
    )
    g = p.add_argument_group("workload")
    g.add_argument(
        "--input-len", help="prompt tokens: N, uniform:LO,HI, normal:MEAN,SD, lognormal:MEDIAN,SIGMA"
    )
    g.add_argument("--output-len", help="per-request max_tokens drawn like --input-len")
    g.add_argument("--prefix-len", type=int, help="tokens of a prefix shared by every synthetic prompt")
    g.add_argument(
        "--prompts", metavar="FILE", help="JSONL of {prompt|messages, max_tokens?, reference?, tags?}"
    )
    g.add_argument(
        "--dataset",
        help="gsm8k, math500, aime2024, gpqa_diamond, sharegpt or file; a weighted mix: gsm8k:0.5,aime2024:0.5",
    )
    g.add_argument(
        "--dataset-path", action="append", metavar="PATH", help="local FILE/DIR, or NAME=PATH per dataset"
    )
    g.add_argument("--repeats", type=int, help="send every dataset item this many times (the study used 3)")
    g.add_argument(
        "--sample-with-replacement", action="store_true", help="draw dataset items with replacement"
    )
    g.add_argument("--trace-lengths", action="store_true", help="prompt/output lengths from the --trace file")
    g.add_argument(
        "--force-output-len", action="store_true", help="with --trace-lengths: exactly that many tokens"
    )
    g = p.add_argument_group("conversations (multi-turn sessions)")
    g.add_argument(
        "--sessions",
        type=int,
        metavar="N",
        help="send N conversations; their starts follow the arrival process (--rate, --cv)",
    )
    g.add_argument("--turns", metavar="DIST", help="turns per conversation, drawn like --input-len")
    g.add_argument(
        "--think-time",
        metavar="S",
        help="seconds from a turn's answer to the next turn: S, uniform:LO,HI, normal:MEAN,SD, "
        "lognormal:MEDIAN,SIGMA, exponential:MEAN",
    )
    g.add_argument(
        "--history",
        choices=("strip-reasoning", "keep-reasoning"),
        help="what the resent history keeps of the server's answers: the answer only (DeepSeek-R1's convention) "
        "or its reasoning too, as <think>...</think> before the answer",
    )
    g.add_argument(
        "--trace-block-size", type=int, metavar="TOKENS", help="tokens per hash id of a mooncake trace"
    )
    g = p.add_argument_group("sampling")
    g.add_argument(
        "--max-tokens",
        help="max_tokens for every request; a sweep 1024,2048,4096 sends each item at each budget; "
        "per dataset: gsm8k=2048,aime2024=16k",
    )
    g.add_argument("--ignore-eos", action="store_true", help="ask the server to ignore EOS (vLLM extension)")
    g.add_argument("--temperature", type=float, help="sampling temperature (default: not sent: the server's)")
    g.add_argument("--top-p", type=float, help="nucleus sampling top_p (default: not sent: the server's)")
    g.add_argument("--extra-body", metavar="JSON", help="JSON object merged into every request body")
    g.add_argument(
        "--no-continuous-usage",
        action="store_true",
        help="don't ask for per-chunk usage (stream_options.continuous_usage_stats) on servers that reject it",
    )
    g = p.add_argument_group("server metrics")
    g.add_argument(
        "--metrics-url", action="append", help="Prometheus /metrics URL (repeatable); default: origin"
    )
    g.add_argument("--scrape-interval", type=float, metavar="S", help="seconds between scrapes")
    g.add_argument("--no-scrape", action="store_true", help="don't scrape /metrics")
    g.add_argument("--gpu-metrics", choices=("auto", "on", "off"),
                   help="GPU utilisation, memory, power, clocks (NVML) on each scrape; auto: a local target")  # fmt: skip
    g = p.add_argument_group("analysis")
    g.add_argument(
        "--slo",
        help="goodput objectives, e.g. ttft=500ms,tpot=0.05s (ttft, ttfvt, tpot, itl, e2e; units ms, s or us; "
        "a bare number is milliseconds)",
    )
    g.add_argument("--straggler-k", type=float, help="stragglers: e2e > p50 + K x IQR (default 3)")
    g.add_argument(
        "--send-lag-limit-ms", type=float, help="send lag p99 above this marks the run untrustworthy"
    )
    g.add_argument("--cpu-limit", type=float, help="client CPU share above this marks the run untrustworthy")
    g.add_argument(
        "--max-error-share",
        type=float,
        metavar="X",
        help="exit 3 when more than this share of measured requests failed (always when all failed)",
    )
    g.add_argument(
        "--loop-lag-limit-ms",
        type=float,
        help="event-loop lag p99 above this marks the run untrustworthy (default: --send-lag-limit-ms)",
    )
    g.add_argument(
        "--loop-lag-max-ms",
        type=float,
        help="one event-loop stall longer than this marks the run untrustworthy: reads during it are "
        "stamped late (default 50)",
    )
    g = p.add_argument_group("output")
    g.add_argument("--output-dir", help="results folder (default results/<UTC time>-<label>/)")
    g.add_argument("--label", help="a name for this run")
    g.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    g.add_argument("--json", action="store_true", help="print summary.json to stdout (nothing else)")
    g.add_argument("--no-live", action="store_true", help="no live progress view")
    g.add_argument("--no-report", action="store_true", help="don't write report.html at the end")
    g.add_argument("--log-level", choices=LOG_LEVELS, help="log messages from this level on")
    g.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve loadgen's own live figures for Prometheus on this port while the run lasts (off)",
    )
    g.add_argument("--metrics-host", metavar="ADDR", help="the address --metrics-port listens on")
    g.add_argument(
        "--metrics-linger",
        type=float,
        metavar="S",
        help="after the run, serve until one scrape has read the final figures, at most S seconds",
    )
    g = p.add_argument_group("senders (beyond one core, beyond one host)")
    g.add_argument(
        "--workers",
        type=_workers,
        metavar="N|auto",
        help="sender processes sharing the one plan (auto: from the usable cores and the planned token events/s)",
    )
    g.add_argument(
        "--ray",
        metavar="auto|ADDRESS",
        help="send from Ray actors spread over a cluster's nodes (--workers of them); needs loadgen[ray]",
    )
    g = p.add_argument_group("built-in simulator (used when no endpoint is given)")
    g.add_argument("--sim-profile", help="simulator profile (see python -m loadgen.sim --help)")
    g.add_argument(
        "--sim-arg",
        action="append",
        metavar="ARGS",
        help='options for the simulator, split like a shell line: --sim-arg "--fault-500 0.3" (repeatable)',
    )
    return _finish_help(p)


def _finish_help(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Every option's help ends with its default, taken from DEFAULTS (the config fields' defaults, since the
    parser itself has none: argument_default=SUPPRESS tells the command line from environment and file)."""
    for action in p._actions:
        default = DEFAULTS.get(action.dest)
        if not action.option_strings or not action.help or action.help == argparse.SUPPRESS:
            continue
        if default in (None, False, [], "") or "default" in action.help:
            continue
        shown = f"{default:g}" if isinstance(default, float) else str(default)
        action.help += f" (default {shown})"
    return p


def mask_secrets(argv: Sequence[str], parser: argparse.ArgumentParser | None = None) -> list[str]:
    """``argv`` with the value of every secret option replaced by ``***``, for anything that records a command.

    Secret options are found by their dest (``SECRET_DESTS``), not by one spelling, so every option string the
    parser accepts for them is covered, as ``--flag VALUE`` and as ``--flag=VALUE``; abbreviations are refused
    by every parser (``allow_abbrev=False``), so no other spelling can carry a secret in.
    """
    parser = parser or build_parser()
    flags = {s for a in parser._actions if a.dest in SECRET_DESTS for s in a.option_strings}
    out: list[str] = []
    hide = False
    for a in argv:
        if hide:
            out.append("***")
            hide = False
        elif a in flags:
            out.append(a)
            hide = True
        elif "=" in a and a.split("=", 1)[0] in flags:
            out.append(a.split("=", 1)[0] + "=***")
        else:
            out.append(a)
    return [_URLS.text(a) for a in out]  # credentials written into a URL (--base-url http://user:pw@host)


_URLS = Scrubber()  # masks only what has the shape of a secret: a URL's user:password


def _workers(text: str | int) -> int | None:
    """``--workers``: a number of senders, or ``auto`` (None)."""
    if str(text).strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a number of senders: {text!r} (a whole number, or auto)"
        ) from None
