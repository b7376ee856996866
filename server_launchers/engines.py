"""Render a ``LaunchSpec`` per engine: engine flags, the bare host command line, the ``docker run`` command.

Spellings come from the engines' sources at the pinned versions (vLLM 0.32.0: its real parser is run by
the tests; SGLang 0.5.23 and TGI 3.3.7: ``flags/*.json``, extracted by ``flags/extract.py``; llama.cpp: the help
of the ``llama-server`` that ``local_llamacpp`` builds, ``flags/llamacpp-0.3.36.json``, and that binary itself
in the e2e tier).
A combination an engine cannot do raises ``UnsupportedOnEngine`` naming the engine, the option and
what to do instead; nothing is silently dropped or approximated, except where noted in ``MAPPING``.

Option map (engine-neutral -> engine):

=====================  ==========================  ================================  ===============================
spec                   vLLM 0.32                   SGLang 0.5.23                     TGI 3.3.7
=====================  ==========================  ================================  ===============================
model                  --model                     --model-path                      --model-id
served_name            --served-model-name         --served-model-name               (none; TGI accepts any name)
tensor_parallel        --tensor-parallel-size      --tp-size                         --num-shard
max_model_len          --max-model-len             --context-length                  --max-total-tokens (+input L-1)
gpu_memory_fraction    --gpu-memory-utilization    --mem-fraction-static             --cuda-memory-fraction
dtype                  --dtype                     --dtype                           --dtype (bfloat16|float16)
quantization fp8       --quantization fp8          --quantization fp8                --quantize fp8
quantization gptq      --quantization gptq_marlin  --quantization gptq_marlin        --quantize gptq
quantization awq       --quantization awq_marlin   --quantization awq_marlin         --quantize awq
compressed-tensors     --quantization compressed-  same                              --quantize compressed-tensors
                       tensors
bitsandbytes-4bit      unsupported (0.32 has no   --quantization bitsandbytes       --quantize bitsandbytes-nf4
                       bitsandbytes method)
bitsandbytes-8bit      unsupported                 unsupported                       --quantize bitsandbytes
kv_cache_dtype fp8     --kv-cache-dtype fp8        --kv-cache-dtype fp8_e4m3         --kv-cache-dtype fp8_e4m3fn
kv fp8_e4m3/fp8_e5m2   same spelling               same spelling                     fp8_e4m3fn / fp8_e5m2
prefix_caching         --[no-]enable-prefix-cach.  off: --disable-radix-cache        env PREFIX_CACHING=1|0
speculative ngram k    --speculative-config JSON   --speculative-algorithm NGRAM     --speculate k
                       {"method":"ngram",...}      --speculative-num-draft-tokens    (ngram_min/max: unsupported)
                                                   k+1 --speculative-ngram-max-bfs-
                                                   breadth 1 (min/max: unsupported)
speculative eagle(3)   {"method":"eagle(3)",...}   EAGLE/EAGLE3 + draft path         unsupported
speculative draft      {"method":"draft_model"}    STANDALONE + draft path           unsupported
reasoning_parser       --reasoning-parser x_y      --reasoning-parser x-y            unsupported
metrics                on by default (off:         --enable-metrics                  always on (/metrics)
                       --disable-log-stats)
=====================  ==========================  ================================  ===============================

llama.cpp's ``llama-server`` serves one GGUF file: ``model`` ending in ``.gguf`` is a path (``-m``), anything else
a Hugging Face repo (``-hf org/name[:QUANT]``); weights' dtype and quantisation are the file's, so those settings
are refused. served_name -> ``--alias``; tensor_parallel N > 1 -> ``--split-mode tensor`` over the visible GPUs;
max_model_len -> ``-c`` (the whole cache, shared by the slots); KV dtypes fp8* are refused (llama.cpp quantises
the cache to q8_0/q4_0: ``extra_args``); prefix caching off -> ``--no-cache-prompt``; speculative ngram ->
``--spec-type ngram-simple --spec-draft-n-max k``, draft_model -> ``--spec-type draft-simple -md PATH``, eagle3 ->
``draft-eagle3``; reasoning_parser deepseek_r1 -> ``--jinja --reasoning-format deepseek``; metrics -> ``--metrics
--slots``; GPUs -> ``-ngl all``; gpu_memory_fraction is refused (llama.cpp places layers, not a memory share).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass, field, replace

from server_launchers.flags import flag_table
from server_launchers.spec import CONTAINER_PORTS, LLAMACPP_KV_CACHE_DTYPES, LaunchSpec, LaunchSpecError

SGLANG_VERSION = "0.5.23"
TGI_VERSION = "3.3.7"
VLLM_VERSION = "0.32.0"

# Paths every engine serves on its HTTP port (SGLang: /metrics only with --enable-metrics, which we set).
HEALTH_PATH = "/health"
MODELS_PATH = "/v1/models"
METRICS_PATH = "/metrics"


class UnsupportedOnEngine(LaunchSpecError):
    """The spec asks for something this engine (at the pinned version) cannot do."""

    def __init__(self, engine: str, spec_name: str, what: str, hint: str = ""):
        msg = f"launch spec {spec_name!r}: {what} is not possible on {engine}"
        super().__init__(msg + (f"; {hint}" if hint else ""))
        self.engine = engine


@dataclass(frozen=True)
class Rendered:
    """A command plus the environment it needs (names only for secrets: see ``pass_env``)."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    pass_env: tuple[str, ...] = ()  # variables taken from the caller's environment, by name

    def shell(self) -> str:
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        return (prefix + " " if prefix else "") + shlex.join(self.argv)


# --------------------------------------------------------------------------------------- vLLM
_VLLM_QUANT = {"fp8": "fp8", "gptq": "gptq_marlin", "awq": "awq_marlin", "compressed-tensors": "compressed-tensors"}  # fmt: skip


def _vllm_speculative_config(spec: LaunchSpec) -> dict:
    s = spec.speculative
    cfg: dict = {"method": s.method, "num_speculative_tokens": s.num_tokens}
    if s.method == "ngram":
        if s.ngram_max is not None:
            cfg["prompt_lookup_max"] = s.ngram_max
        if s.ngram_min is not None:
            cfg["prompt_lookup_min"] = s.ngram_min
    else:
        cfg["model"] = s.draft_model
    return cfg


def _refuse_llamacpp_only(spec: LaunchSpec, engine: str) -> None:
    """llama.cpp's own settings (its quantised KV caches, the flash-attention switch) on another engine."""
    if spec.kv_cache_dtype in LLAMACPP_KV_CACHE_DTYPES:
        raise UnsupportedOnEngine(engine, spec.name, f"KV-cache dtype {spec.kv_cache_dtype!r}",
                                  "f16/q8_0/q4_0 caches are llama.cpp's; use auto or fp8")  # fmt: skip
    if spec.flash_attention is not None:
        raise UnsupportedOnEngine(engine, spec.name, "flash_attention",
                                  "the engine picks its attention backend itself")  # fmt: skip


def vllm_engine_args(spec: LaunchSpec) -> list[str]:
    """vLLM flags for the spec's optimisations, without model/host/port/served name (those differ between
    docker, host and the local CPU launcher, which sets them itself)."""
    _refuse_llamacpp_only(spec, "vllm")
    args: list[str] = []
    if spec.max_num_seqs is not None:
        args += ["--max-num-seqs", str(spec.max_num_seqs)]
    if spec.tensor_parallel != 1:
        args += ["--tensor-parallel-size", str(spec.tensor_parallel)]
    if spec.max_model_len is not None:
        args += ["--max-model-len", str(spec.max_model_len)]
    if spec.gpu_memory_fraction is not None:
        args += ["--gpu-memory-utilization", str(spec.gpu_memory_fraction)]
    if spec.dtype != "auto":
        args += ["--dtype", spec.dtype]
    if spec.quantization != "none":
        if spec.quantization not in _VLLM_QUANT:
            raise UnsupportedOnEngine(
                "vllm", spec.name, f"weight quantization {spec.quantization!r}",
                f"vLLM {VLLM_VERSION} has no bitsandbytes method (its QUANTIZATION_METHODS); use fp8, gptq, awq or a "
                "compressed-tensors checkpoint",
            )  # fmt: skip
        args += ["--quantization", _VLLM_QUANT[spec.quantization]]
    if spec.kv_cache_dtype != "auto":
        args += ["--kv-cache-dtype", spec.kv_cache_dtype]
    args.append("--enable-prefix-caching" if spec.prefix_caching else "--no-enable-prefix-caching")
    if spec.speculative.enabled:
        args += ["--speculative-config", json.dumps(_vllm_speculative_config(spec), separators=(",", ":"))]
    if spec.reasoning_parser:
        args += ["--reasoning-parser", spec.reasoning_parser.replace("-", "_")]
    if not spec.metrics:
        args.append("--disable-log-stats")  # vLLM has no switch for /metrics alone; this stops stat logging
    if spec.trust_remote_code:
        args.append("--trust-remote-code")
    return args + list(spec.extra_args)


def local_vllm_args(spec: LaunchSpec) -> list[str]:
    """``extra_args`` for ``server_launchers.local_vllm.LocalVllmServer`` (which sets host, port, model,
    served name and --enforce-eager itself). GPU-only settings of the spec do not apply on CPU."""
    if spec.engine != "vllm":
        raise UnsupportedOnEngine(
            spec.engine, spec.name, "the local CPU route", "only vLLM runs locally on CPU"
        )
    return vllm_engine_args(spec)


def _vllm_serve_args(spec: LaunchSpec, host: str, port: int) -> list[str]:
    args = ["--model", spec.model, "--host", host, "--port", str(port)]
    if spec.served_name:
        args += ["--served-model-name", spec.served_name]
    return args + vllm_engine_args(spec)


# --------------------------------------------------------------------------------------- SGLang
_SGLANG_QUANT = {
    "fp8": "fp8",
    "gptq": "gptq_marlin",
    "awq": "awq_marlin",
    "compressed-tensors": "compressed-tensors",
    "bitsandbytes-4bit": "bitsandbytes",
}
_SGLANG_KV = {"fp8": "fp8_e4m3", "fp8_e4m3": "fp8_e4m3", "fp8_e5m2": "fp8_e5m2"}
_SGLANG_SPEC = {"ngram": "NGRAM", "eagle": "EAGLE", "eagle3": "EAGLE3", "draft_model": "STANDALONE"}


def _sglang_reasoning_parser(spec: LaunchSpec) -> str:
    choices = flag_table("sglang", SGLANG_VERSION)["--reasoning-parser"]["choices"] or []
    for candidate in (spec.reasoning_parser, spec.reasoning_parser.replace("_", "-")):
        if candidate in choices:
            return candidate
    raise UnsupportedOnEngine(
        "sglang", spec.name, f"reasoning parser {spec.reasoning_parser!r}",
        f"SGLang {SGLANG_VERSION} knows {', '.join(choices)}",
    )  # fmt: skip


def sglang_engine_args(spec: LaunchSpec) -> list[str]:
    args: list[str] = []
    if spec.tensor_parallel != 1:
        args += ["--tp-size", str(spec.tensor_parallel)]
    if spec.max_model_len is not None:
        args += ["--context-length", str(spec.max_model_len)]
    if spec.gpu_memory_fraction is not None:
        args += ["--mem-fraction-static", str(spec.gpu_memory_fraction)]
    if spec.dtype != "auto":
        args += ["--dtype", spec.dtype]
    if spec.quantization != "none":
        if spec.quantization not in _SGLANG_QUANT:
            raise UnsupportedOnEngine(
                "sglang", spec.name, f"weight quantization {spec.quantization!r}",
                "SGLang loads bitsandbytes 4-bit in flight; 8-bit needs a pre-quantized checkpoint",
            )  # fmt: skip
        args += ["--quantization", _SGLANG_QUANT[spec.quantization]]
    _refuse_llamacpp_only(spec, "sglang")
    if spec.max_num_seqs is not None:
        args += ["--max-running-requests", str(spec.max_num_seqs)]
    if spec.kv_cache_dtype != "auto":
        args += ["--kv-cache-dtype", _SGLANG_KV[spec.kv_cache_dtype]]
    if not spec.prefix_caching:
        args.append("--disable-radix-cache")
    s = spec.speculative
    if s.enabled:
        args += ["--speculative-algorithm", _SGLANG_SPEC[s.method]]
        if s.method == "ngram":
            if s.ngram_min is not None or s.ngram_max is not None:
                raise UnsupportedOnEngine(
                    "sglang", spec.name, "speculative.ngram_min/ngram_max (a prompt-lookup window)",
                    "SGLang's n-gram drafter is a trie without a match window; drop them or pass "
                    "--speculative-ngram-max-trie-depth in extra_args",
                )  # fmt: skip
            # SGLang counts the verified root token among the draft tokens; breadth 1 makes the draft a
            # chain of num_tokens proposals, like vLLM's num_speculative_tokens.
            args += ["--speculative-num-draft-tokens", str(s.num_tokens + 1)]
            args += ["--speculative-ngram-max-bfs-breadth", "1"]
        else:
            args += ["--speculative-draft-model-path", str(s.draft_model)]
            args += ["--speculative-num-steps", str(s.num_tokens), "--speculative-eagle-topk", "1"]
            args += ["--speculative-num-draft-tokens", str(s.num_tokens + 1)]
    if spec.reasoning_parser:
        args += ["--reasoning-parser", _sglang_reasoning_parser(spec)]
    if spec.metrics:
        args.append("--enable-metrics")
    if spec.trust_remote_code:
        args.append("--trust-remote-code")
    return args + list(spec.extra_args)


def _sglang_serve_args(spec: LaunchSpec, host: str, port: int) -> list[str]:
    args = ["--model-path", spec.model, "--host", host, "--port", str(port)]
    if spec.served_name:
        args += ["--served-model-name", spec.served_name]
    return args + sglang_engine_args(spec)


# --------------------------------------------------------------------------------------- TGI
_TGI_QUANT = {
    "fp8": "fp8", "gptq": "gptq", "awq": "awq", "compressed-tensors": "compressed-tensors",
    "bitsandbytes-4bit": "bitsandbytes-nf4", "bitsandbytes-8bit": "bitsandbytes",
}  # fmt: skip
_TGI_KV = {"fp8": "fp8_e4m3fn", "fp8_e4m3": "fp8_e4m3fn", "fp8_e5m2": "fp8_e5m2"}


def tgi_engine_args(spec: LaunchSpec) -> list[str]:
    args: list[str] = []
    if spec.tensor_parallel != 1:
        args += ["--num-shard", str(spec.tensor_parallel)]
    if spec.max_model_len is not None:
        args += [
            "--max-total-tokens",
            str(spec.max_model_len),
            "--max-input-tokens",
            str(spec.max_model_len - 1),
        ]
    if spec.gpu_memory_fraction is not None:
        args += ["--cuda-memory-fraction", str(spec.gpu_memory_fraction)]
    if spec.dtype not in ("auto", "bfloat16", "float16"):
        raise UnsupportedOnEngine("tgi", spec.name, f"dtype {spec.dtype!r}", "TGI serves bfloat16 or float16")
    if spec.dtype != "auto":
        args += ["--dtype", spec.dtype]
    if spec.quantization != "none":
        args += ["--quantize", _TGI_QUANT[spec.quantization]]
    _refuse_llamacpp_only(spec, "tgi")
    if spec.max_num_seqs is not None:
        raise UnsupportedOnEngine(
            "tgi", spec.name, "max_num_seqs", "TGI sizes its batches by tokens (--max-batch-total-tokens)"
        )
    if spec.kv_cache_dtype != "auto":
        args += ["--kv-cache-dtype", _TGI_KV[spec.kv_cache_dtype]]
    s = spec.speculative
    if s.enabled:
        if s.method != "ngram":
            raise UnsupportedOnEngine(
                "tgi", spec.name, f"speculative method {s.method!r}",
                "TGI speculates with n-gram (--speculate) or with Medusa/MLP-speculator checkpoints given as the model",
            )  # fmt: skip
        if s.ngram_min is not None or s.ngram_max is not None:
            raise UnsupportedOnEngine(
                "tgi",
                spec.name,
                "speculative.ngram_min/ngram_max",
                "TGI's n-gram speculation has no window settings",
            )
        args += ["--speculate", str(s.num_tokens)]
    if spec.reasoning_parser:
        raise UnsupportedOnEngine(
            "tgi", spec.name, f"reasoning parser {spec.reasoning_parser!r}",
            "TGI has no reasoning parser; drop reasoning_parser (loadgen then sees <think> text as content)",
        )  # fmt: skip
    if spec.trust_remote_code:
        args.append("--trust-remote-code")
    return args + list(spec.extra_args)


def _tgi_env(spec: LaunchSpec) -> dict[str, str]:
    # The launcher reads PREFIX_CACHING from the environment (launcher/src/main.rs resolve_attention).
    return {"PREFIX_CACHING": "1" if spec.prefix_caching else "0"}


def _tgi_serve_args(spec: LaunchSpec, host: str, port: int) -> list[str]:
    return ["--model-id", spec.model, "--hostname", host, "--port", str(port)] + tgi_engine_args(spec)


# --------------------------------------------------------------------------------------- llama.cpp
# the llama-cpp-python sdist whose llama.cpp (0.5.0-dev, 0c1e570) the flag table and local builds come from
LLAMACPP_VERSION = "0.3.36"
_LLAMACPP_SPEC = {"ngram": "ngram-simple", "draft_model": "draft-simple", "eagle3": "draft-eagle3"}
_LLAMACPP_REASONING = {"deepseek_r1": "deepseek", "deepseek-r1": "deepseek", "qwen3": "deepseek"}


def llamacpp_engine_args(spec: LaunchSpec) -> list[str]:
    """llama-server flags for the spec's settings (no model/host/port/alias)."""

    def refuse(what: str, hint: str) -> UnsupportedOnEngine:
        return UnsupportedOnEngine("llamacpp", spec.name, what, hint)

    args: list[str] = []
    if spec.tensor_parallel != 1:
        args += ["--split-mode", "tensor"]  # over every GPU it sees: spec.gpus picks them
    if spec.max_model_len is not None:
        args += ["-c", str(spec.max_model_len)]
    if spec.gpu_memory_fraction is not None:
        raise refuse(
            "gpu_memory_fraction", "llama.cpp places whole layers (-ngl) and fits them itself (--fit)"
        )
    if spec.dtype != "auto":
        raise refuse(
            f"dtype {spec.dtype!r}", "a GGUF file fixes its weights' type: pick the file (or :QUANT)"
        )
    if spec.quantization != "none":
        raise refuse(
            f"weight quantization {spec.quantization!r}",
            "llama.cpp serves GGUF quantisations: pick a quantised file or repo tag such as org/name:Q4_K_M",
        )
    if spec.max_num_seqs is not None:
        args += ["-np", str(spec.max_num_seqs)]
    if spec.kv_cache_dtype in LLAMACPP_KV_CACHE_DTYPES:
        args += ["-ctk", spec.kv_cache_dtype, "-ctv", spec.kv_cache_dtype]
    elif spec.kv_cache_dtype != "auto":
        raise refuse(
            f"KV-cache dtype {spec.kv_cache_dtype!r}",
            "llama.cpp has no fp8 cache; it quantises K/V to q8_0 or q4_0 (kv_cache_dtype = 'q8_0')",
        )
    if spec.flash_attention is not None:
        args += ["-fa", "on" if spec.flash_attention else "off"]
    if not spec.prefix_caching:
        args.append("--no-cache-prompt")
    s = spec.speculative
    if s.enabled:
        if s.method not in _LLAMACPP_SPEC:
            raise refuse(
                f"speculative method {s.method!r}", "llama.cpp drafts with ngram, a draft model or EAGLE-3"
            )
        if s.ngram_min is not None or s.ngram_max is not None:
            raise refuse("speculative.ngram_min/ngram_max", "set --spec-ngram-size-n/-m in extra_args")
        args += ["--spec-type", _LLAMACPP_SPEC[s.method], "--spec-draft-n-max", str(s.num_tokens)]
        if s.method != "ngram":
            args += ["-md", str(s.draft_model)] + (["-ngld", "all"] if spec.gpus else [])
    if spec.reasoning_parser:
        fmt = _LLAMACPP_REASONING.get(spec.reasoning_parser)
        if fmt is None:
            raise refuse(
                f"reasoning parser {spec.reasoning_parser!r}",
                f"llama.cpp splits <think> blocks (--reasoning-format deepseek) for {', '.join(_LLAMACPP_REASONING)}",
            )
        args += ["--jinja", "--reasoning-format", fmt]
    if spec.metrics:
        args += ["--metrics", "--slots"]
    if spec.gpus:
        args += ["-ngl", "all"]
    return args + list(spec.extra_args)


def local_llamacpp_args(spec: LaunchSpec) -> list[str]:
    """``extra_args`` for ``server_launchers.local_llamacpp.LocalLlamaCppServer`` (which sets model, host, port and
    alias itself, and always serves /metrics, /slots and split reasoning): the spec's settings. With ``gpus`` the
    launcher runs its CUDA build, whose defaults put every layer on the GPU (the draft's too, rendered here);
    the GPUs are picked by CUDA_VISIBLE_DEVICES (``Server`` sets it), so no split across them is rendered."""
    if spec.engine != "llamacpp":
        raise UnsupportedOnEngine(
            spec.engine, spec.name, "the local llama.cpp route", "set engine = 'llamacpp'"
        )
    args = llamacpp_engine_args(replace(spec, tensor_parallel=1, metrics=False, reasoning_parser=None))
    return [a for i, a in enumerate(args) if not (a == "-ngl" or (i and args[i - 1] == "-ngl"))]


def _llamacpp_serve_args(spec: LaunchSpec, host: str, port: int) -> list[str]:
    model = ["-m", spec.model] if spec.model.endswith(".gguf") else ["-hf", spec.model]
    args = [*model, "--host", host, "--port", str(port)]
    if spec.served_name:
        args += ["--alias", spec.served_name]
    return args + llamacpp_engine_args(spec)


# --------------------------------------------------------------------------------------- public API
_ENGINE_ARGS = {
    "vllm": vllm_engine_args, "sglang": sglang_engine_args, "tgi": tgi_engine_args, "llamacpp": llamacpp_engine_args,
}  # fmt: skip
_SERVE_ARGS = {
    "vllm": _vllm_serve_args, "sglang": _sglang_serve_args, "tgi": _tgi_serve_args, "llamacpp": _llamacpp_serve_args,
}  # fmt: skip
_HOST_PROGRAM = {
    "vllm": ["vllm", "serve"],
    "vllm-module": ["python", "-m", "vllm.entrypoints.openai.api_server"],
    "sglang": ["python", "-m", "sglang.launch_server"],
    "tgi": ["text-generation-launcher"],
    "llamacpp": ["llama-server"],
}
# In-container command before the serve args: vllm/vllm-openai, TGI and llama.cpp's server images have the server
# as their ENTRYPOINT; lmsysorg/sglang has none.
_DOCKER_PROGRAM = {"vllm": [], "sglang": ["python3", "-m", "sglang.launch_server"], "tgi": [], "llamacpp": []}
# Where each image expects the Hugging Face cache (llama.cpp: LLAMA_CACHE, set to this folder below).
_DOCKER_HF_CACHE = {
    "vllm": "/root/.cache/huggingface", "sglang": "/root/.cache/huggingface", "tgi": "/data", "llamacpp": "/models",
}  # fmt: skip


def engine_args(spec: LaunchSpec) -> list[str]:
    """The engine's flags for the spec's settings (no model/host/port)."""
    return _ENGINE_ARGS[spec.engine](spec)


def _engine_env(spec: LaunchSpec) -> dict[str, str]:
    env = _tgi_env(spec) if spec.engine == "tgi" else {}
    env.update(spec.env_dict)
    return env


def host_command(spec: LaunchSpec, *, vllm_module: bool = False) -> Rendered:
    """The bare command line for a host install. GPUs go in CUDA_VISIBLE_DEVICES.
    ``vllm_module``: ``python -m vllm.entrypoints.openai.api_server`` instead of ``vllm serve``."""
    program = _HOST_PROGRAM["vllm-module" if (vllm_module and spec.engine == "vllm") else spec.engine]
    env = _engine_env(spec)
    if spec.gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, spec.gpus))
    return Rendered(program + _SERVE_ARGS[spec.engine](spec, spec.host, spec.port), env, spec.pass_env)


def container_name(spec: LaunchSpec) -> str:
    return "loadgen-" + re.sub(r"[^a-zA-Z0-9_.-]+", "-", f"{spec.engine}-{spec.name}").strip("-")


def docker_command(spec: LaunchSpec, *, detach: bool = True, name: str | None = None) -> Rendered:
    """``docker run`` for the engine's official image. Secrets are passed by NAME (``-e HF_TOKEN``):
    docker copies the value from the caller's environment, so it never appears in the command."""
    cport = CONTAINER_PORTS[spec.engine]
    argv = ["docker", "run"]
    argv += ["-d"] if detach else ["--rm"]
    argv += ["--name", name or container_name(spec)]
    argv += ["--gpus", f'"device={",".join(map(str, spec.gpus))}"' if spec.gpus else "all"]
    argv += ["--shm-size", spec.shm_size]
    publish = f"{spec.port}:{cport}" if spec.host in ("0.0.0.0", "") else f"{spec.host}:{spec.port}:{cport}"
    argv += ["-p", publish]
    argv += ["-v", f"{os.path.expanduser(spec.hf_cache)}:{_DOCKER_HF_CACHE[spec.engine]}"]
    for var in (spec.hf_token_env, *spec.pass_env):
        argv += ["-e", var]
    env = _engine_env(spec)
    if spec.engine == "llamacpp":
        env["LLAMA_CACHE"] = _DOCKER_HF_CACHE["llamacpp"]  # where -hf downloads land: the mounted folder
    for k, v in sorted(env.items()):
        argv += ["-e", f"{k}={v}"]
    argv.append(spec.image_ref)
    argv += _DOCKER_PROGRAM[spec.engine] + _SERVE_ARGS[spec.engine](spec, "0.0.0.0", cport)
    return Rendered(argv)


def endpoint(spec: LaunchSpec) -> str:
    """Root URL clients use (loopback when the server binds every interface)."""
    host = "127.0.0.1" if spec.host in ("0.0.0.0", "", "::") else spec.host
    return f"http://{host}:{spec.port}"
