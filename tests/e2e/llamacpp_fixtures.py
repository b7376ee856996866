"""Fixtures of the llama.cpp tier: a real ``llama-server`` on 127.0.0.1 (server_launchers/local_llamacpp.py).

It runs on any x86-64 or ARM CPU, so it is never skipped for hardware reasons: when the binary or the model cannot
be had (no compiler, a failed download or build) the tests SKIP with the reason on a developer's machine and FAIL
under ``CI``, where ``.ci/setup_llamacpp.sh`` has built them already.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from server_launchers.lifecycle import EngineUnavailable
from server_launchers.local_llamacpp import LocalLlamaCppServer, ensure_binary, ensure_model

MAX_ALIVE = 2


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


class _Setup:
    def __init__(self) -> None:
        self.done = False
        self.paths: tuple[Path, Path] | None = None
        self.reason: str | None = None

    def require(self) -> tuple[Path, Path]:
        if not self.done:
            self.done = True
            try:
                self.paths = (ensure_binary(), ensure_model())
            except EngineUnavailable as exc:
                self.reason = str(exc)
        if self.reason is not None:
            msg = f"llama.cpp llama-server unavailable: {self.reason}"
            if in_ci():
                pytest.fail(f"{msg} (CI is set, so this is a failure, not a skip)", pytrace=False)
            pytest.skip(msg.splitlines()[0])
        assert self.paths is not None
        return self.paths


_setup = _Setup()


@pytest.fixture(scope="session")
def llamacpp_setup() -> tuple[Path, Path]:
    """(binary, model), or skip/fail with the reason."""
    return _setup.require()


@pytest.fixture(scope="session")
def llamacpp_server(llamacpp_setup, tmp_path_factory) -> Callable[[Sequence[str]], LocalLlamaCppServer]:
    """Factory: ``llamacpp_server(["--reasoning-budget", "-1"])`` -> a healthy server (extra flags after the
    launcher's defaults); one per distinct argument list, at most ``MAX_ALIVE`` alive, stopped at session end."""
    binary, model = llamacpp_setup
    servers: OrderedDict[tuple[str, ...], LocalLlamaCppServer] = OrderedDict()
    log_dir = tmp_path_factory.mktemp("llamacpp-logs")

    def get(extra_args: Sequence[str] = ()) -> LocalLlamaCppServer:
        key = tuple(str(a) for a in extra_args)
        srv = servers.get(key)
        if srv is not None and srv.is_alive():
            servers.move_to_end(key)
            return srv
        servers.pop(key, None)
        while len(servers) >= MAX_ALIVE:
            _, old = servers.popitem(last=False)
            old.stop()
        srv = LocalLlamaCppServer(
            key, binary=binary, model=model, log_path=log_dir / f"llama-server-{len(os.listdir(log_dir))}.log"
        )
        srv.start()  # ServerStartError propagates: a real failure
        servers[key] = srv
        return srv

    yield get
    for srv in servers.values():
        srv.stop()
