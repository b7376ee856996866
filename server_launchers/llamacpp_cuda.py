"""What a CUDA ``llama-server`` needs beyond the CPU build: the GPU's architecture, the CMake flags, a cache key of
its own, and a llama.cpp source tree that travels to a machine without network.

``local_llamacpp`` builds both binaries from the same llama-cpp-python sdist; with ``cuda=True`` it asks this module
for the flags (``GGML_CUDA``, ``CMAKE_CUDA_ARCHITECTURES`` read from ``nvidia-smi``, Ninja where installed) and caches
the result under ``$LOADGEN_CACHE_DIR/llama.cpp-<version>-cuda-sm<arch>/`` beside the CPU one, its ``build.json``
holding the flags, the architecture, nvcc's version and the seconds the build took.

Source: ``$LOADGEN_LLAMACPP_SOURCE`` names a llama.cpp tree (a folder with ``tools/server``) or an archive (the
sdist itself, or what ``pack_source`` writes); unset, pip downloads the sdist. ``pack_source`` keeps what a CPU or
CUDA build reads: the sdist's ``vendor/llama.cpp`` without docs, models, tests, examples and the other GPU
backends, ~8 MB gzipped instead of 77 MB::

    python -m server_launchers.local_llamacpp pack-source llama.cpp-src.tar.gz [--sdist PATH]
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

from server_launchers.lifecycle import EngineUnavailable

SOURCE_ENV = "LOADGEN_LLAMACPP_SOURCE"
ARCH_ENV = "LOADGEN_CUDA_ARCH"
# The unified `llama` binary (app/) is not needed for the server; CUDA graphs etc. stay at llama.cpp's defaults.
CUDA_OPTIONS = ("-DGGML_CUDA=ON", "-DLLAMA_BUILD_APP=OFF")
# Top-level folders of vendor/llama.cpp no build reads; ggml/src backends other than the CPU and CUDA ones.
PRUNED_DIRS = frozenset({"docs", "models", "tests", "examples", "media", "pocs", "benches", "gguf-py",
                         "conversion", "requirements", "ci", "skills", ".devops", ".github"})  # fmt: skip
KEPT_BACKENDS = frozenset({"ggml-cpu", "ggml-cuda"})
_VENDOR = "vendor/llama.cpp/"


def parse_compute_cap(text: str) -> str:
    """``nvidia-smi --query-gpu=compute_cap`` output ("9.0" per GPU) as CMake's architecture ("90"); the first
    GPU's (one binary serves the GPUs of one machine). ValueError on anything else."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    m = re.fullmatch(r"(\d+)\.(\d+)", first)
    if not m:
        raise ValueError(f"not a compute capability: {first!r}")
    return m.group(1) + m.group(2)


def cuda_arch(environ: dict[str, str] | None = None) -> str:
    """The architecture to build for: ``$LOADGEN_CUDA_ARCH`` (e.g. 90), else the first GPU's, from nvidia-smi."""
    env = os.environ if environ is None else environ
    if env.get(ARCH_ENV):
        if not re.fullmatch(r"\d+[a-z]?", env[ARCH_ENV]):
            raise EngineUnavailable(f"{ARCH_ENV}={env[ARCH_ENV]!r} is not a CUDA architecture such as 90")
        return env[ARCH_ENV]
    if shutil.which("nvidia-smi") is None:
        raise EngineUnavailable(
            f"no nvidia-smi: no NVIDIA GPU to build llama-server for (set {ARCH_ENV} to build anyway)",
            hardware=True,
        )
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=60, check=True).stdout  # fmt: skip
        return parse_compute_cap(out)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise EngineUnavailable(f"nvidia-smi gave no compute capability ({exc})", hardware=True) from None


def cuda_flags(base: tuple[str, ...], arch: str, ninja: bool) -> list[str]:
    """CMake flags of the CUDA build: the CPU build's (``base``) plus CUDA for ``arch``; Ninja when present
    (the CUDA objects dominate, and Ninja schedules them better than make)."""
    return (
        (["-G", "Ninja"] if ninja else [])
        + list(base)
        + [*CUDA_OPTIONS, f"-DCMAKE_CUDA_ARCHITECTURES={arch}"]
    )


def missing_cuda_tools() -> list[str]:
    return [t for t in ("nvcc", "cmake", "c++") if shutil.which(t) is None]


def nvcc_version() -> str | None:
    try:
        out = subprocess.run(["nvcc", "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"release ([\d.]+)", out)
    return m.group(1) if m else None


def keep_member(name: str) -> bool:
    """Whether an archive member (``.../vendor/llama.cpp/REL``) is part of the pruned source."""
    rel = name.split("/", 1)[1] if "/" in name else ""
    if not rel.startswith(_VENDOR):  # (the sdist also holds a git pack under .git/modules/vendor/llama.cpp/)
        return False
    parts = rel[len(_VENDOR) :].split("/")
    if parts[0] in PRUNED_DIRS:
        return False
    return not (len(parts) > 2 and parts[:2] == ["ggml", "src"] and parts[2].startswith("ggml-")
                and parts[2] not in KEPT_BACKENDS and "." not in parts[2])  # fmt: skip


def extract_source(archive: Path, dest: Path) -> Path:
    """Unpack the llama.cpp tree of an sdist or a packed source into ``dest``; the tree's root."""
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if keep_member(m.name)]
        tar.extractall(dest, members=members, filter="data")
    src = next(dest.glob("*/vendor/llama.cpp"), None)
    if src is None or not (src / "tools" / "server" / "CMakeLists.txt").is_file():
        raise EngineUnavailable(f"{archive} carries no llama.cpp tools/server")
    return src


def pack_source(sdist: Path, out: Path) -> Path:
    """Write the pruned llama.cpp tree of ``sdist`` to ``out`` (tar.gz, the sdist's own layout)."""
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(sdist) as src, tarfile.open(tmp, "w:gz") as dst:
        for m in src.getmembers():
            if keep_member(m.name):
                dst.addfile(m, src.extractfile(m) if m.isfile() else None)
    os.replace(tmp, out)
    return out


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 4 or sys.argv[1] != "pack":
        sys.exit("usage: python -m server_launchers.llamacpp_cuda pack SDIST.tar.gz OUT.tar.gz")
    print(pack_source(Path(sys.argv[2]), Path(sys.argv[3])))
