"""What both real-engine tiers share: the skip-or-fail policy of a set-up, and a pool of servers by argument list.

* ``EngineSetup(what, prepare, ...)`` decides once per session. Tests never build an engine unless asked
  (``LOADGEN_BUILD_ENGINES=1``; ``.ci/run`` builds them first with ``.ci/setup_*.sh``): an engine that is not set
  up is not built, so ``python -m pytest`` on a fresh machine takes minutes, not a 20-minute C++ build. A machine
  that cannot run the engine at all (``EngineUnavailable(hardware=True)``: hardware the project cannot change)
  SKIPS, in CI too; an engine not set up, or whose set-up failed, FAILS under ``CI`` (set and not false/0/no) and
  SKIPS elsewhere, with the reason and the command that sets it up. A build that was asked for prints progress.
* ``ServerPool(make, log_dir)`` hands out one healthy server per distinct argument list, reused across tests, at
  most ``max_alive`` alive at once (the least recently used is stopped first), all stopped by ``close()``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Generic, TypeVar

import pytest

from server_launchers.lifecycle import EngineUnavailable
from server_launchers.local_server import LocalServer

T = TypeVar("T")
S = TypeVar("S", bound=LocalServer)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def build_asked() -> bool:
    """``LOADGEN_BUILD_ENGINES`` set (and not false/0/no): tests may build an engine that is not set up."""
    return os.environ.get("LOADGEN_BUILD_ENGINES", "").strip().lower() not in ("", "0", "false", "no")


class EngineSetup(Generic[T]):
    """``prepare()``, tried once per session when the engine is set up (``is_set_up()``) or a build is asked for;
    the failure reason is remembered. ``hardware()`` says why this machine cannot run the engine at all (or None);
    ``command`` is what sets it up."""

    def __init__(
        self,
        what: str,
        prepare: Callable[[], T],
        *,
        is_set_up: Callable[[], bool] = lambda: True,
        hardware: Callable[[], str | None] = lambda: None,
        command: str = "",
    ) -> None:
        self.what, self.prepare = what, prepare
        self.is_set_up, self.hardware_reason, self.command = is_set_up, hardware, command
        self.done = False
        self.result: T | None = None
        self.reason: str | None = None
        self.hardware = False

    def require(self, say: Callable[[str], None] | None = None) -> T:
        """The prepared engine, or skip/fail with the reason; ``say`` prints progress lines of a build."""
        if not self.done:
            self.done = True
            try:
                self.result = self._prepare(say or print)
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

    def _prepare(self, say: Callable[[str], None]) -> T:
        hardware = self.hardware_reason()  # first: what was set up elsewhere (a shared cache) cannot run here
        if hardware:
            raise EngineUnavailable(hardware, hardware=True)
        if self.is_set_up():
            return self.prepare()
        if not build_asked():
            raise EngineUnavailable(
                f"not set up; `{self.command}` sets it up (or LOADGEN_BUILD_ENGINES=1 lets the tests build it)"
            )
        say(f"{self.what}: not set up; building it (LOADGEN_BUILD_ENGINES is set), progress below")
        handler = _Say(say)
        logger = logging.getLogger("server_launchers")
        level = logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            return self.prepare()
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)


def terminal_say(config: pytest.Config) -> Callable[[str], None]:
    """Print a line on the terminal now, past pytest's output capture (a build's progress during a fixture)."""

    def say(line: str) -> None:
        capman = config.pluginmanager.getplugin("capturemanager")
        reporter = config.pluginmanager.getplugin("terminalreporter")
        with capman.global_and_fixture_disabled() if capman else _nothing():
            if reporter is not None:
                reporter.write_line(line)
            else:
                print(line, flush=True)

    return say


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


class _Say(logging.Handler):
    """A build's log lines (step, heartbeat, done) passed on as progress lines."""

    def __init__(self, say: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self.say = say

    def emit(self, record: logging.LogRecord) -> None:
        self.say(f"  {record.getMessage()}")


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
