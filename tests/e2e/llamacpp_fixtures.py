"""Fixtures of the llama.cpp tier: a real ``llama-server`` on 127.0.0.1 (server_launchers/local_llamacpp.py).

It runs on any x86-64 or ARM CPU, so it is never skipped for hardware reasons: when the binary or the model is not
set up (``bash .ci/setup_llamacpp.sh`` builds them; the tests build them only with ``LOADGEN_BUILD_ENGINES=1``) or
cannot be had, the tests SKIP with the reason on a developer's machine and FAIL under ``CI``, where
``.ci/setup_llamacpp.sh`` has built them already.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

import server_launchers.local_llamacpp as local_llamacpp
from server_launchers.local_llamacpp import LocalLlamaCppServer, ensure_binary, ensure_model
from tests.e2e.server_pool import EngineSetup, ServerPool, terminal_say

MAX_ALIVE = 2


def _prepare() -> tuple[Path, Path]:
    return ensure_binary(), ensure_model()  # looked up when called, so a test can replace them


def new_setup() -> EngineSetup[tuple[Path, Path]]:
    """The binary and the model, tried once per session (never a hardware skip: llama.cpp runs on any CPU)."""
    return EngineSetup(
        "llama.cpp llama-server",
        _prepare,
        is_set_up=lambda: local_llamacpp.is_set_up(),  # looked up when called, so a test can replace it
        command="bash .ci/setup_llamacpp.sh",
    )


_setup = new_setup()


@pytest.fixture(scope="session")
def llamacpp_setup(pytestconfig) -> tuple[Path, Path]:
    """(binary, model), or skip/fail with the reason."""
    return _setup.require(terminal_say(pytestconfig))


@pytest.fixture(scope="session")
def llamacpp_server(llamacpp_setup, tmp_path_factory) -> Callable[[Sequence[str]], LocalLlamaCppServer]:
    """Factory: ``llamacpp_server(["--reasoning-budget", "-1"])`` -> a healthy server (extra flags after the
    launcher's defaults); one per distinct argument list, at most ``MAX_ALIVE`` alive, stopped at session end."""
    binary, model = llamacpp_setup
    pool = ServerPool(
        lambda args, log: LocalLlamaCppServer(args, binary=binary, model=model, log_path=log),
        tmp_path_factory.mktemp("llamacpp-logs"),
        MAX_ALIVE,
    )
    yield pool.get
    pool.close()
