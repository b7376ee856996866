"""The e2e tier: tests against a real CPU vLLM on 127.0.0.1 (see server_launchers/local_vllm.py).

* Every test under tests/e2e/ gets the ``e2e`` marker (deselect the tier with ``-m "not e2e"``).
* ``vllm_server(extra_args)`` is a session-scoped factory: one server per distinct argument list,
  reused across tests, at most ``MAX_ALIVE`` alive at once (each takes ~2.7 GB and both cores while
  busy; the least recently used is stopped first), all stopped at session end.
* When this CPU cannot run it (no AVX-512: hardware the project cannot change) the tests SKIP with that
  reason, in CI too. When it is not set up (``bash .ci/setup_vllm.sh`` sets it up; the tests build it only with
  ``LOADGEN_BUILD_ENGINES=1``) or anything else stops the set-up: under ``CI`` (set and not false/0) the tests
  FAIL with the reason; elsewhere they SKIP with it and the command that sets it up.
  A server that is set up but does not start (bad flag, timeout) always fails: that is a real bug.
* The llama.cpp tier (``test_llamacpp*.py``, fixtures in ``llamacpp_fixtures.py``) runs on any CPU.
* Both tiers' set-up policy and server pool are ``server_pool.py``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

import server_launchers.local_vllm as local_vllm
from server_launchers.local_vllm import LocalVllmServer, ensure_tiny_model, ensure_venv, read_model_info
from tests.e2e.llamacpp_fixtures import llamacpp_server, llamacpp_setup  # noqa: F401 (fixtures)
from tests.e2e.server_pool import EngineSetup, ServerPool, terminal_say

E2E_DIR = Path(__file__).resolve().parent
MAX_ALIVE = 2


def pytest_collection_modifyitems(config, items):
    for item in items:
        if E2E_DIR in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


def _prepare() -> tuple[Path, Path]:
    venv = ensure_venv()  # looked up when called, so a test can replace it
    return venv, ensure_tiny_model(venv)


def new_setup() -> EngineSetup[tuple[Path, Path]]:
    """The venv and the model, tried once per session (see server_pool.EngineSetup for skip or fail)."""
    return EngineSetup(
        "local CPU vLLM",
        _prepare,
        is_set_up=lambda: local_vllm.is_set_up(),  # looked up when called, so a test can replace them
        hardware=lambda: local_vllm.cpu_unsupported_reason(),
        command="bash .ci/setup_vllm.sh",
    )


_setup = new_setup()


@pytest.fixture(scope="session")
def vllm_setup(pytestconfig) -> tuple[Path, Path]:
    """(venv, model_dir), or skip/fail with the reason."""
    return _setup.require(terminal_say(pytestconfig))


@pytest.fixture(scope="session")
def tiny_model_info(vllm_setup) -> dict:
    """The tiny model's token ids etc. (``think_end_id`` for a logit_bias that ends reasoning)."""
    return read_model_info(vllm_setup[1])


@pytest.fixture(scope="session")
def vllm_server(vllm_setup, tmp_path_factory) -> Callable[[Sequence[str]], LocalVllmServer]:
    """Factory: ``vllm_server(["--reasoning-parser", "deepseek_r1"])`` -> a healthy LocalVllmServer."""
    venv, model_dir = vllm_setup
    pool = ServerPool(
        lambda args, log: LocalVllmServer(args, venv=venv, model_dir=model_dir, log_path=log),
        tmp_path_factory.mktemp("vllm-logs"),
        MAX_ALIVE,
    )
    yield pool.get
    pool.close()
