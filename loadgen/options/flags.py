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
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from typing import Any

from loadgen.config import (
    DEFAULT_NUM_REQUESTS,
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
from loadgen.records.record import Scrubber


def _rate(text: str) -> float:
    if text.strip().lower() in ("inf", "infinite", "infinity"):
        return math.inf
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a rate: {text!r} (a number of requests/s, or inf)") from None


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


# THE flag table: every option once, with its config field (its default is that field's default, negated for a
# --no-... flag; no field: --base-url, absent means the built-in simulator; --trace-lengths picks the workload;
# --config names a file), its group in --help and argparse's keywords. The parser, FIELD_OF and DEFAULTS are built
# from it; loadgen.options.build turns the resolved options into the RunConfig field by field of the same table.
NO_FIELD = "-"


@dataclass(frozen=True)
class Flag:
    names: tuple[str, ...]
    group: str | None
    field: str | None
    argparse: Mapping[str, Any]

    @property
    def dest(self) -> str:
        long = next((n for n in self.names if n.startswith("--")), self.names[0])
        return long.lstrip("-").replace("-", "_")


def _flag(*names: str, group: str | None, field: str | None = NO_FIELD, **argparse_kw: Any) -> Flag:
    return Flag(names, group, field, argparse_kw)


FLAGS: tuple[Flag, ...] = (
    _flag('--config', group=None, help='TOML file of options (keys as the long flag names, with _ or -)'),
    _flag('--base-url', group='target', field=None, help='server root, e.g. http://127.0.0.1:8000 (or /v1); env OPENAI_BASE_URL (default: none: the simulator)'),
    _flag('--api', group='target', field='endpoint.api', choices=('chat', 'completions'), help='endpoint: /v1/chat/completions or /v1/completions'),
    _flag('--model', group='target', field='endpoint.model', help='model id; default: the first id of /v1/models'),
    _flag('--api-key', group='target', field='endpoint.api_key', help='bearer token; env OPENAI_API_KEY (never written to results)'),
    _flag('--header', group='target', field='endpoint.headers', action='append', metavar='NAME:VALUE', help='extra HTTP header (repeatable)'),
    _flag('--timeout', group='target', field='endpoint.timeout_s', type=float, metavar='S', help='per-request timeout in seconds'),
    _flag('--connect-timeout', group='target', field='endpoint.connect_timeout_s', type=float, metavar='S', help='a new connection must be up within S seconds, or the request fails unsent'),
    _flag('--read-timeout', group='target', field='endpoint.read_timeout_s', type=float, metavar='S', help='fail a request after S seconds without a byte from the server (default: no such limit)'),
    _flag('--arrival', group='arrivals', field='schedule.arrival', choices=('constant', 'poisson', 'gamma', 'trace'), help='arrival process'),
    _flag('--rate', group='arrivals', field='schedule.rate', type=_rate, help='mean requests per second, or inf'),
    _flag('--cv', group='arrivals', field='schedule.cv', type=float, help='coefficient of variation of the gaps: 1 Poisson, 0 constant'),
    _flag('--seed', group='arrivals', field='schedule.seed', type=int, help='seed for arrivals and synthetic lengths'),
    _flag('--trace', group='arrivals', field='schedule.trace_path', metavar='FILE', help='arrival timestamps (s), one per line; implies --arrival trace'),
    _flag('--trace-speedup', group='arrivals', field='schedule.trace_speedup', type=float, help="divide the trace's gaps by this factor"),
    _flag('--trace-format', group='arrivals', field='schedule.trace_format', choices=('auto', 'timestamps', 'burstgpt', 'azure', 'mooncake'), help='trace layout (mooncake: JSONL of timestamp, input_length, output_length, hash_ids[, session_id, delay]: prompts rebuilt block for block)'),
    _flag('--trace-start', group='arrivals', field='schedule.trace_start_s', type=float, metavar='S', help='replay the trace from S seconds in'),
    _flag('--trace-end', group='arrivals', field='schedule.trace_end_s', type=float, metavar='S', help='replay the trace up to S seconds in'),
    _flag('--num-requests', '-n', group='arrivals', field='schedule.num_requests', type=int, help=f'requests to measure (default {DEFAULT_NUM_REQUESTS} without --duration)'),
    _flag('--duration', group='arrivals', field='schedule.duration_s', type=float, metavar='S', help='send for at most S seconds'),
    _flag('--warmup', group='arrivals', field='schedule.warmup', type=int, help='extra requests sent first and kept out of the statistics'),
    _flag('--max-concurrency', group='arrivals', field='schedule.max_concurrency', type=int, help='cap on requests in flight (waiting ones keep their start)'),
    _flag('--input-len', group='workload', field='workload.input_len', help='prompt tokens: N, uniform:LO,HI, normal:MEAN,SD, lognormal:MEDIAN,SIGMA'),
    _flag('--output-len', group='workload', field='workload.output_len', help='per-request max_tokens drawn like --input-len'),
    _flag('--prefix-len', group='workload', field='workload.prefix_len', type=int, help='tokens of a prefix shared by every synthetic prompt'),
    _flag('--prompts', group='workload', field='workload.path', metavar='FILE', help='JSONL of {prompt|messages, max_tokens?, reference?, tags?}'),
    _flag('--dataset', group='workload', field='workload.dataset', help='gsm8k, math500, aime2024, gpqa_diamond, sharegpt or file; a weighted mix: gsm8k:0.5,aime2024:0.5'),
    _flag('--dataset-path', group='workload', field='workload.dataset_paths', action='append', metavar='PATH', help='local FILE/DIR, or NAME=PATH per dataset'),
    _flag('--repeats', group='workload', field='workload.repeats', type=int, help='send every dataset item this many times (the study used 3)'),
    _flag('--sample-with-replacement', group='workload', field='workload.with_replacement', action='store_true', help='draw dataset items with replacement'),
    _flag('--trace-lengths', group='workload', field=None, action='store_true', help='prompt/output lengths from the --trace file'),
    _flag('--force-output-len', group='workload', field='workload.force_output_len', action='store_true', help='with --trace-lengths: exactly that many tokens'),
    _flag('--sessions', group='conversations (multi-turn sessions)', field='sessions.sessions', type=int, metavar='N', help='send N conversations; their starts follow the arrival process (--rate, --cv)'),
    _flag('--turns', group='conversations (multi-turn sessions)', field='sessions.turns', metavar='DIST', help='turns per conversation, drawn like --input-len'),
    _flag('--think-time', group='conversations (multi-turn sessions)', field='sessions.think_time', metavar='S', help="seconds from a turn's answer to the next turn: S, uniform:LO,HI, normal:MEAN,SD, lognormal:MEDIAN,SIGMA, exponential:MEAN"),
    _flag('--history', group='conversations (multi-turn sessions)', field='sessions.history', choices=('strip-reasoning', 'keep-reasoning'), help="what the resent history keeps of the server's answers: the answer only (DeepSeek-R1's convention) or its reasoning too, as <think>...</think> before the answer"),
    _flag('--trace-block-size', group='conversations (multi-turn sessions)', field='sessions.trace_block_size', type=int, metavar='TOKENS', help='tokens per hash id of a mooncake trace'),
    _flag('--max-tokens', group='sampling', field='sampling.max_tokens', help='max_tokens for every request; a sweep 1024,2048,4096 sends each item at each budget; per dataset: gsm8k=2048,aime2024=16k'),
    _flag('--ignore-eos', group='sampling', field='sampling.ignore_eos', action='store_true', help='ask the server to ignore EOS (vLLM extension)'),
    _flag('--temperature', group='sampling', field='sampling.temperature', type=float, help="sampling temperature (default: not sent: the server's)"),
    _flag('--top-p', group='sampling', field='sampling.top_p', type=float, help="nucleus sampling top_p (default: not sent: the server's)"),
    _flag('--extra-body', group='sampling', field='sampling.extra_body', metavar='JSON', help='JSON object merged into every request body'),
    _flag('--no-continuous-usage', group='sampling', field='sampling.continuous_usage', action='store_true', help="don't ask for per-chunk usage (stream_options.continuous_usage_stats) on servers that reject it"),
    _flag('--metrics-url', group='server metrics', field='scrape.urls', action='append', help='Prometheus /metrics URL (repeatable); default: origin'),
    _flag('--scrape-interval', group='server metrics', field='scrape.interval_s', type=float, metavar='S', help='seconds between scrapes'),
    _flag('--no-scrape', group='server metrics', field='scrape.enabled', action='store_true', help="don't scrape /metrics"),
    _flag('--gpu-metrics', group='server metrics', field='scrape.gpu_metrics', choices=('auto', 'on', 'off'), help='GPU utilisation, memory, power, clocks (NVML) on each scrape; auto: a local target'),
    _flag('--slo', group='analysis', field='analysis.slo', help='goodput objectives, e.g. ttft=500ms,tpot=0.05s (ttft, ttfvt, tpot, itl, e2e; units ms, s or us; a bare number is milliseconds)'),
    _flag('--straggler-k', group='analysis', field='analysis.straggler_iqr_k', type=float, help='stragglers: e2e > p50 + K x IQR'),
    _flag('--send-lag-limit-ms', group='analysis', field='analysis.send_lag_p99_limit_ms', type=float, help='send lag p99 above this marks the run untrustworthy'),
    _flag('--cpu-limit', group='analysis', field='analysis.client_cpu_limit', type=float, help='client CPU share above this marks the run untrustworthy'),
    _flag('--max-error-share', group='analysis', field='analysis.max_error_share', type=float, metavar='X', help='exit 3 when more than this share of measured requests failed (always when all failed)'),
    _flag('--loop-lag-limit-ms', group='analysis', field='analysis.loop_lag_p99_limit_ms', type=float, help='event-loop lag p99 above this marks the run untrustworthy (default: --send-lag-limit-ms)'),
    _flag('--loop-lag-max-ms', group='analysis', field='analysis.loop_lag_max_limit_ms', type=float, help='one event-loop stall longer than this marks the run untrustworthy: reads during it are stamped late'),
    _flag('--output-dir', group='output', field='output.output_dir', help='results folder (default results/<UTC time>-<label>/)'),
    _flag('--label', group='output', field='output.label', help='a name for this run'),
    _flag('--quiet', '-q', group='output', field='output.quiet', action='store_true', help='print nothing but errors'),
    _flag('--json', group='output', field='output.json', action='store_true', help='print summary.json to stdout (nothing else)'),
    _flag('--no-live', group='output', field='output.live', action='store_true', help='no live progress view'),
    _flag('--no-report', group='output', field='output.report', action='store_true', help="don't write report.html at the end"),
    _flag('--log-level', group='output', field='output.log_level', choices=LOG_LEVELS, help='log messages from this level on'),
    _flag('--metrics-port', group='output', field='output.metrics_port', type=int, metavar='PORT', help="serve loadgen's own live figures for Prometheus on this port while the run lasts (default: off)"),
    _flag('--metrics-host', group='output', field='output.metrics_host', metavar='ADDR', help='the address --metrics-port listens on'),
    _flag('--metrics-linger', group='output', field='output.metrics_linger_s', type=float, metavar='S', help='after the run, serve until one scrape has read the final figures, at most S seconds'),
    _flag('--workers', group='senders (beyond one core, beyond one host)', field='senders.workers', type=_workers, metavar='N|auto', help='sender processes sharing the one plan (auto: from the usable cores and the planned token events/s)'),
    _flag('--ray', group='senders (beyond one core, beyond one host)', field='senders.ray_address', metavar='auto|ADDRESS', help="send from Ray actors spread over a cluster's nodes (--workers of them); needs loadgen[ray]"),
    _flag('--sim-profile', group='built-in simulator (used when no endpoint is given)', field='sim.profile', help='simulator profile (see python -m loadgen.sim --help)'),
    _flag('--sim-arg', group='built-in simulator (used when no endpoint is given)', field='sim.args', action='append', metavar='ARGS', help='options for the simulator, split like a shell line: --sim-arg "--fault-500 0.3" (repeatable)'),
)  # fmt: skip

# the config field each option sets (None: no one field)
FIELD_OF: dict[str, str | None] = {f.dest: f.field for f in FLAGS if f.field != NO_FIELD}

SECTIONS: dict[str, type] = {
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
    f = next(f for f in fields(SECTIONS[section]) if f.name == name)
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
            self.error(_explain_unrecognized(self, extras))
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


def _explain_unrecognized(parser: argparse.ArgumentParser, extras: Sequence[str]) -> str:
    """ "unrecognized arguments" with every value that follows an unknown option masked (``mask_secrets``) and the
    nearest option named."""
    names = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    unknown = [tok.partition("=")[0] for tok in extras if tok.startswith("-") and len(tok) > 1]
    hints = []
    for name in unknown:
        longer = [n for n in names if n.startswith(name)] if len(name) > 2 else []
        if longer:
            hints.append(f"{name}: options are not abbreviated; did you mean {longer[0]}?")
        elif close := difflib.get_close_matches(name, names, n=1, cutoff=0.75):
            hints.append(f"{name}: did you mean {close[0]}?")
    shown = " ".join(mask_secrets(extras, parser, unknown=True))
    return "unrecognized arguments: " + shown + (f" ({'; '.join(hints)})" if hints else "")


DESCRIPTION = (
    "Open-loop, reasoning-aware load generator for OpenAI-compatible LLM servers. "
    "Without --base-url (or OPENAI_BASE_URL) it runs against the built-in simulated server."
)


def build_parser() -> argparse.ArgumentParser:
    """The run's parser, built from FLAGS (no defaults of its own: argument_default=SUPPRESS tells the command line
    from the environment and a file; the help shows each field's default)."""
    S = argparse.SUPPRESS
    p = OptionParser(
        allow_abbrev=False,
        prog="python -m loadgen",
        description=DESCRIPTION,
        argument_default=S,
    )
    groups: dict[str | None, Any] = {None: p}
    for f in FLAGS:
        if f.group not in groups:
            groups[f.group] = p.add_argument_group(f.group)
        groups[f.group].add_argument(*f.names, **f.argparse)
    return _finish_help(p)


def _finish_help(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Every option's help ends with its default, taken from DEFAULTS (the config fields' defaults, since the
    parser itself has none: argument_default=SUPPRESS tells the command line from environment and file): 0 and
    "none" included; a switch (--no-scrape, --quiet) is off unless given, and a help that explains its default
    (--model: the server's first model) keeps its words."""
    for action in p._actions:
        if action.dest not in DEFAULTS or not action.option_strings or not action.help:
            continue
        default = DEFAULTS[action.dest]
        if action.help == argparse.SUPPRESS or action.nargs == 0 or "default" in action.help:
            continue
        if isinstance(default, (list, tuple)) and not default or default == "":
            continue
        shown = "none" if default is None else f"{default:g}" if isinstance(default, float) else str(default)
        action.help += f" (default {shown})"
    return p


def mask_secrets(
    argv: Any,
    parser: argparse.ArgumentParser | None = None,
    *,
    keep_header_names: bool = False,
    unknown: bool = False,
) -> Any:
    """``argv`` with the value of every secret option replaced by ``***``: the one masking of options, for anything
    that records or shows them (run.json, the report, an error message, an experiment's manifest), then scrubbed of
    URL credentials (``Scrubber``).

    Secret options are found by their dest (``SECRET_DESTS``), not by one spelling, so every option string the
    parser accepts for them is covered, as ``--flag VALUE`` and as ``--flag=VALUE``; so is a prefix of one that names
    no other option (``--api-k``: parsers refuse abbreviations, but a command line shown from an older run may hold
    one). ``keep_header_names``: ``--header NAME:VALUE`` shows ``NAME: ***`` (the report), else ``***``.
    ``unknown``: ``argv`` holds options the parser refused (an error message names them): the value of every one of
    them is masked too (a mistyped ``--api-keyy sk-...`` is a secret all the same); a word that is an option itself
    is not its value. ``argv`` may also be an experiment file's tables (a dict): the value of every key that names a
    secret option (``api_key`` or ``api-key``, ``header``) is masked, nested tables and lists walked.
    """

    def tables(doc: Any) -> Any:
        if isinstance(doc, Mapping):
            return {
                k: "***" if str(k).replace("-", "_") in SECRET_DESTS else tables(v) for k, v in doc.items()
            }
        return [tables(v) for v in doc] if isinstance(doc, list) else doc

    if isinstance(argv, Mapping):
        return tables(argv)
    parser = parser or build_parser()
    secret = {s for a in parser._actions if a.dest in SECRET_DESTS for s in a.option_strings}
    header = {s for a in parser._actions if a.dest == "header" for s in a.option_strings}
    others = {s for a in parser._actions for s in a.option_strings} - secret

    def is_option(word: str) -> bool:
        return word.startswith("-") and len(word) > 1

    def option(word: str) -> str | None:
        name = word.split("=", 1)[0]
        if name in secret:
            return name
        if name.startswith("--") and len(name) > 3 and name not in others:
            return next((s for s in sorted(secret) if s.startswith(name)), None) or (
                name if unknown else None
            )
        return name if unknown and is_option(name) else None

    def hidden(opt: str, value: str) -> str:
        if keep_header_names and opt in header and ":" in value:
            return f"{value.split(':', 1)[0].strip()}: ***"
        return "***"

    out: list[str] = []
    pending: str | None = None
    for a in argv:
        if pending is not None and not (unknown and is_option(a)):
            out.append(hidden(pending, a))
            pending = None
            continue
        pending = None
        opt = option(a) if a.startswith("-") else None
        if opt is None:
            out.append(a)
        elif "=" in a:
            out.append(f"{a.split('=', 1)[0]}={hidden(opt, a.split('=', 1)[1])}")
        else:
            out.append(a)
            pending = opt
    return [_URLS.text(a) for a in out]  # credentials written into a URL (--base-url http://user:pw@host)


_URLS = Scrubber()  # masks only what has the shape of a secret: a URL's user:password
