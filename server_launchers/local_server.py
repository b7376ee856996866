"""One local engine process on 127.0.0.1: started, waited for, asked about and stopped, from Python or a shell.

:class:`LocalServer` is what every local CPU engine shares: a port (an OS-picked one is retried when taken before
the engine binds it), a log, the child's environment, start in its own process group and wait for ``GET /health``
(lifecycle's ``spawn_and_wait``), stop the whole group, its state for a shell that comes back later. An engine's
module adds only what is its own: what to have ready before the first start (``prepare``: a virtualenv, a built
binary, a model), its command line, its environment and its set-up verb::

    local_vllm.py       LocalVllmServer      vLLM's CPU wheel in its own virtualenv, a tiny random-weight model
    local_llamacpp.py   LocalLlamaCppServer  llama.cpp's llama-server built from source, a tiny GGUF model

:func:`main` is the shell both modules answer to (``python -m server_launchers.local_vllm`` and
``python -m server_launchers.local_llamacpp``)::

    setup                                      the engine's own (idempotent)
    start [--name N] [--port P] [--log F] [--timeout S] -- ENGINE FLAGS
    status [--name N]                          exit 0 healthy, 1 not, 3 not started
    stop [--name N] [--grace S]

A started server's state is ``$LOADGEN_CACHE_DIR/run/<prefix><name>.json`` (pgid, port, URLs, log), so ``stop``
and ``status`` work from another process. Setup problems print ``error: ...`` and exit 2; a machine that cannot
run the engine at all (``EngineUnavailable(hardware=True)``) prints ``unavailable on this machine: ...`` and exits
3, which ``.ci/setup_vllm.sh`` reads as "skip this tier".
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from server_launchers.lifecycle import (
    EngineUnavailable,
    LauncherError,
    ServerStartError,
    cache_dir,
    child_env,
    free_port,
    group_alive,
    group_rss,
    http_ok,
    spawn_and_wait,
    stop_process_group,
)

log = logging.getLogger(__name__)


class LocalServer:
    """One engine server on 127.0.0.1 in its own process group; ``extra_args`` go on its command line.

    Subclasses set ``engine`` (its name in logs and messages), ``state_prefix`` (of its shell state files), the
    default timeouts, and implement ``prepare`` and ``command``; ``child_env`` may add the engine's variables.
    ``env`` overrides the inherited environment (a value of None removes a variable).
    """

    engine = "engine"
    state_prefix = ""
    startup_timeout_s_default = 300.0
    stop_grace_s_default = 15.0

    def __init__(
        self,
        extra_args: Sequence[str] = (),
        port: int | None = None,
        *,
        log_path: Path | str | None = None,
        env: Mapping[str, str | None] | None = None,
        model_name: str,
        startup_timeout_s: float | None = None,
        stop_grace_s: float | None = None,
    ):
        self.extra_args = [str(a) for a in extra_args]
        self._fixed_port = port
        self.port: int | None = port
        self.log_path = Path(log_path) if log_path else None
        self.env_overrides = dict(env or {})
        self.model_name = model_name
        self.startup_timeout_s = (
            self.startup_timeout_s_default if startup_timeout_s is None else startup_timeout_s
        )
        self.stop_grace_s = self.stop_grace_s_default if stop_grace_s is None else stop_grace_s
        self.proc: subprocess.Popen | None = None
        self.pgid: int | None = None
        self.startup_s: float | None = None

    # -- what an engine adds
    def prepare(self) -> None:
        """Have everything the command needs (built, installed, written); called by ``start``."""
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def child_env(self) -> dict[str, str]:
        return child_env(self.env_overrides)

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

    # -- lifecycle
    def start(self, *, detach: bool = False) -> Self:
        """Start and wait until ``GET /health`` answers 200. ``detach``: the server outlives this process."""
        if self.proc is not None:
            return self
        self.prepare()
        attempts = 1 if self._fixed_port else 3  # an OS-picked port can be taken before the engine binds it
        for attempt in range(attempts):
            self.port = self._fixed_port or free_port()
            if self.log_path is None or attempt:
                self.log_path = cache_dir() / "run" / f"{self.engine.lower()}-{self.port}.log"
            try:
                self.proc, self.startup_s = spawn_and_wait(
                    self.command(), env=self.child_env(), log_path=self.log_path, health_url=self.health_url,
                    timeout_s=self.startup_timeout_s,
                    what=f"{self.engine} ({' '.join(self.extra_args) or 'default args'})",
                )  # fmt: skip
            except ServerStartError as exc:
                if attempt + 1 < attempts and "address already in use" in str(exc).lower():
                    log.warning("port %d was taken; retrying on another", self.port)
                    continue
                raise
            self.pgid = self.proc.pid  # start_new_session: the leader's pid is the group id
            log.info("%s healthy on %s after %.1f s", self.engine, self.root_url, self.startup_s)
            if detach:
                self.proc = None  # forget it: stop() from a state file uses the pgid
            return self
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL after ``stop_grace_s``. Idempotent."""
        if self.pgid is None:
            return
        stop_process_group(self.pgid, self.stop_grace_s, self.proc)
        self.proc, self.pgid = None, None

    def kill(self) -> None:
        """SIGKILL at once (a crash, for the tests of a server dying mid-run)."""
        if self.pgid is not None:
            os.killpg(self.pgid, signal.SIGKILL)
            if self.proc is not None:
                self.proc.wait(timeout=10)
            self.proc, self.pgid = None, None

    def is_alive(self) -> bool:
        return self.pgid is not None and group_alive(self.pgid)

    def rss_bytes(self) -> int:
        """Resident memory of every process in the server's group (Linux /proc)."""
        return group_rss(self.pgid) if self.pgid is not None else 0

    def state(self) -> dict[str, Any]:
        """What a shell's later ``stop`` and ``status`` need, with the server's addresses and log."""
        return {
            "pgid": self.pgid, "port": self.port, "base_url": self.base_url, "metrics_url": self.metrics_url,
            "model_name": self.model_name, "log": str(self.log_path), "args": self.extra_args,
            "startup_s": round(self.startup_s or 0, 2),
        }  # fmt: skip

    @classmethod
    def state_path(cls, name: str) -> Path:
        return cache_dir() / "run" / f"{cls.state_prefix}{name}.json"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(port={self.port}, args={self.extra_args!r}, alive={self.is_alive()})"


# ------------------------------------------------------------------------------------------------ shell entry


def _cmd_start(server_cls: type[LocalServer], args: argparse.Namespace) -> int:
    state = server_cls.state_path(args.name)
    if state.exists():
        old = json.loads(state.read_text())
        if group_alive(old["pgid"]):
            print(f"already running: {old['base_url']} (pgid {old['pgid']}); stop it first", file=sys.stderr)
            return 1
    log_path = Path(args.log) if args.log else state.with_suffix(".log")
    log_path.unlink(missing_ok=True)
    srv = server_cls(args.server_args, port=args.port, log_path=log_path, startup_timeout_s=args.timeout)
    srv.start(detach=True)
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps(srv.state(), indent=2) + "\n")
    print(srv.base_url)
    return 0


def _cmd_stop(server_cls: type[LocalServer], args: argparse.Namespace) -> int:
    state = server_cls.state_path(args.name)
    if not state.exists():
        print(f"no {server_cls.engine} named {args.name!r}", file=sys.stderr)
        return 0
    info = json.loads(state.read_text())
    stop_process_group(int(info["pgid"]), grace_s=args.grace)
    state.unlink()
    print(f"stopped {info['base_url']} (pgid {info['pgid']})")
    return 0


def _cmd_status(server_cls: type[LocalServer], args: argparse.Namespace) -> int:
    state = server_cls.state_path(args.name)
    if not state.exists():
        print(f"{args.name}: not running")
        return 3
    info = json.loads(state.read_text())
    alive = group_alive(int(info["pgid"]))
    healthy = alive and http_ok(info["base_url"].rsplit("/v1", 1)[0] + "/health")
    word = "healthy" if healthy else ("starting or unhealthy" if alive else "dead (stale state)")
    print(f"{args.name}: {word} {info['base_url']} pgid={info['pgid']} log={info['log']}")
    return 0 if healthy else 1


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default where there is one (not "(default: None)" after a help that says what absent means)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


def plain(text: str | None) -> str | None:
    """A docstring's reStructuredText as a terminal shows it: ``name`` and `name` are name."""
    return None if text is None else re.sub(r"``?([^`]+?)``?", r"\1", text)


def main(
    server_cls: type[LocalServer],
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str,
    setup: Callable[[argparse.Namespace], int],
    setup_help: str,
    add_setup_args: Callable[[argparse.ArgumentParser], None] | None = None,
    epilog: str | None = None,
) -> int:
    """The shell of one engine's module: its own ``setup`` verb, and start/stop/status of ``server_cls``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    server_args: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, server_args = argv[:i], argv[i + 1 :]
    fmt = _HelpFormatter
    ap = argparse.ArgumentParser(
        prog=prog,
        description=plain(description),
        epilog=plain(epilog),
        allow_abbrev=False,
        formatter_class=fmt,
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_setup = sub.add_parser("setup", help=plain(setup_help), allow_abbrev=False, formatter_class=fmt)
    if add_setup_args is not None:
        add_setup_args(p_setup)
    parsers = {}
    for name, text in (("start", "start a server, wait until healthy, print its base URL"),
                       ("stop", "stop a server started with 'start'"),
                       ("status", "is it healthy? (exit 0 yes, 1 no, 3 not started)")):  # fmt: skip
        parsers[name] = sub.add_parser(name, help=text, allow_abbrev=False, formatter_class=fmt)
        parsers[name].add_argument("--name", default="default", help="instance name (several may run)")
    start = parsers["start"]
    start.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    start.add_argument("--log", default=None, help="the server's log (default: beside its state file)")
    start.add_argument(
        "--timeout",
        type=float,
        default=server_cls.startup_timeout_s_default,
        help="seconds to wait for /health",
    )
    parsers["stop"].add_argument(
        "--grace",
        type=float,
        default=server_cls.stop_grace_s_default,
        help="seconds between SIGTERM and SIGKILL",
    )
    args = ap.parse_args(argv)
    args.server_args = server_args
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    verbs = {"start": _cmd_start, "stop": _cmd_stop, "status": _cmd_status}
    try:
        if args.cmd == "setup":
            return setup(args)
        return verbs[args.cmd](server_cls, args)
    except EngineUnavailable as exc:
        if (
            exc.hardware
        ):  # not an error of the project's: say so, with its own exit code (setup_vllm.sh skips)
            print(f"unavailable on this machine: {exc}", file=sys.stderr)
            return 3
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except LauncherError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
