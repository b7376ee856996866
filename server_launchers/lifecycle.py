"""A server's life: started from a launch spec, waited for, asked about, its prefix cache reset, stopped.

What every launcher shares: the cache folder, build locks, ports, HTTP checks, process groups. A local engine (the
CPU vLLM, llama.cpp's llama-server) or a bare host command is a child process in its own process group, so stopping
it stops whatever it spawned; a docker engine is a named container; its readiness is ``GET /health`` (or
``/v1/models``) answering 200; what a local engine needs is built once into ``$LOADGEN_CACHE_DIR`` (default
``~/.cache/loadgen``) under an flock so two processes never build the same thing at once.

:class:`Server` starts a spec in one mode (``docker``, ``host``, ``local``) or adopts a running ``endpoint``;
``python -m server_launchers`` and ``python -m loadgen experiment`` both start and stop servers through it. Mode
``local`` hands the spec to an engine's ``local_server.LocalServer`` (``local_vllm``, ``local_llamacpp``), which
starts, waits for and stops its process with the functions here.
Standard library only (urllib for HTTP): the launchers run from loadgen's interpreter and from bare CI shells.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)


class LauncherError(RuntimeError):
    """Base of everything a local launcher raises on purpose."""


class EngineUnavailable(LauncherError):
    """This machine cannot run the engine (one clear reason in the message). Tests skip, CI too when
    ``hardware`` is set (a CPU the project cannot change); any other cause fails CI."""

    def __init__(self, message: str, *, hardware: bool = False):
        super().__init__(message)
        self.hardware = hardware


class ServerStartError(LauncherError):
    """The engine is set up but its server did not become healthy; the message ends with its log's tail."""


class StepFailed(EngineUnavailable):
    """One set-up command (pip, cmake, ...) exited non-zero; ``what``, ``rc`` and ``log_name`` say which, how and
    where its output is."""

    def __init__(self, what: str, rc: int, log_name: str):
        super().__init__(f"{what} failed (exit {rc}); see {log_name}")
        self.what, self.rc, self.log_name = what, rc, log_name


def cache_dir() -> Path:
    root = os.environ.get("LOADGEN_CACHE_DIR")
    path = Path(root).expanduser() if root else Path.home() / ".cache" / "loadgen"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def file_lock(path: Path, what: str, timeout_s: float = 3600.0) -> Iterator[None]:
    """Exclusive flock; waits (logging once) while another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        deadline = time.monotonic() + timeout_s
        told = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told:
                    log.info("waiting for another process building %s (lock %s)", what, path)
                    told = True
                if time.monotonic() > deadline:
                    raise EngineUnavailable(f"timed out waiting for lock {path} ({what})") from None
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:])


def http(url: str, *, method: str = "GET", timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of one request; an HTTP error status is an answer, not an exception. Raises OSError
    (urllib's URLError is one) when the server cannot be reached."""
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def http_json(url: str, timeout: float = 5.0) -> tuple[int, Any]:
    """(status, parsed JSON body or None)."""
    status, body = http(url, timeout=timeout)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        return http(url, timeout=timeout)[0] == 200
    except (OSError, ValueError):
        return False


def root_url(base_url: str) -> str:
    """``http://host:port`` of a base URL (with or without ``/v1``)."""
    m = re.match(r"^(https?://[^/]+)", base_url)
    if not m:
        raise ValueError(f"not an http URL: {base_url!r}")
    return m.group(1)


HEALTH_PATHS = (
    "/health",
    "/v1/models",
)  # the engines' readiness route, or the model list where there is none


def wait_healthy(
    root: str, timeout_s: float, alive: Callable[[], bool] = lambda: True, poll_s: float = 0.5
) -> float:
    """Poll ``root`` + /health (or /v1/models) until one answers 200; the seconds it took. Raises RuntimeError when
    ``alive()`` turns false first, TimeoutError after ``timeout_s``."""
    t0 = time.monotonic()
    while True:
        if any(http_ok(root + path, timeout=5.0) for path in HEALTH_PATHS):
            return time.monotonic() - t0
        if not alive():
            raise RuntimeError(f"the server exited before {root} became healthy")
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"{root} not healthy after {timeout_s:.0f} s")
        time.sleep(poll_s)


def server_version(root: str) -> str | None:
    """What ``GET /version`` says (vLLM, SGLang), else None."""
    with contextlib.suppress(OSError, ValueError):
        status, body = http_json(root + "/version", timeout=3.0)
        if status == 200 and isinstance(body, dict):
            return str(body.get("version"))
    return None


def reset_prefix_cache(root: str, attempts: int = 5) -> str:
    """Empty the server's prefix cache; returns what happened, for a manifest.

    vLLM (0.32): ``POST /reset_prefix_cache`` (only served with VLLM_SERVER_DEV_MODE=1; answers
    ``{"success": false}`` while blocks are held, so it is retried). SGLang: ``POST /flush_cache``. TGI: none.
    """
    tried = []
    for path in ("/reset_prefix_cache", "/flush_cache"):
        for i in range(attempts):
            try:
                status, body = http(root + path, method="POST", timeout=10.0)
            except OSError as exc:
                return f"failed: POST {path}: {type(exc).__name__}"
            if status in (404, 405):
                tried.append(path)
                break
            if status != 200:
                return f"failed: POST {path} answered {status}"
            ok = True
            with contextlib.suppress(ValueError):
                doc = json.loads(body)
                ok = not isinstance(doc, dict) or bool(doc.get("success", True))
            if ok:
                return f"done (POST {path})"
            time.sleep(0.5 * (i + 1))
        else:
            return f"failed: POST {path} kept answering success=false (blocks still held)"
    return (
        f"unavailable: the server does not serve {' or '.join(tried)} (vLLM serves /reset_prefix_cache only "
        "with VLLM_SERVER_DEV_MODE=1; TGI has no reset)"
    )


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_process_group(pgid: int, grace_s: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    """SIGTERM the whole group, then SIGKILL whatever is left after ``grace_s``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if proc is not None:
            proc.poll()  # reap the leader so the group can empty
        if not group_alive(pgid):
            break
        time.sleep(0.2)
    else:
        log.warning("process group %d still alive after %.0f s; sending SIGKILL", pgid, grace_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    deadline = time.monotonic() + 5
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)


def group_rss(pgid: int) -> int:
    """Resident memory of every process in a process group (Linux /proc)."""
    total = 0
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) != pgid:  # fields: state ppid pgrp ...
                continue
            total += int((entry / "statm").read_text().split()[1]) * page
        except (OSError, ValueError, IndexError):
            continue
    return total


def spawn_and_wait(
    cmd: list[str],
    *,
    env: dict[str, str],
    log_path: Path,
    health_url: str,
    timeout_s: float,
    what: str,
) -> tuple[subprocess.Popen, float]:
    """Start ``cmd`` in a new process group (output to ``log_path``) and wait for ``health_url`` to answer 200.

    Returns (process, seconds to healthy). On failure the group is stopped and ``ServerStartError`` raised with
    the log's tail."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(log_path, "ab") as logf:
        logf.write(f"$ {' '.join(cmd)}\n".encode())
        logf.flush()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
            env=env, start_new_session=True, close_fds=True,
        )  # fmt: skip
    log.info("%s pid %d; log %s", what, proc.pid, log_path)
    while True:
        rc = proc.poll()
        if rc is not None:
            stop_process_group(proc.pid, grace_s=5.0, proc=proc)
            raise ServerStartError(
                f"{what} exited with code {rc} before becoming healthy; log {log_path}:\n{tail(log_path)}"
            )
        if http_ok(health_url):
            return proc, time.monotonic() - t0
        if time.monotonic() - t0 > timeout_s:
            stop_process_group(proc.pid, grace_s=5.0, proc=proc)
            raise ServerStartError(
                f"{what} not healthy after {timeout_s:.0f} s; log {log_path}:\n{tail(log_path)}"
            )
        time.sleep(0.25)


def child_env(
    overrides: dict[str, str | None] | None = None, base: dict[str, str] | None = None
) -> dict[str, str]:
    """This process's environment minus Python path settings (an engine has its own interpreter), plus
    ``base`` and then ``overrides`` (a value of None removes a variable)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(base or {})
    for k, v in (overrides or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


PROGRESS_EVERY_S = 60.0


def run_logged(
    cmd: Sequence[Any],
    logf: IO[str],
    what: str,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> None:
    """Run one set-up command with its output appended to ``logf`` (after a ``$ command`` line); the environment
    is ``child_env()`` unless given. Says when it starts and, every ``PROGRESS_EVERY_S``, that it still runs (a
    C++ build is many silent minutes otherwise). Raises ``StepFailed`` when it exits non-zero."""
    logf.write(f"\n$ {' '.join(map(str, cmd))}\n")
    logf.flush()
    log.info("%s ...", what)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        list(map(str, cmd)),
        stdout=logf,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env=child_env() if env is None else env,
    )
    while True:
        try:
            rc = proc.wait(timeout=PROGRESS_EVERY_S)
            break
        except subprocess.TimeoutExpired:
            log.info("%s: still running after %.0f s (log %s)", what, time.monotonic() - t0, logf.name)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if rc != 0:
        raise StepFailed(what, rc, logf.name)


MODES = ("docker", "host", "local", "endpoint")


class Server:
    """One server of a launch spec, started in ``mode`` (``docker``: the official image in a named container;
    ``host``: the engine's command on this host; ``local``: the CPU vLLM or llama.cpp launcher with a tiny model),
    or, in mode ``endpoint``, one already running at ``base_url``.

    ``start()`` returns the root URL once the server is healthy; ``stop()`` stops what ``start()`` started
    (whatever it got to); ``info`` says what happened (command, log, container, startup seconds, version).
    ``state()`` and ``from_state()`` let another process stop a server started with ``detach=True``.
    """

    def __init__(
        self,
        spec: Any,
        mode: str,
        *,
        log_path: Path | None = None,
        timeout_s: float = 1800.0,
        base_url: str | None = None,
        port: int | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.spec, self.mode, self.log_path, self.timeout_s = spec, mode, log_path, timeout_s
        self.base_url, self.port = base_url, port
        self.info: dict[str, Any] = {}
        self.root: str | None = None
        self.pgid: int | None = None
        self.container: str | None = None
        self._proc: subprocess.Popen | None = None
        self._local: Any = None

    def start(self, *, detach: bool = False) -> str:
        t0 = time.monotonic()
        start = {"endpoint": self._adopt, "local": self._start_local, "docker": self._start_docker}
        root = self.root = start.get(self.mode, self._start_host)(detach)
        self.info["startup_s"] = round(time.monotonic() - t0, 2)
        self.info["root_url"] = root
        self.info["server_version"] = server_version(root)
        return root

    def _adopt(self, detach: bool) -> str:
        assert self.base_url, "mode endpoint needs base_url"
        root = root_url(self.base_url)
        wait_healthy(root, min(self.timeout_s, 30.0))
        return root

    def _start_local(self, detach: bool) -> str:
        from server_launchers.engines import local_llamacpp_args, local_vllm_args

        spec = self.spec
        env: dict[str, str | None] = dict(spec.env_dict)
        own: dict[str, Any] = {}
        if spec.engine == "llamacpp":  # the local routes, owned by local_llamacpp.py / local_vllm.py
            from server_launchers.local_llamacpp import LocalLlamaCppServer as Local
            from server_launchers.local_llamacpp import local_model

            args = local_llamacpp_args(spec)
            own = local_model(spec)
            if spec.gpus:  # the CUDA build on these GPUs
                own["gpu"] = True
                env.setdefault("CUDA_VISIBLE_DEVICES", ",".join(map(str, spec.gpus)))
        else:
            from server_launchers.local_vllm import LocalVllmServer as Local

            args = local_vllm_args(spec)
        self._local = Local(
            args, port=self.port, env=env, log_path=self.log_path, startup_timeout_s=self.timeout_s, **own
        )
        try:
            self._local.start(detach=detach)
        finally:
            self.info["log"] = str(self._local.log_path)
        self.pgid = self._local.pgid
        self.info["command"] = shlex.join(self._local.command())
        return self._local.root_url

    def _start_docker(self, detach: bool) -> str:
        from server_launchers.engines import container_name, docker_command, endpoint

        if shutil.which("docker") is None:
            raise RuntimeError("docker is not installed (mode docker)")
        rendered = docker_command(self.spec)
        name = container_name(self.spec)
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
        subprocess.run(rendered.argv, check=True, capture_output=True)
        self.container = self.info["container"] = name
        root = endpoint(self.spec)
        wait_healthy(root, self.timeout_s, self._container_alive)
        return root

    def _start_host(self, detach: bool) -> str:
        from server_launchers.engines import endpoint, host_command

        rendered = host_command(self.spec)
        assert self.log_path is not None, "mode host needs a log path"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.info["log"] = str(self.log_path)
        with open(self.log_path, "ab") as logf:
            self._proc = proc = subprocess.Popen(
                rendered.argv, env={**os.environ, **rendered.env}, stdin=subprocess.DEVNULL,
                stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.pgid = proc.pid  # start_new_session: the leader's pid is the group id
        root = endpoint(self.spec)
        wait_healthy(root, self.timeout_s, lambda: proc.poll() is None)
        return root

    def _container_alive(self) -> bool:
        out = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Running}}", str(self.container)],
            capture_output=True,
            text=True,
            check=False,
        )
        return out.stdout.strip() == "true"

    def stop(self, grace_s: float = 15.0) -> None:
        """Stop what start() started; idempotent."""
        if self._local is not None:
            self._local.stop()
            self._local = None
            self.pgid = None
        if self.pgid is not None:
            stop_process_group(self.pgid, grace_s, self._proc)
            self.pgid, self._proc = None, None
        if self.container is not None:
            subprocess.run(["docker", "rm", "-f", self.container], capture_output=True, check=False)
            self.container = None

    def state(self) -> dict[str, Any]:
        """What another process needs to stop this server, with its endpoint and log."""
        from server_launchers.engines import endpoint

        out: dict[str, Any] = {
            "mode": self.mode,
            "engine": self.spec.engine,
            "name": self.spec.name,
            "endpoint": self.root or endpoint(self.spec),
        }
        if self.pgid is not None:
            out["pgid"] = self.pgid
        if self.container is not None:
            out["container"] = self.container
        if "log" in self.info:
            out["log"] = self.info["log"]
        return out

    @classmethod
    def from_state(cls, spec: Any, state: dict[str, Any]) -> Server:
        server = cls(spec, state.get("mode", "docker"))
        server.pgid = state.get("pgid")
        server.container = state.get("container")
        return server
