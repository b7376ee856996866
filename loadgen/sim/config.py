"""SimConfig: every knob of the simulated server, named profiles, and loading from TOML and ``--set`` overrides.

Precedence (lowest to highest): the profile's defaults, the TOML file (``--config``), explicit ``--set name=value``
pairs. All times in the cost model are in microseconds so that a profile reads like a spec sheet.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REASONING_FIELDS = ("reasoning", "reasoning_content")
METRICS_DIALECTS = ("vllm", "sglang", "tgi")
SPEC_METHODS = ("off", "ngram")


@dataclass(frozen=True, slots=True)
class SimConfig:
    """One simulated model server. Defaults are the ``reasoning-7b`` profile."""

    profile: str = "reasoning-7b"
    model_name: str = "sim/reasoning-7b"
    seed: int = 0
    max_model_len: int = 8192

    # scheduler (vLLM names)
    max_num_seqs: int = 128
    max_num_batched_tokens: int = 2048
    block_size: int = 16
    num_blocks: int = 1536
    enable_prefix_caching: bool = True
    # vLLM's --enable-prompt-tokens-details: the final usage says how many prompt tokens were cached (when any)
    enable_prompt_tokens_details: bool = False

    # cost model of one engine step, microseconds
    step_overhead_us: float = 4000.0
    prefill_token_us: float = 12.0
    decode_seq_us: float = 40.0
    context_token_us: float = 0.03  # per KV token attended by every scheduled sequence

    # speculative decoding
    spec_method: str = "off"
    num_speculative_tokens: int = 3
    spec_acceptance: float = 0.6  # probability each successive draft token is accepted

    # output length model
    reasoning: bool = True
    reasoning_median: float = 260.0  # median reasoning tokens at difficulty 0.5
    reasoning_sigma: float = 0.9  # lognormal shape: the heavy tail that makes stragglers
    reasoning_difficulty_scale: float = 2.5  # median(d) = median * scale ** (2d - 1)
    answer_median: float = 40.0
    answer_sigma: float = 0.5
    accuracy_easy: float = 0.95  # probability of a correct boxed answer at difficulty 0, full reasoning
    accuracy_hard: float = 0.25  # ... at difficulty 1

    # wire format
    reasoning_field: str = "reasoning"
    metrics_dialect: str = "vllm"

    # faults: shares in [0, 1] drawn per request, times in milliseconds
    fault_429: float = 0.0
    fault_500: float = 0.0
    fault_503: float = 0.0
    fault_cut: float = 0.0  # stream closed without the terminating chunk, half-way through
    fault_stall: float = 0.0
    stall_ms: float = 2000.0
    fault_slow_first_byte: float = 0.0
    slow_first_byte_ms: float = 1000.0
    fault_malformed: float = 0.0  # one chunk of the stream carries invalid JSON
    fault_stream_error: float = (
        0.0  # HTTP 200, then an in-stream {"error": ...} event and [DONE], as vLLM does
    )

    ground_truth: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.reasoning_field not in REASONING_FIELDS:
            problems.append(f"reasoning_field must be one of {REASONING_FIELDS}")
        if self.metrics_dialect not in METRICS_DIALECTS:
            problems.append(f"metrics_dialect must be one of {METRICS_DIALECTS}")
        if self.spec_method not in SPEC_METHODS:
            problems.append(f"spec_method must be one of {SPEC_METHODS}")
        for name in ("max_num_seqs", "max_num_batched_tokens", "block_size", "num_blocks", "max_model_len"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        for name in ("fault_429", "fault_500", "fault_503", "fault_cut", "fault_stall", "fault_slow_first_byte",
                     "fault_malformed", "fault_stream_error", "spec_acceptance"):  # fmt: skip
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be in [0, 1]")
        if self.fault_429 + self.fault_500 + self.fault_503 > 1.0:
            problems.append("fault_429 + fault_500 + fault_503 must be <= 1")
        if self.num_blocks * self.block_size < self.max_num_batched_tokens:
            problems.append("the KV cache must hold at least max_num_batched_tokens tokens")
        if problems:
            raise ValueError("invalid sim config: " + "; ".join(problems))

    @property
    def spec_enabled(self) -> bool:
        return self.spec_method != "off" and self.num_speculative_tokens > 0


PROFILES: dict[str, dict[str, Any]] = {
    # A 7B reasoning model on one mid-range GPU, scaled so a 100-request run finishes in about a minute.
    "reasoning-7b": {},
    # The same engine serving a chat model: no reasoning, longer answers.
    "chat-7b": {
        "model_name": "sim/chat-7b",
        "reasoning": False,
        "answer_median": 150.0,
        "answer_sigma": 0.7,
    },
    # A small model on a CPU: slow steps, small batch and KV cache, short answers.
    "tiny-cpu": {
        "model_name": "sim/tiny-cpu",
        "max_model_len": 2048,
        "max_num_seqs": 16,
        "max_num_batched_tokens": 512,
        "num_blocks": 256,
        "step_overhead_us": 15000.0,
        "prefill_token_us": 60.0,
        "decode_seq_us": 400.0,
        "reasoning_median": 120.0,
        "answer_median": 25.0,
    },
}

_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(SimConfig)}


def _coerce(name: str, value: Any) -> Any:
    """Turn a TOML or ``--set`` value into the field's type; strings from the CLI are parsed."""
    if name not in _FIELD_TYPES:
        raise ValueError(f"unknown sim setting {name!r}; known: {', '.join(sorted(_FIELD_TYPES))}")
    kind = _FIELD_TYPES[name]
    if not isinstance(value, str):
        if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value
    if kind == "bool":
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{name}: expected a boolean, got {value!r}")
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "str | None":
        return value or None
    return value


def parse_set(pairs: list[str]) -> dict[str, Any]:
    """``["name=value", ...]`` -> typed overrides; a malformed pair raises ValueError naming it."""
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--set expects name=value, got {pair!r}")
        name = name.strip().replace("-", "_")
        out[name] = _coerce(name, value.strip())
    return out


def load_config(
    profile: str | None = None,
    file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> SimConfig:
    """Build a validated SimConfig: profile defaults, then the TOML file, then overrides.

    The profile is the explicit argument, else the file's ``profile`` key, else ``reasoning-7b``. The file may hold
    the settings at top level or under a ``[sim]`` table.
    """
    data: dict[str, Any] = {}
    if file is not None:
        with open(file, "rb") as fh:
            raw = tomllib.load(fh)
        data = {k.replace("-", "_"): v for k, v in raw.get("sim", raw).items()}
    profile = profile or data.pop("profile", None) or "reasoning-7b"
    data.pop("profile", None)
    if profile not in PROFILES:
        raise ValueError(f"unknown sim profile {profile!r}; known: {', '.join(PROFILES)}")
    values: dict[str, Any] = {"profile": profile, **PROFILES[profile]}
    values.update({k: _coerce(k, v) for k, v in data.items()})
    if overrides:
        values.update({k: _coerce(k, v) for k, v in overrides.items()})
    return SimConfig(**values)
