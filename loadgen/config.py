"""Run configuration: frozen dataclasses, validated once. Nothing downstream of the CLI sees argparse."""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from loadgen.errors import ConfigError
from loadgen.records.record import Scrubber

if TYPE_CHECKING:
    from loadgen.workload.sampling import Budgets, DatasetMix

SLO_METRICS = ("ttft", "ttfvt", "tpot", "itl", "e2e")
DEFAULT_NUM_REQUESTS = 100  # when neither --num-requests, --duration nor a trace bounds the run


def _kind_and_numbers(
    text: str, flag: str, kinds: tuple[str, ...], expected: str
) -> tuple[str, float, float | None]:
    """``[KIND:]A[,B]`` (KIND one of ``kinds``; fixed when left out): the kind and its one or two numbers, as a
    distribution flag (``--input-len``, ``--think-time``) writes them; anything else is one clear ConfigError."""
    numbers = r"\s*([0-9.eE+-]+)\s*(?:,\s*([0-9.eE+-]+))?\s*"
    m = re.fullmatch(rf"\s*(?:({'|'.join(kinds)}):)?{numbers}", str(text))
    if not m:
        raise ConfigError(f"{flag} {text!r}: expected {expected}")
    try:
        a = float(m.group(2))
        b = float(m.group(3)) if m.group(3) is not None else None
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: not a number") from None
    return m.group(1) or "fixed", a, b


@dataclass(frozen=True, slots=True)
class LengthDist:
    """A token-length distribution: fixed, uniform(lo, hi), normal(mean, sd) or lognormal(median, sigma)."""

    kind: str = "fixed"
    a: float = 256
    b: float = 0
    max_value: int = 1_000_000

    @classmethod
    def parse(cls, text: str, flag: str) -> LengthDist:
        kind, a, b = _kind_and_numbers(
            text, flag, ("fixed", "uniform", "normal", "lognormal"),
            "N, uniform:LO,HI, normal:MEAN,SD or lognormal:MEDIAN,SIGMA",
        )  # fmt: skip
        if kind == "fixed":
            if b is not None:
                raise ConfigError(f"{flag} {text!r}: a fixed length takes one number")
            b = 0.0
        elif b is None:
            raise ConfigError(f"{flag} {text!r}: {kind} takes two numbers")
        dist = cls(kind, a, b)
        dist.validate(flag)
        return dist

    def validate(self, flag: str) -> None:
        if self.kind == "fixed" and (self.a < 1 or self.a != int(self.a)):
            raise ConfigError(f"{flag}: a fixed length must be a whole number >= 1, got {self.a}")
        if self.kind == "uniform" and not (1 <= self.a <= self.b):
            raise ConfigError(f"{flag}: uniform needs 1 <= LO <= HI, got {self.a},{self.b}")
        if self.kind == "normal" and not (self.a >= 1 and self.b >= 0):
            raise ConfigError(f"{flag}: normal needs MEAN >= 1 and SD >= 0, got {self.a},{self.b}")
        if self.kind == "lognormal" and not (self.a >= 1 and self.b >= 0):
            raise ConfigError(f"{flag}: lognormal needs MEDIAN >= 1 and SIGMA >= 0, got {self.a},{self.b}")

    def describe(self) -> str:
        return f"{self.a:g}" if self.kind == "fixed" else f"{self.kind}:{self.a:g},{self.b:g}"


@dataclass(frozen=True, slots=True)
class Slo:
    """Service-level objectives in ms; a request is 'good' when it meets every one that is set."""

    limits_ms: tuple[tuple[str, float], ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> Slo:
        if not text:
            return cls()
        out: list[tuple[str, float]] = []
        for part in text.split(","):
            part = part.strip()
            m = re.fullmatch(r"(\w+)\s*[=<:]\s*([0-9.]+)\s*(ms|s|us)?", part)
            if not m or m.group(1) not in SLO_METRICS:
                raise ConfigError(
                    f"--slo {part!r}: expected METRIC=VALUE[ms|s] with METRIC one of {', '.join(SLO_METRICS)}"
                )
            scale = {"ms": 1.0, None: 1.0, "s": 1000.0, "us": 0.001}[m.group(3)]
            out.append((m.group(1), float(m.group(2)) * scale))
        return cls(tuple(out))

    def as_dict(self) -> dict[str, float]:
        return dict(self.limits_ms)


def split_userinfo(url: str) -> tuple[str, str | None]:
    """``http://user:pw@host:port/v1`` -> (``http://host:port/v1``, ``"user:pw"`` percent-decoded); a URL without
    credentials comes back as it is, with None."""
    m = re.match(r"^(https?://)([^/?#\s]*)@", url, re.IGNORECASE)
    if not m:
        return url, None
    user, _, password = m.group(2).partition(":")
    return m.group(1) + url[m.end() :], f"{unquote(user)}:{unquote(password)}"


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """Where requests go and how they are authenticated. The API key is never printed or written.

    Credentials written into the URL (``http://user:password@host:port``) are taken out of ``base_url`` here, once,
    so no URL derived from it (the requests' Host header, /metrics, run.json, the console) can carry them: they
    become ``basic_auth`` ("user:password", percent-decoded), sent as ``Authorization: Basic ...`` unless an
    ``--api-key`` or an ``Authorization`` ``--header`` is given, which wins (one Authorization, the explicit one).
    """

    base_url: str
    api: str = "chat"  # chat | completions
    model: str | None = None
    api_key: str | None = field(default=None, repr=False)
    headers: tuple[tuple[str, str], ...] = ()
    timeout_s: float = 600.0  # the whole request, from its turn to be sent: connect, send, the full response
    simulated: bool = False
    connect_timeout_s: float = 10.0  # a new connection must be up within this (and within timeout_s)
    read_timeout_s: float | None = (
        None  # fail a response after this long without a byte; None = no such limit
    )
    basic_auth: str | None = field(default=None, repr=False)  # "user:password" from the URL's userinfo

    def __post_init__(self) -> None:
        url, userinfo = split_userinfo(self.base_url)
        if userinfo is not None:
            object.__setattr__(self, "base_url", url)
            object.__setattr__(self, "basic_auth", userinfo)
        if not re.match(r"^https?://[^/\s]+", self.base_url):
            shown = Scrubber().text(self.base_url)  # a mistyped URL may still carry a password
            raise ConfigError(f"--base-url {shown!r}: expected http://HOST[:PORT][/v1]")
        if self.api not in ("chat", "completions"):
            raise ConfigError(f"--api must be chat or completions, got {self.api!r}")
        if not (self.timeout_s > 0):
            raise ConfigError(f"--timeout must be > 0, got {self.timeout_s}")
        if not (self.connect_timeout_s > 0):
            raise ConfigError(f"--connect-timeout must be > 0, got {self.connect_timeout_s}")
        if self.read_timeout_s is not None and not (self.read_timeout_s > 0):
            raise ConfigError(f"--read-timeout must be > 0, got {self.read_timeout_s}")

    @property
    def api_root(self) -> str:
        """The URL ending in /v1 (accepts a base URL given with or without it)."""
        url = self.base_url.rstrip("/")
        return url if url.endswith("/v1") else url + "/v1"

    @property
    def origin(self) -> str:
        m = re.match(r"^(https?://[^/]+)", self.base_url)
        assert m
        return m.group(1)

    @property
    def request_url(self) -> str:
        return self.api_root + ("/chat/completions" if self.api == "chat" else "/completions")

    def public_dict(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "api": self.api,
            "model": self.model,
            "api_key": "set" if self.api_key else None,
            "url_credentials": "set" if self.basic_auth else None,
            "header_names": [k for k, _ in self.headers],
            "timeout_s": self.timeout_s,
            "connect_timeout_s": self.connect_timeout_s,
            "read_timeout_s": self.read_timeout_s,
            "simulated": self.simulated,
        }


@dataclass(frozen=True, slots=True)
class SamplingConfig:
    """What goes into every request body besides the prompt."""

    max_tokens: int | None = None
    ignore_eos: bool = False
    temperature: float | None = None
    top_p: float | None = None
    extra_body: tuple[tuple[str, Any], ...] = ()
    continuous_usage: bool = True  # ask for per-chunk usage (vLLM/SGLang) to count tokens per chunk exactly

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ConfigError(f"--max-tokens must be >= 1, got {self.max_tokens}")
        if self.temperature is not None and self.temperature < 0:
            raise ConfigError(f"--temperature must be >= 0, got {self.temperature}")
        if self.top_p is not None and not (0 < self.top_p <= 1):
            raise ConfigError(f"--top-p must be in (0, 1], got {self.top_p}")


@dataclass(frozen=True, slots=True)
class ScheduleConfig:
    arrival: str = "gamma"  # constant | poisson | gamma | trace
    rate: float = 4.0
    cv: float = 1.0
    seed: int = 0
    trace_path: str | None = None
    trace_speedup: float = 1.0
    trace_format: str = "auto"  # auto | timestamps | burstgpt | azure | mooncake
    trace_start_s: float | None = None
    trace_end_s: float | None = None
    num_requests: int | None = None
    duration_s: float | None = None
    warmup: int = 0
    max_concurrency: int | None = None

    def __post_init__(self) -> None:
        if self.arrival not in ("constant", "poisson", "gamma", "trace"):
            raise ConfigError(f"--arrival must be constant, poisson, gamma or trace, got {self.arrival!r}")
        if self.arrival == "trace" and not self.trace_path:
            raise ConfigError("--arrival trace needs --trace FILE")
        if self.trace_format not in ("auto", "timestamps", "burstgpt", "azure", "mooncake"):
            raise ConfigError(
                f"--trace-format must be auto, timestamps, burstgpt, azure or mooncake, got {self.trace_format!r}"
            )
        if not (self.trace_speedup > 0):
            raise ConfigError(f"--trace-speedup must be > 0, got {self.trace_speedup}")
        if not (self.rate > 0):
            raise ConfigError(f"--rate must be > 0 (or inf), got {self.rate}")
        if not (self.cv >= 0) or math.isinf(self.cv):
            raise ConfigError(f"--cv must be a finite number >= 0, got {self.cv}")
        if self.num_requests is not None and self.num_requests < 1:
            raise ConfigError(f"--num-requests must be >= 1, got {self.num_requests}")
        if self.duration_s is not None and not (0 < self.duration_s < math.inf):
            raise ConfigError(f"--duration must be a finite number of seconds > 0, got {self.duration_s}")
        if self.warmup < 0:
            raise ConfigError(f"--warmup must be >= 0, got {self.warmup}")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ConfigError(f"--max-concurrency must be >= 1, got {self.max_concurrency}")
        if math.isinf(self.rate) and self.num_requests is None:
            raise ConfigError("--rate inf needs --num-requests")


@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    """Where prompts come from: synthetic lengths, a JSONL file, datasets (a weighted mix) or a trace's lengths."""

    kind: str = "synthetic"  # synthetic | file | dataset | trace
    input_len: LengthDist = LengthDist("fixed", 256)
    output_len: LengthDist | None = None  # per-request max_tokens drawn from this, when set
    prefix_len: int = 0  # tokens of a prefix shared by every synthetic prompt
    path: str | None = None
    seed: int = 0
    dataset: DatasetMix | None = None  # --dataset, parsed: e.g. "gsm8k:0.5,aime2024:0.5"
    dataset_paths: tuple[str, ...] = ()  # FILE|DIR or NAME=PATH entries
    repeats: int = 1
    with_replacement: bool = False
    budgets: Budgets | None = None  # --max-tokens, parsed: a sweep or budgets per dataset
    force_output_len: bool = False  # trace lengths: ask for exactly the trace's output length

    def __post_init__(self) -> None:
        if self.kind not in ("synthetic", "file", "dataset", "trace"):
            raise ConfigError(f"unknown workload kind {self.kind!r}")
        if self.repeats < 1:
            raise ConfigError(f"--repeats must be >= 1, got {self.repeats}")

    @property
    def count_is_fixed(self) -> bool:
        """A dataset (items x repeats x budgets) or a ``--max-tokens`` sweep decides how many requests there are;
        any other workload is cycled to the number of arrivals the schedule plans."""
        return self.kind == "dataset" or self.budgets is not None


HISTORY_POLICIES = ("strip-reasoning", "keep-reasoning")


@dataclass(frozen=True, slots=True)
class SecondsDist:
    """A duration distribution in seconds (``--think-time``): fixed, uniform(lo, hi), normal(mean, sd),
    lognormal(median, sigma) or exponential(mean); draws are clipped at 0."""

    kind: str = "fixed"
    a: float = 1.0
    b: float = 0.0

    @classmethod
    def parse(cls, text: str, flag: str) -> SecondsDist:
        kind, a, b = _kind_and_numbers(
            text, flag, ("fixed", "uniform", "normal", "lognormal", "exponential"),
            "S, uniform:LO,HI, normal:MEAN,SD, lognormal:MEDIAN,SIGMA or exponential:MEAN (seconds)",
        )  # fmt: skip
        two = kind in ("uniform", "normal", "lognormal")
        if two != (b is not None):
            raise ConfigError(f"{flag} {text!r}: {kind} takes {'two numbers' if two else 'one number'}")
        dist = cls(kind, a, b or 0.0)
        ok = {
            "fixed": a >= 0,
            "exponential": a >= 0,
            "uniform": 0 <= a <= (b or 0),
            "normal": a >= 0 and (b or 0) >= 0,
            "lognormal": a > 0 and (b or 0) >= 0,
        }[kind]
        if not ok or not all(map(math.isfinite, (dist.a, dist.b))):
            raise ConfigError(f"{flag} {text!r}: seconds must be finite and >= 0 (LO <= HI, MEDIAN > 0)")
        return dist

    def describe(self) -> str:
        if self.kind in ("fixed", "exponential"):
            return f"{self.a:g}" if self.kind == "fixed" else f"exponential:{self.a:g}"
        return f"{self.kind}:{self.a:g},{self.b:g}"


@dataclass(frozen=True, slots=True)
class SessionsConfig:
    """Multi-turn conversations (``loadgen.run.conversation``): ``sessions`` of ``turns`` turns each, whose starts
    follow the run's arrival process; within a session turn k+1 is sent ``think_time`` after turn k ended. The
    history a turn resends keeps the server's answers, with their reasoning stripped or kept (``history``)."""

    sessions: int | None = None  # None: no conversations (single requests)
    turns: LengthDist = LengthDist("fixed", 4)
    think_time: SecondsDist = SecondsDist("fixed", 1.0)
    history: str = "strip-reasoning"
    trace_block_size: int = 512  # tokens per hash id of a Mooncake trace

    def __post_init__(self) -> None:
        if self.sessions is not None and self.sessions < 1:
            raise ConfigError(f"--sessions must be >= 1, got {self.sessions}")
        if self.history not in HISTORY_POLICIES:
            raise ConfigError(f"--history must be one of {', '.join(HISTORY_POLICIES)}, got {self.history!r}")
        if self.trace_block_size < 1:
            raise ConfigError(f"--trace-block-size must be >= 1, got {self.trace_block_size}")

    @property
    def enabled(self) -> bool:
        return self.sessions is not None


@dataclass(frozen=True, slots=True)
class ScrapeConfig:
    enabled: bool = True
    urls: tuple[str, ...] = ()  # empty: the endpoint's origin + /metrics
    interval_s: float = 0.5
    gpu_metrics: str = "auto"  # NVML readings beside /metrics: auto (a local target with a GPU), on, off

    def __post_init__(self) -> None:
        if not (self.interval_s > 0):
            raise ConfigError(f"--scrape-interval must be > 0, got {self.interval_s}")
        if self.gpu_metrics not in ("auto", "on", "off"):
            raise ConfigError(f"--gpu-metrics must be auto, on or off, not {self.gpu_metrics!r}")


@dataclass(frozen=True, slots=True)
class OutputConfig:
    output_dir: str | None = None
    label: str | None = None
    quiet: bool = False
    json: bool = False
    live: bool = True
    report: bool = True  # write report.html at the end of the run (when the report module is available)
    command: tuple[str, ...] = ()  # the command line, secrets masked (set by the CLI; summary.json argv)
    log_level: str = "warning"  # log messages from this level on (the CLI sets up logging with it)
    # --metrics-port: serve loadgen's own live figures for Prometheus (report/exporter.py) on this port, at this
    # address (0.0.0.0 in a container); after the run, until one scrape read the final figures, at most linger_s
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    metrics_linger_s: float = 0.0

    def __post_init__(self) -> None:
        if self.output_dir:
            check_output_dir(self.output_dir)
        if self.metrics_port is not None and not (0 <= self.metrics_port <= 65535):
            raise ConfigError(f"--metrics-port must be a TCP port (0-65535), got {self.metrics_port}")
        if not (self.metrics_linger_s >= 0):
            raise ConfigError(f"--metrics-linger must be >= 0, got {self.metrics_linger_s}")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"--log-level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")


LOG_LEVELS = ("debug", "info", "warning", "error")


def check_output_dir(path: str | os.PathLike[str], flag: str = "--output-dir") -> None:
    """A results folder that cannot be made (the path, or a folder above it, is a file) is a one-line error now,
    not a traceback when the run starts writing."""
    p = Path(path)
    for q in (p, *p.parents):
        if q.exists():
            if not q.is_dir():
                where = "is a file" if q == p else f"is below {q}, which is a file"
                raise ConfigError(f"{flag} {p}: {where}, not a folder")
            return


@dataclass(frozen=True, slots=True)
class AnalysisConfig:
    slo: Slo = Slo()
    straggler_iqr_k: float = 3.0
    send_lag_p99_limit_ms: float = 5.0
    client_cpu_limit: float = 0.9
    max_error_share: float | None = None  # exit 3 when the share of failed measured requests is above this
    loop_lag_p99_limit_ms: float | None = None  # None: the send-lag limit
    loop_lag_max_limit_ms: float = 50.0

    def __post_init__(self) -> None:
        if not (self.straggler_iqr_k > 0):
            raise ConfigError(f"--straggler-k must be > 0, got {self.straggler_iqr_k}")
        if self.max_error_share is not None and not (0 <= self.max_error_share < 1):
            raise ConfigError(f"--max-error-share must be in [0, 1), got {self.max_error_share}")
        if self.loop_lag_p99_limit_ms is not None and not (self.loop_lag_p99_limit_ms > 0):
            raise ConfigError(f"--loop-lag-limit-ms must be > 0, got {self.loop_lag_p99_limit_ms}")
        if not (self.loop_lag_max_limit_ms > 0):
            raise ConfigError(f"--loop-lag-max-ms must be > 0, got {self.loop_lag_max_limit_ms}")


@dataclass(frozen=True, slots=True)
class SimConfig:
    """The built-in simulated server, used when no endpoint is given."""

    profile: str | None = None
    args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SendersConfig:
    """How many senders share the run's plan, and where they run (``loadgen.run.fleet``).

    ``workers`` 1 is one process (today's run); N > 1 spawns N local sender processes; ``None`` is ``--workers
    auto`` (sized from the cores and the planned token events/s). ``ray_address`` (``auto`` or a cluster's
    HOST:PORT) puts the senders on a Ray cluster as actors instead.
    """

    workers: int | None = 1
    ray_address: str | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers must be >= 1 or auto, got {self.workers}")
        if self.ray_address is not None and (not self.ray_address.strip() or "://" in self.ray_address):
            raise ConfigError(
                f"--ray {self.ray_address!r}: expected auto or a cluster's HOST:PORT (Ray Client ray:// is not "
                "supported: run loadgen on a node of the cluster)"
            )

    @property
    def distributed(self) -> bool:
        """More than this one process sends (or may, for ``auto``)."""
        return self.ray_address is not None or self.workers != 1


@dataclass(frozen=True, slots=True)
class RunConfig:
    endpoint: EndpointConfig
    schedule: ScheduleConfig = ScheduleConfig()
    workload: WorkloadConfig = WorkloadConfig()
    sampling: SamplingConfig = SamplingConfig()
    scrape: ScrapeConfig = ScrapeConfig()
    output: OutputConfig = OutputConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    sim: SimConfig = SimConfig()
    senders: SendersConfig = SendersConfig()
    sessions: SessionsConfig = SessionsConfig()

    def with_seed(self, seed: int) -> RunConfig:
        """The same run with another seed for its arrivals and its workload's draws (what ``--seed`` sets)."""
        return replace(
            self, schedule=replace(self.schedule, seed=seed), workload=replace(self.workload, seed=seed)
        )

    def at(self, base_url: str) -> RunConfig:
        """The same run against the server at ``base_url``."""
        return replace(self, endpoint=replace(self.endpoint, base_url=base_url, simulated=False))

    def unattended(self, output_dir: str | os.PathLike[str], label: str | None) -> RunConfig:
        """The same run into ``output_dir``, with no live view and nothing printed: one cell of a sweep or an
        experiment (``--output-dir D --label L --no-live --quiet``)."""
        out = replace(self.output, output_dir=str(output_dir), label=label, live=False, quiet=True)
        return replace(self, output=out)

    def public_dict(self) -> dict[str, Any]:
        """The configuration as written to summary.json: everything except secrets."""
        d = {
            "endpoint": self.endpoint.public_dict(),
            "schedule": asdict(self.schedule),
            "workload": {
                **asdict(self.workload),
                "dataset": str(self.workload.dataset) if self.workload.dataset else None,
                "budgets": str(self.workload.budgets) if self.workload.budgets else None,
                "input_len": self.workload.input_len.describe(),
                "output_len": self.workload.output_len.describe() if self.workload.output_len else None,
            },
            "sampling": {**asdict(self.sampling), "extra_body": dict(self.sampling.extra_body)},
            "scrape": {**asdict(self.scrape), "urls": [Scrubber().text(u) for u in self.scrape.urls]},
            "output": {k: v for k, v in asdict(self.output).items() if k not in ("command", "log_level")},
            "analysis": {
                "slo_ms": self.analysis.slo.as_dict(),
                "straggler_iqr_k": self.analysis.straggler_iqr_k,
                "send_lag_p99_limit_ms": self.analysis.send_lag_p99_limit_ms,
                "client_cpu_limit": self.analysis.client_cpu_limit,
                "max_error_share": self.analysis.max_error_share,
                "loop_lag_p99_limit_ms": self.analysis.loop_lag_p99_limit_ms,
                "loop_lag_max_limit_ms": self.analysis.loop_lag_max_limit_ms,
            },
            "sim": asdict(self.sim),
            "senders": {"workers": self.senders.workers or "auto", "ray": self.senders.ray_address},
        }
        if self.sessions.enabled or self.schedule.trace_format == "mooncake":
            d["sessions"] = {
                **asdict(self.sessions),
                "turns": self.sessions.turns.describe(),
                "think_time": self.sessions.think_time.describe(),
            }
        if math.isinf(self.schedule.rate):
            d["schedule"]["rate"] = "inf"
        return d
