"""What every local engine launcher shares: the cache folder, build locks, ports, health polls, process groups.

A local engine (the CPU vLLM, llama.cpp's llama-server) is a child process in its own process group, so stopping
it stops whatever it spawned; its readiness is ``GET /health`` answering 200; what it needs is built once into
``$LOADGEN_CACHE_DIR`` (default ``~/.cache/loadgen``) under an flock so two processes never build the same thing
at once. Standard library only: the launchers run from loadgen's interpreter and from bare CI shells.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

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


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # loopback only
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


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
