"""The engine-neutral launch spec: what to serve and with which optimisations, validated once.

A spec says *what* (model, GPUs, KV-cache dtype, prefix caching, speculation, ...); ``engines.py``
says *how* each engine spells it. Specs come from TOML, either one spec per file (top-level keys) or
a preset file with a ``[defaults]`` table merged under each ``[specs.<name>]`` table, so an experiment
can name the configurations it compares::

    [defaults]
    engine = "vllm"
    model = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
    served_name = "r1-distill-qwen-7b"

    [specs.fp8-kv]
    kv_cache_dtype = "fp8_e4m3"

    [specs.ngram]
    speculative = { method = "ngram", num_tokens = 4 }

Every problem is one line in a ``LaunchSpecError`` naming the spec and the key.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

ENGINES = ("vllm", "sglang", "tgi", "llamacpp")
DTYPES = ("auto", "bfloat16", "float16", "float32")
WEIGHT_QUANTIZATIONS = (
    "none",
    "fp8",
    "gptq",
    "awq",
    "compressed-tensors",
    "bitsandbytes-4bit",
    "bitsandbytes-8bit",
)
KV_CACHE_DTYPES = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2", "f16", "q8_0", "q4_0")
LLAMACPP_KV_CACHE_DTYPES = (
    "f16",
    "q8_0",
    "q4_0",
)  # llama.cpp's cache types (-ctk/-ctv); no other engine has them
SPECULATIVE_METHODS = ("none", "ngram", "eagle", "eagle3", "draft_model")

# Pinned official images; override per spec with ``image``/``image_tag`` or LOADGEN_<ENGINE>_IMAGE_TAG.
# The tags are the versions whose flag tables/parsers the tests check the renderings against.
DEFAULT_IMAGES = {
    "vllm": ("vllm/vllm-openai", "v0.32.0"),
    "sglang": ("lmsysorg/sglang", "v0.5.23"),
    "tgi": ("ghcr.io/huggingface/text-generation-inference", "3.3.7"),
    # llama.cpp's official server image (CUDA build; ``server`` is the CPU one). Its releases are build numbers,
    # not the llama-cpp-python version whose flag table the renderings are checked against: pin a tag per site.
    "llamacpp": ("ghcr.io/ggml-org/llama.cpp", "server-cuda"),
}
# The port each engine's own server listens on inside its container (docker maps host port -> this).
CONTAINER_PORTS = {"vllm": 8000, "sglang": 30000, "tgi": 80, "llamacpp": 8080}

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|API_KEY|ACCESS_KEY", re.I)


class LaunchSpecError(ValueError):
    """A launch spec is malformed or inconsistent (setup error: one line, exit 2)."""


@dataclass(frozen=True)
class Speculative:
    """Speculative decoding. ``num_tokens`` is the number of tokens proposed per step."""

    method: str = "none"
    num_tokens: int | None = None
    ngram_min: int | None = None  # n-gram prompt-lookup window (vLLM prompt_lookup_min/max)
    ngram_max: int | None = None
    draft_model: str | None = None  # EAGLE head / draft model repo id

    @property
    def enabled(self) -> bool:
        return self.method != "none"


@dataclass(frozen=True)
class LaunchSpec:
    """One engine launch, engine-neutral. Build with ``LaunchSpec.from_dict``/``load_spec`` to validate."""

    model: str
    engine: str = "vllm"
    name: str = "default"  # the configuration's label in an experiment
    served_name: str | None = None  # name clients send as "model"; defaults to ``model``
    host: str = "0.0.0.0"
    port: int = 8000  # host port
    gpus: tuple[int, ...] = ()  # device ids; () = engine default / CUDA_VISIBLE_DEVICES
    tensor_parallel: int = 1
    max_model_len: int | None = None
    gpu_memory_fraction: float | None = None
    dtype: str = "auto"
    quantization: str = "none"  # weight quantisation
    kv_cache_dtype: str = "auto"
    prefix_caching: bool = True
    max_num_seqs: int | None = None  # requests batched at once (llama.cpp: its slots, -np)
    flash_attention: bool | None = None  # None: the engine's choice (llama.cpp: -fa on/off)
    speculative: Speculative = field(default_factory=Speculative)
    reasoning_parser: str | None = None  # e.g. "deepseek_r1"; spelled per engine when rendered
    metrics: bool = True
    trust_remote_code: bool = False
    image: str | None = None  # None: the engine's official image
    image_tag: str | None = None  # None: the pinned tag
    shm_size: str = "16g"
    hf_cache: str = "~/.cache/huggingface"  # host folder mounted as the container's HF cache
    hf_token_env: str = "HF_TOKEN"  # NAME of the environment variable holding the token (never its value)
    extra_args: tuple[str, ...] = ()  # appended verbatim; engine-specific by nature
    env: tuple[tuple[str, str], ...] = ()  # extra environment for the engine process/container (no secrets)
    pass_env: tuple[
        str, ...
    ] = ()  # NAMES of variables forwarded from the caller's environment (secrets go here)

    # ------------------------------------------------------------------ derived
    @property
    def model_name(self) -> str:
        """What clients put in the request's ``model`` field."""
        return self.served_name or self.model

    @property
    def image_ref(self) -> str:
        image, tag = DEFAULT_IMAGES[self.engine]
        return f"{self.image or image}:{self.image_tag or tag}"

    @property
    def env_dict(self) -> dict[str, str]:
        return dict(self.env)

    def with_engine(self, engine: str) -> LaunchSpec:
        """The same configuration on another engine (its image/tag reset to that engine's pinned one
        unless they were the defaults anyway)."""
        if engine not in ENGINES:
            raise LaunchSpecError(
                f"spec {self.name!r}: engine must be one of {', '.join(ENGINES)}, not {engine!r}"
            )
        return replace(self, engine=engine, image=None, image_tag=None) if engine != self.engine else self

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_dict(cls, data: dict[str, Any], *, name: str | None = None) -> LaunchSpec:
        data = dict(data)
        label = name or str(data.get("name", "default"))
        where = f"launch spec {label!r}"
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LaunchSpecError(
                f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        if name is not None:
            data["name"] = name
        if "model" not in data:
            raise LaunchSpecError(f"{where}: 'model' is required (a Hugging Face repo id or a local path)")

        spec_data = data.get("speculative", {})
        if isinstance(spec_data, Speculative):
            spec_obj = spec_data
        elif isinstance(spec_data, dict):
            sknown = {f.name for f in fields(Speculative)}
            bad = sorted(set(spec_data) - sknown)
            if bad:
                raise LaunchSpecError(
                    f"{where}: unknown speculative key(s) {', '.join(bad)}; known: {', '.join(sorted(sknown))}"
                )
            spec_obj = Speculative(**spec_data)
        else:
            raise LaunchSpecError(
                f"{where}: 'speculative' must be a table, e.g. {{ method = \"ngram\", num_tokens = 4 }}"
            )
        data["speculative"] = spec_obj

        env = data.get("env", {})
        if isinstance(env, dict):
            env = tuple(sorted((str(k), str(v)) for k, v in env.items()))
        elif not isinstance(env, tuple):
            raise LaunchSpecError(f"{where}: 'env' must be a table of NAME = \"value\"")
        data["env"] = env
        for key in ("gpus", "extra_args", "pass_env"):
            if key in data:
                value = data[key]
                if isinstance(value, str):
                    value = [v for v in re.split(r"[,\s]+", value) if v] if key == "gpus" else value.split()
                if not isinstance(value, list | tuple):
                    raise LaunchSpecError(f"{where}: {key!r} must be a list")
                data[key] = tuple(int(v) if key == "gpus" else str(v) for v in value)
        spec = cls(**data)
        spec.validate()
        return spec

    def validate(self) -> None:
        """Raise ``LaunchSpecError`` (one line) on the first problem. Engine support is checked at render time."""
        where = f"launch spec {self.name!r}"

        def fail(msg: str) -> None:
            raise LaunchSpecError(f"{where}: {msg}")

        def one_of(key: str, allowed: tuple[str, ...]) -> None:
            value = getattr(self, key)
            if value not in allowed:
                fail(f"{key} must be one of {', '.join(allowed)}, not {value!r}")

        if not isinstance(self.model, str) or not self.model.strip():
            fail("model must be a non-empty string")
        one_of("engine", ENGINES)
        one_of("dtype", DTYPES)
        one_of("quantization", WEIGHT_QUANTIZATIONS)
        one_of("kv_cache_dtype", KV_CACHE_DTYPES)
        for key in ("prefix_caching", "metrics", "trust_remote_code"):
            if not isinstance(getattr(self, key), bool):
                fail(f"{key} must be true or false, not {getattr(self, key)!r}")
        if not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            fail(f"port must be an integer in 1..65535, not {self.port!r}")
        if self.max_num_seqs is not None and (
            not isinstance(self.max_num_seqs, int)
            or isinstance(self.max_num_seqs, bool)
            or self.max_num_seqs < 1
        ):
            fail(f"max_num_seqs must be an integer >= 1, not {self.max_num_seqs!r}")
        if self.flash_attention is not None and not isinstance(self.flash_attention, bool):
            fail(f"flash_attention must be true or false, not {self.flash_attention!r}")
        if not isinstance(self.tensor_parallel, int) or self.tensor_parallel < 1:
            fail(f"tensor_parallel must be an integer >= 1, not {self.tensor_parallel!r}")
        if any(g < 0 for g in self.gpus) or len(set(self.gpus)) != len(self.gpus):
            fail(f"gpus must be distinct non-negative device ids, not {list(self.gpus)}")
        if self.gpus and len(self.gpus) < self.tensor_parallel:
            fail(
                f"tensor_parallel={self.tensor_parallel} needs at least that many gpus, got {list(self.gpus)}"
            )
        if self.max_model_len is not None and (
            not isinstance(self.max_model_len, int) or self.max_model_len < 16
        ):
            fail(f"max_model_len must be an integer >= 16, not {self.max_model_len!r}")
        f = self.gpu_memory_fraction
        if f is not None and (not isinstance(f, int | float) or isinstance(f, bool) or not 0 < f <= 1):
            fail(f"gpu_memory_fraction must be in (0, 1], not {f!r}")
        if self.served_name is not None and not self.served_name.strip():
            fail("served_name must not be empty")
        if self.reasoning_parser is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", self.reasoning_parser):
            fail(f"reasoning_parser {self.reasoning_parser!r} is not a parser name")
        if not _ENV_NAME.match(self.hf_token_env):
            fail(
                f"hf_token_env must be the NAME of an environment variable (e.g. HF_TOKEN), not {self.hf_token_env!r}"
            )
        self._validate_env(fail)
        if not re.fullmatch(r"\d+[bkmg]?", self.shm_size):
            fail(f"shm_size must look like 16g, not {self.shm_size!r}")
        self._validate_speculative(fail)

    def _validate_env(self, fail: Any) -> None:
        """Environment names only: a secret's value never sits in a spec (its NAME goes in pass_env)."""
        for k, _ in self.env:
            if not _ENV_NAME.match(k):
                fail(f"env key {k!r} is not a valid environment variable name")
            if _SECRET_NAME.search(k):
                fail(
                    f"env key {k!r} looks like a secret: never write its value in a spec, list its NAME in pass_env"
                )
        for k in self.pass_env:
            if not _ENV_NAME.match(k):
                fail(f"pass_env entry {k!r} is not a valid environment variable name")

    def _validate_speculative(self, fail: Any) -> None:
        """The speculative-decoding method and the parameters that go with it."""
        s = self.speculative
        if s.method not in SPECULATIVE_METHODS:
            fail(f"speculative.method must be one of {', '.join(SPECULATIVE_METHODS)}, not {s.method!r}")
        if not s.enabled:
            if any(v is not None for v in (s.num_tokens, s.ngram_min, s.ngram_max, s.draft_model)):
                fail("speculative parameters are set but speculative.method is 'none'")
            return
        if not isinstance(s.num_tokens, int) or isinstance(s.num_tokens, bool) or s.num_tokens < 1:
            fail(
                f"speculative.num_tokens must be an integer >= 1 for method {s.method!r}, not {s.num_tokens!r}"
            )
        if s.method == "ngram":
            if s.draft_model is not None:
                fail("speculative.draft_model makes no sense with method 'ngram'")
            for key in ("ngram_min", "ngram_max"):
                v = getattr(s, key)
                if v is not None and (not isinstance(v, int) or v < 1):
                    fail(f"speculative.{key} must be an integer >= 1, not {v!r}")
            if s.ngram_min is not None and s.ngram_max is not None and s.ngram_min > s.ngram_max:
                fail(f"speculative.ngram_min ({s.ngram_min}) must be <= ngram_max ({s.ngram_max})")
        else:
            if s.ngram_min is not None or s.ngram_max is not None:
                fail(f"speculative.ngram_min/ngram_max only apply to method 'ngram', not {s.method!r}")
            if not s.draft_model:
                fail(f"speculative.draft_model (a repo id or path) is required for method {s.method!r}")


def load_specs(path: str | Path, *, overrides: dict[str, Any] | None = None) -> dict[str, LaunchSpec]:
    """All specs in a TOML file, by name, in file order. ``overrides`` (e.g. from the CLI) win over the file."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise LaunchSpecError(f"launch spec file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise LaunchSpecError(f"launch spec file {path}: invalid TOML: {exc}") from None
    overrides = overrides or {}
    if "specs" in doc:
        defaults = doc.get("defaults", {})
        extra = sorted(set(doc) - {"specs", "defaults", "description"})
        if extra:
            raise LaunchSpecError(f"launch spec file {path}: unexpected top-level key(s) {', '.join(extra)}")
        if not isinstance(doc["specs"], dict) or not doc["specs"]:
            raise LaunchSpecError(f"launch spec file {path}: [specs.<name>] tables expected")
        out = {}
        for name, table in doc["specs"].items():
            merged = _merge(defaults, table)
            merged.pop("name", None)
            out[name] = LaunchSpec.from_dict(_merge(merged, overrides), name=name)
        return out
    doc.pop("description", None)
    spec = LaunchSpec.from_dict(_merge(doc, overrides), name=doc.get("name", path.stem))
    return {spec.name: spec}


def load_spec(
    path: str | Path, name: str | None = None, *, overrides: dict[str, Any] | None = None
) -> LaunchSpec:
    """One spec from a file; ``name`` picks one of a preset file's specs (required when it has several)."""
    specs = load_specs(path, overrides=overrides)
    if name is None:
        if len(specs) != 1:
            raise LaunchSpecError(f"{path} holds {len(specs)} specs ({', '.join(specs)}); pick one by name")
        return next(iter(specs.values()))
    try:
        return specs[name]
    except KeyError:
        raise LaunchSpecError(f"{path} has no spec {name!r}; it has {', '.join(specs)}") from None


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
