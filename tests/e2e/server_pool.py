"""What both real-engine tiers share: the skip-or-fail policy of a set-up, and a pool of servers by argument list.

* ``EngineSetup(what, prepare)`` runs ``prepare`` once per session and remembers why it failed. A machine that
  cannot run the engine at all (``EngineUnavailable(hardware=True)``: hardware the project cannot change) SKIPS,
  in CI too; any other failure FAILS under ``CI`` (set and not false/0/no) and SKIPS elsewhere, with the reason.
* ``ServerPool(make, log_dir)`` hands out one healthy server per distinct argument list, reused across tests, at
  most ``max_alive`` alive at once (the least recently used is stopped first), all stopped by ``close()``.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

import pytest

from server_launchers.lifecycle import EngineUnavailable
from server_launchers.local_server import LocalServer

T = TypeVar("T")
S = TypeVar("S", bound=LocalServer)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


class EngineSetup(Generic[T]):
    """``prepare()``, tried once per session; the failure reason is remembered."""

    def __init__(self, what: str, prepare: Callable[[], T]) -> None:
        self.what, self.prepare = what, prepare
        self.done = False
        self.result: T | None = None
        self.reason: str | None = None
        self.hardware = False

    def require(self) -> T:
        if not self.done:
            self.done = True
            try:
                self.result = self.prepare()
            except EngineUnavailable as exc:
                self.reason = str(exc)
                self.hardware = exc.hardware
        if self.reason is not None:
            msg = f"{self.what} unavailable: {self.reason}"
            if in_ci() and not self.hardware:
                pytest.fail(f"{msg} (CI is set, so this is a failure, not a skip)", pytrace=False)
            pytest.skip(msg.splitlines()[0])
        assert self.result is not None
        return self.result


class ServerPool(Generic[S]):
    """``pool.get(extra_args)`` -> a healthy server made by ``make(args, log_path)``; ServerStartError propagates
    (a server that is set up but does not start is a real failure)."""

    def __init__(self, make: Callable[[tuple[str, ...], Path], S], log_dir: Path, max_alive: int = 2) -> None:
        self.make, self.log_dir, self.max_alive = make, log_dir, max_alive
        self.servers: OrderedDict[tuple[str, ...], S] = OrderedDict()

    def get(self, extra_args: Sequence[str] = ()) -> S:
        key = tuple(str(a) for a in extra_args)
        srv = self.servers.get(key)
        if srv is not None and srv.is_alive():
            self.servers.move_to_end(key)
            return srv
        self.servers.pop(key, None)
        while len(self.servers) >= self.max_alive:
            _, old = self.servers.popitem(last=False)
            old.stop()
        srv = self.make(key, self.log_dir / f"{len(os.listdir(self.log_dir))}.log")
        srv.start()
        self.servers[key] = srv
        return srv

    def close(self) -> None:
        for srv in self.servers.values():
            srv.stop()
