"""The e2e tier: tests against a real CPU vLLM on 127.0.0.1 (see server_launchers/local_vllm.py).

* Every test under tests/e2e/ gets the ``e2e`` marker (deselect the tier with ``-m "not e2e"``).
* ``vllm_server(extra_args)`` is a session-scoped factory: one server per distinct argument list,
  reused across tests, at most ``MAX_ALIVE`` alive at once (each takes ~2.7 GB and both cores while
  busy; the least recently used is stopped first), all stopped at session end.
* When this CPU cannot run it (no AVX-512: hardware the project cannot change) the tests SKIP with that
  reason, in CI too. When anything else stops the set-up (the venv cannot be created, the model cannot be
  built): under ``CI`` (set and not false/0) the tests FAIL with the reason; elsewhere they SKIP with it.
  A server that is set up but does not start (bad flag, timeout) always fails: that is a real bug.
* The llama.cpp tier (``test_llamacpp_*.py``, fixtures in ``llamacpp_fixtures.py``) runs on any CPU.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from server_launchers.local_vllm import (
    LocalVllmServer,
    LocalVllmUnavailable,
    ensure_tiny_model,
    ensure_venv,
    read_model_info,
)
from tests.e2e.llamacpp_fixtures import in_ci, llamacpp_server, llamacpp_setup  # noqa: F401 (fixtures)

E2E_DIR = Path(__file__).resolve().parent
MAX_ALIVE = 2


def _in_ci() -> bool:
    return in_ci()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if E2E_DIR in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


class _Setup:
    """Venv + model, tried once per session; the failure reason is remembered."""

    def __init__(self) -> None:
        self.done = False
        self.venv: Path | None = None
        self.model_dir: Path | None = None
        self.reason: str | None = None
        self.hardware = False

    def require(self) -> tuple[Path, Path]:
        if not self.done:
            self.done = True
            try:
                self.venv = ensure_venv()
                self.model_dir = ensure_tiny_model(self.venv)
            except LocalVllmUnavailable as exc:
                self.reason = str(exc)
                self.hardware = exc.hardware
        if self.reason is not None:
            msg = f"local CPU vLLM unavailable: {self.reason}"
            if _in_ci() and not self.hardware:
                pytest.fail(f"{msg} (CI is set, so this is a failure, not a skip)", pytrace=False)
            pytest.skip(msg.splitlines()[0])
        assert self.venv is not None and self.model_dir is not None
        return self.venv, self.model_dir


_setup = _Setup()


@pytest.fixture(scope="session")
def vllm_setup() -> tuple[Path, Path]:
    """(venv, model_dir), or skip/fail with the reason."""
    return _setup.require()


@pytest.fixture(scope="session")
def tiny_model_info(vllm_setup) -> dict:
    """The tiny model's token ids etc. (``think_end_id`` for a logit_bias that ends reasoning)."""
    return read_model_info(vllm_setup[1])


@pytest.fixture(scope="session")
def vllm_server(vllm_setup, tmp_path_factory) -> Callable[[Sequence[str]], LocalVllmServer]:
    """Factory: ``vllm_server(["--reasoning-parser", "deepseek_r1"])`` -> a healthy LocalVllmServer."""
    venv, model_dir = vllm_setup
    servers: OrderedDict[tuple[str, ...], LocalVllmServer] = OrderedDict()
    log_dir = tmp_path_factory.mktemp("vllm-logs")

    def get(extra_args: Sequence[str] = ()) -> LocalVllmServer:
        key = tuple(str(a) for a in extra_args)
        srv = servers.get(key)
        if srv is not None and srv.is_alive():
            servers.move_to_end(key)
            return srv
        servers.pop(key, None)
        while len(servers) >= MAX_ALIVE:
            _, old = servers.popitem(last=False)
            old.stop()
        srv = LocalVllmServer(
            key, venv=venv, model_dir=model_dir, log_path=log_dir / f"vllm-{len(os.listdir(log_dir))}.log"
        )
        srv.start()  # ServerStartError propagates: a real failure
        servers[key] = srv
        return srv

    yield get
    for srv in servers.values():
        srv.stop()
