"""Start and stop llama.cpp's ``llama-server`` on loopback, serving a tiny random-weight reasoning model.

The second real engine of the end-to-end tier, beside the CPU vLLM: it runs on any x86-64 or ARM CPU (vLLM's CPU
wheel needs AVX-512), and everything comes from the package registries. The C++ source is the llama.cpp tree that
the PyPI sdist of ``llama-cpp-python`` vendors (``tools/server`` included); only the ``llama-server`` target is
built from it with cmake, for a plain x86-64 (no SSE4.2/AVX/AVX2/FMA/F16C/BMI2 assumptions) so one cached binary
runs on every CI machine. The model is written by ``tiny_gguf.py`` in a small virtualenv with ``gguf``.

Measured on a 2-core machine: ~25 CPU-minutes of build (13 min idle, 20-30 min busy), a 14.5 MB binary, a 0.8 MB
model, healthy in under a second. Both are cached under ``$LOADGEN_CACHE_DIR`` (default ``~/.cache/loadgen``) with
a lock, so two processes never build at once::

    llama.cpp-<version>/llama-server     the binary (``build.json`` beside it: flags, seconds)
    llama.cpp-<version>.build.log        cmake's output
    venv-gguf-<version>/                 the virtualenv that writes the model
    models/tiny-reasoning-llama-<hash>.gguf (+ .json: token ids)
    run/llamacpp-<name>.json             state of servers started from the shell

Errors are lifecycle's: ``EngineUnavailable`` (no compiler/cmake, download or build failed; tests skip, CI fails),
``ServerStartError`` (built, but the server did not become healthy). Starting, stopping and the shell's verbs are
``local_server.LocalServer``'s; this module owns the build, the model and the command line.

Python::

    with LocalLlamaCppServer() as srv:
        srv.base_url, srv.metrics_url, srv.slots_url, srv.model_name

Shell (the verbs of ``local_server.main``)::

    python -m server_launchers.local_llamacpp setup [--adopt PATH]
    python -m server_launchers.local_llamacpp start [--name N] [--port P] -- --reasoning-budget -1
    python -m server_launchers.local_llamacpp status|stop [--name N]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from server_launchers import llamacpp_cuda, local_server, tiny_gguf
from server_launchers.engines import LLAMACPP_VERSION, local_llamacpp_args
from server_launchers.flags import flag_table
from server_launchers.lifecycle import EngineUnavailable, cache_dir, file_lock, run_logged
from server_launchers.local_server import LocalServer

log = logging.getLogger(__name__)

# the llama-cpp-python sdist whose vendor/llama.cpp is built: the one whose flags engines.py renders and checks
LLAMA_CPP_PYTHON_VERSION = LLAMACPP_VERSION
GGUF_VERSION = "0.19.0"
MODEL_NAME = "tiny-reasoning"
# cmake options: no web UI (it would be fetched at build time), no TLS (loopback), no tests or examples, static.
CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_OPENSSL=OFF", "-DGGML_CCACHE=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
)  # fmt: skip
# A binary for any x86-64: the tiny model needs no vector units, and CI machines differ.
PORTABLE_X86 = ("-DGGML_SSE42=OFF", "-DGGML_AVX=OFF", "-DGGML_AVX2=OFF", "-DGGML_FMA=OFF", "-DGGML_F16C=OFF",
                "-DGGML_BMI2=OFF")  # fmt: skip

# What every server of the e2e tier gets: 4 slots with continuous batching, per-slot KV (not unified, so /slots'
# n_ctx add up to the cache and the KV occupancy derived from them is exact), Prometheus /metrics and /slots,
# the model's chat template, reasoning split into reasoning_content, and a reasoning budget so every answer has
# both phases.
DEFAULT_ARGS = (
    "--metrics", "--slots", "-np", "4", "-c", "8192", "--no-kv-unified", "--cont-batching", "-n", "256",
    "-t", "1", "-tb", "1", "--jinja", "--reasoning-format", "deepseek", "--reasoning-budget", "24", "--no-webui",
)  # fmt: skip


# A GPU server: every layer on the GPU, flash attention, 16 slots of 4096 tokens each (per-slot caches, so /slots
# adds up), reasoning split as on the CPU but no server-wide budget (a request may send thinking_budget_tokens).
GPU_DEFAULT_ARGS = (
    "--metrics", "--slots", "-np", "16", "-c", "65536", "--no-kv-unified", "--cont-batching", "-ngl", "all",
    "-fa", "on", "-t", "4", "-tb", "4", "--jinja", "--reasoning-format", "deepseek", "--no-webui",
)  # fmt: skip


def build_dir(cuda_arch: str | None = None) -> Path:
    """The CPU build's folder, or the CUDA build's for ``cuda_arch`` (e.g. "90"): separate cache keys."""
    suffix = f"-cuda-sm{cuda_arch}" if cuda_arch else ""
    return cache_dir() / f"llama.cpp-{LLAMA_CPP_PYTHON_VERSION}{suffix}"


def binary_path(cuda_arch: str | None = None) -> Path:
    return build_dir(cuda_arch) / "llama-server"


def model_path(shape: str | None = None) -> Path:
    return cache_dir() / "models" / tiny_gguf.model_file_name(tiny_gguf.SHAPES[shape] if shape else None)


def read_model_info(path: Path | None = None) -> dict:
    """The tiny model's token ids (``think_end_id`` ...), written beside it."""
    return json.loads((path or model_path()).with_suffix(".json").read_text())


def _binary_ok(path: Path) -> bool:
    if not os.access(path, os.X_OK):
        return False
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


def is_set_up() -> bool:
    """The binary and the model are in the cache (nothing is built to find out)."""
    model = model_path()
    return _binary_ok(binary_path()) and model.is_file() and model.with_suffix(".json").is_file()


def _missing_tools() -> list[str]:
    return [t for t in ("cmake", "c++", "make") if shutil.which(t) is None]


def ensure_binary(jobs: int | None = None, *, cuda: bool = False) -> Path:
    """The cached ``llama-server``, built once (locked) from the llama-cpp-python sdist if missing; ``cuda``: the
    CUDA build for this machine's GPU (its own cache key)."""
    arch = llamacpp_cuda.cuda_arch() if cuda else None
    binary = binary_path(arch)
    if _binary_ok(binary):
        return binary
    missing = llamacpp_cuda.missing_cuda_tools() if cuda else _missing_tools()
    if missing:
        raise EngineUnavailable(
            f"building llama-server needs {', '.join(missing)} (Debian: apt-get install cmake g++ make"
            + (", and CUDA's toolkit)" if cuda else ")")
        )
    with file_lock(cache_dir() / f"{binary.parent.name}.lock", f"llama-server {LLAMA_CPP_PYTHON_VERSION}"):
        if _binary_ok(binary):
            return binary
        _build(binary, jobs or os.cpu_count() or 1, build_flags(arch))
    return binary


def build_flags(cuda_arch: str | None = None) -> list[str]:
    """CMake flags: the portable CPU build, or the CUDA build for ``cuda_arch`` (the host's own vector units:
    the binary is built on the machine it serves from)."""
    if cuda_arch:
        return llamacpp_cuda.cuda_flags(CMAKE_OPTIONS, cuda_arch, ninja=shutil.which("ninja") is not None)
    return list(CMAKE_OPTIONS) + (list(PORTABLE_X86) if platform.machine() in ("x86_64", "AMD64") else [])


def _source(work: Path, logf: Any, log_path: Path) -> Path:
    """The llama.cpp tree: ``$LOADGEN_LLAMACPP_SOURCE`` (a folder or an archive), else the sdist from PyPI."""
    given = os.environ.get(llamacpp_cuda.SOURCE_ENV)
    if given and Path(given).is_dir():
        if not (Path(given) / "tools" / "server" / "CMakeLists.txt").is_file():
            raise EngineUnavailable(f"{llamacpp_cuda.SOURCE_ENV}={given} has no tools/server/CMakeLists.txt")
        return Path(given)
    if given:
        archive = Path(given)
    else:
        run_logged([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", work / "dl",
              f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"], logf, "downloading the llama-cpp-python sdist")  # fmt: skip
        sdists = sorted((work / "dl").glob("llama_cpp_python-*.tar.gz"))
        if not sdists:
            raise EngineUnavailable(f"pip downloaded no llama-cpp-python sdist; see {log_path}")
        archive = sdists[0]
    return llamacpp_cuda.extract_source(archive, work / "src")


def _build(binary: Path, jobs: int, flags: list[str]) -> None:
    work = cache_dir() / f"{binary.parent.name}-work"
    log_path = cache_dir() / f"{binary.parent.name}.build.log"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t0 = time.monotonic()
    log.info("building llama-server %s (%s) with -j%d; log %s", LLAMA_CPP_PYTHON_VERSION, binary.parent.name,
             jobs, log_path)  # fmt: skip
    with open(log_path, "w") as logf:
        src = _source(work, logf, log_path)
        run_logged(["cmake", "-S", src, "-B", work / "build", *flags], logf, "cmake configure")
        run_logged(
            ["cmake", "--build", work / "build", "--target", "llama-server", f"-j{jobs}"], logf, "cmake build"
        )
    built = work / "build" / "bin" / "llama-server"
    if not _binary_ok(built):
        raise EngineUnavailable(f"the build produced no working llama-server; see {log_path}")
    binary.parent.mkdir(parents=True, exist_ok=True)
    tmp = binary.with_name(binary.name + ".tmp")
    shutil.copy2(built, tmp)
    os.replace(tmp, binary)
    info = {"llama_cpp_python": LLAMA_CPP_PYTHON_VERSION, "cmake": flags, "jobs": jobs,
            "seconds": round(time.monotonic() - t0, 1), "machine": platform.machine()}  # fmt: skip
    if "-DGGML_CUDA=ON" in flags:
        info["nvcc"] = llamacpp_cuda.nvcc_version()
    (binary.parent / "build.json").write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    log.info("built %s in %.0f s", binary, info["seconds"])


def adopt_binary(path: Path) -> Path:
    """Install an already built ``llama-server`` (same version) into the cache instead of building one."""
    if not _binary_ok(path):
        raise EngineUnavailable(f"{path} is not a working llama-server")
    binary = binary_path()
    binary.parent.mkdir(parents=True, exist_ok=True)
    tmp = binary.with_name(binary.name + ".tmp")
    shutil.copy2(path, tmp)
    os.replace(tmp, binary)
    return binary


def ensure_model(shape: str | None = None) -> Path:
    """The tiny GGUF model, or the random-weight Llama of ``tiny_gguf.SHAPES[shape]``, written once (locked) by
    this interpreter where it has ``gguf`` (a machine without network), else in a small virtualenv with it."""
    path = model_path(shape)
    if path.is_file() and path.with_suffix(".json").is_file():
        return path
    with file_lock(path.parent / f"{path.name}.lock", f"model {path.name}"):
        if path.is_file() and path.with_suffix(".json").is_file():
            return path
        venv = cache_dir() / f"venv-gguf-{GGUF_VERSION}"
        py = Path(sys.executable) if importlib.util.find_spec("gguf") else venv / "bin" / "python"
        log_path = cache_dir() / f"venv-gguf-{GGUF_VERSION}.log"
        with open(log_path, "w") as logf:
            if py != Path(sys.executable) and not (venv / ".loadgen-ready").is_file():
                shutil.rmtree(venv, ignore_errors=True)
                run_logged([sys.executable, "-m", "venv", venv], logf, "python -m venv")
                run_logged([py, "-m", "pip", "install", "--no-input", "-q", f"gguf=={GGUF_VERSION}"], logf,
                     f"pip install gguf=={GGUF_VERSION}")  # fmt: skip
                (venv / ".loadgen-ready").write_text(GGUF_VERSION + "\n")
            path.parent.mkdir(parents=True, exist_ok=True)
            t0 = time.monotonic()
            # this interpreter keeps its Python path (where it found gguf: a carried wheel, say); a venv gets none
            env = dict(os.environ) if py == Path(sys.executable) else None
            run_logged([py, Path(tiny_gguf.__file__).resolve(), path, *([shape] if shape else [])], logf,
                       f"writing the GGUF model {path.name}", env=env)  # fmt: skip
            log.info("wrote %s in %.0f s", path, time.monotonic() - t0)
    return path


class LocalLlamaCppServer(LocalServer):
    """One ``llama-server`` on 127.0.0.1 in its own process group; ``extra_args`` follow ``DEFAULT_ARGS`` (a later
    flag overrides an earlier one in llama.cpp's parser), ``base_args`` replaces them.

    ``gpu``: the CUDA build and ``GPU_DEFAULT_ARGS``. ``model`` is a GGUF path or a ``tiny_gguf.SHAPES`` name (the
    random-weight Llama is written on first use); so is the value of a ``-md`` (draft model) in ``extra_args``."""

    engine = "llama-server"
    state_prefix = "llamacpp-"
    startup_timeout_s_default = 120.0
    stop_grace_s_default = 10.0

    def __init__(
        self,
        extra_args: Sequence[str] = (),
        port: int | None = None,
        *,
        base_args: Sequence[str] | None = None,
        binary: Path | str | None = None,
        model: Path | str | None = None,
        model_name: str = MODEL_NAME,
        gpu: bool = False,
        **common: Any,
    ):
        """``common``: ``log_path``, ``env``, ``startup_timeout_s``, ``stop_grace_s`` (see ``LocalServer``)."""
        super().__init__(extra_args, port, model_name=model_name, **common)
        self.gpu = gpu
        default = GPU_DEFAULT_ARGS if gpu else DEFAULT_ARGS
        self.base_args = [str(a) for a in (default if base_args is None else base_args)]
        self.binary = Path(binary) if binary else None
        self.model: Path | str | None = model

    @property
    def slots_url(self) -> str:
        return f"{self.root_url}/slots"

    @property
    def model_info(self) -> dict:
        return read_model_info(resolve_model(self.model))

    def prepare(self) -> None:
        self.binary = self.binary or ensure_binary(cuda=self.gpu)
        self.model = resolve_model(self.model)
        self.extra_args = [
            str(resolve_model(a)) if i and self.extra_args[i - 1] in DRAFT_FLAGS else a
            for i, a in enumerate(self.extra_args)
        ]

    def command(self) -> list[str]:
        assert self.binary is not None and self.model is not None and self.port is not None
        return [
            str(self.binary), "-m", str(self.model), "--alias", self.model_name,
            "--host", "127.0.0.1", "--port", str(self.port), *merged_args(self.base_args, self.extra_args),
        ]  # fmt: skip


DRAFT_FLAGS = ("-md", "--model-draft", "--spec-draft-model")


def merged_args(base: Sequence[str], extra: Sequence[str]) -> list[str]:
    """``base`` without the flags ``extra`` sets again, then ``extra``: llama-server takes the last of a repeated
    flag but warns that repeating one is deprecated. Flags and their values are told apart by llama-server's own
    flag table (``flags/llamacpp-<version>.json``)."""
    table = flag_table("llamacpp", LLAMA_CPP_PYTHON_VERSION)
    given = {a for a in extra if a.startswith("-")}
    out: list[str] = []
    i = 0
    while i < len(base):
        entry = table.get(base[i], {})
        has_value = i + 1 < len(base) and (
            entry.get("takes_value") or (entry.get("optional_value") and not base[i + 1].startswith("-"))
        )
        n = 2 if has_value else 1
        if base[i] not in given:
            out += base[i : i + n]
        i += n
    return out + list(extra)


def local_model(spec: Any) -> dict[str, Any]:
    """The model a launch spec names for this launcher: a ``.gguf`` path or a ``tiny_gguf.SHAPES`` name is served
    under the spec's served name; anything else is a label and the tiny model is served (the CPU presets)."""
    if spec.model in tiny_gguf.SHAPES or spec.model.endswith(".gguf"):
        return {"model": spec.model, "model_name": spec.model_name}
    return {}


def shown_command(spec: Any) -> str:
    """The command a launch spec runs as on this launcher, for manifests and dry runs (model files not written)."""
    own = local_model(spec)
    base = GPU_DEFAULT_ARGS if spec.gpus else DEFAULT_ARGS
    program = (
        "CUDA_VISIBLE_DEVICES=" + ",".join(map(str, spec.gpus)) + " llama-server[cuda]"
        if spec.gpus
        else "llama-server"
    )
    model = f"<{own['model']}>" if own else "<tiny gguf>"
    return (f"{program} -m {model} --alias {own.get('model_name', MODEL_NAME)} --host 127.0.0.1 --port <free port> "
            + shlex.join(merged_args(base, local_llamacpp_args(spec))))  # fmt: skip


def resolve_model(model: Path | str | None) -> Path:
    """A GGUF path as given; a ``tiny_gguf.SHAPES`` name as its written file; None as the tiny model."""
    if model is None:
        return ensure_model()
    if str(model) in tiny_gguf.SHAPES:
        return ensure_model(str(model))
    return Path(model)


# ------------------------------------------------------------------------------------------------ shell entry


def _setup(args: argparse.Namespace) -> int:
    if args.adopt:
        adopt_binary(Path(args.adopt))
    t0 = time.monotonic()
    binary = ensure_binary(cuda=args.cuda)
    info = binary.parent / "build.json"
    built = json.loads(info.read_text()).get("seconds") if info.is_file() else None
    print(f"llama-server: {binary} (ready after {time.monotonic() - t0:.0f} s; build took {built} s)")
    t0 = time.monotonic()
    model = ensure_model(args.model)
    print(
        f"model: {model} ({time.monotonic() - t0:.0f} s); think_end_id: {read_model_info(model)['think_end_id']}"
    )
    return 0


def _setup_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--adopt", metavar="PATH", default=None,
                   help="install this already built llama-server into the cache instead of building")  # fmt: skip
    p.add_argument("--cuda", action="store_true", help="the CUDA build for this machine's GPU")
    p.add_argument("--model", choices=sorted(tiny_gguf.SHAPES), default=None,
                   help="write this random-weight Llama of real shape instead of the tiny model")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    return local_server.main(
        LocalLlamaCppServer, argv, prog="python -m server_launchers.local_llamacpp",
        description=__doc__.splitlines()[0], setup=_setup, add_setup_args=_setup_args,
        setup_help="build llama-server and write the tiny model (idempotent)",
        epilog="Flags after -- go to llama-server, after its defaults: " + " ".join(DEFAULT_ARGS),
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
