"""The run clock: one t0 on ``perf_counter_ns()`` that every timestamp of a run is measured from.

``perf_counter_ns()`` reads CLOCK_MONOTONIC on Linux, one clock for every process of the host, so senders in
several processes can share a t0 chosen by one of them. The clock is handed to the client and the dispatcher when
they are built and set once, when the run starts (after the server was reached and everything was warmed, so that
setup never makes the first planned sends late); both read it only when they send. ``t0_unix_ns`` is the
wall-clock time of the same instant, the run's one wall-clock anchor.
"""

from __future__ import annotations

import time
from time import perf_counter_ns

__all__ = ["ClockNotStarted", "RunClock"]


class ClockNotStarted(RuntimeError):
    """A timestamp was asked of a clock whose t0 has not been chosen yet (a bug in the composition)."""


class RunClock:
    """t0 (``perf_counter_ns``) and its wall-clock anchor; set once, at construction or by :meth:`start`."""

    __slots__ = ("_t0_ns", "_t0_unix_ns")

    def __init__(self, t0_ns: int | None = None, t0_unix_ns: int | None = None) -> None:
        self._t0_ns = t0_ns
        self._t0_unix_ns = t0_unix_ns if t0_unix_ns is not None or t0_ns is None else _unix_at(t0_ns)

    @classmethod
    def of(cls, clock: RunClock | int) -> RunClock:
        """``clock`` itself, or a clock started at that ``perf_counter_ns`` value."""
        return clock if isinstance(clock, RunClock) else cls(int(clock))

    @property
    def started(self) -> bool:
        return self._t0_ns is not None

    @property
    def t0_ns(self) -> int:
        t0 = self._t0_ns
        if t0 is None:
            raise ClockNotStarted("the run clock was read before the run started")
        return t0

    @property
    def t0_unix_ns(self) -> int:
        self.t0_ns  # noqa: B018 - the same check
        assert self._t0_unix_ns is not None
        return self._t0_unix_ns

    def start(self, lead_ns: int = 0) -> int:
        """Choose t0 ``lead_ns`` from now (a little ahead, so the first send at offset 0 is not late by our own
        last steps); returns it. A clock starts once."""
        if self._t0_ns is not None:
            raise RuntimeError("the run clock has already started")
        self._t0_ns = perf_counter_ns() + lead_ns
        self._t0_unix_ns = time.time_ns() + lead_ns
        return self._t0_ns

    def start_at(self, t0_ns: int, t0_unix_ns: int) -> None:
        """Start at a t0 chosen elsewhere: by the driver of a multi-process run (the same CLOCK_MONOTONIC on one
        host), or mapped onto this host's monotonic clock from the driver's wall-clock start (a Ray actor)."""
        if self._t0_ns is not None:
            raise RuntimeError("the run clock has already started")
        self._t0_ns, self._t0_unix_ns = int(t0_ns), int(t0_unix_ns)

    def now_ns(self) -> int:
        """Nanoseconds since t0 (negative before it)."""
        return perf_counter_ns() - self.t0_ns

    def __getstate__(self) -> tuple[int | None, int | None]:  # sent to sender processes
        return self._t0_ns, self._t0_unix_ns

    def __setstate__(self, state: tuple[int | None, int | None]) -> None:
        self._t0_ns, self._t0_unix_ns = state

    def __repr__(self) -> str:
        return f"RunClock(t0_ns={self._t0_ns}, t0_unix_ns={self._t0_unix_ns})"


def _unix_at(t0_ns: int) -> int:
    """The wall-clock time of the ``perf_counter_ns`` instant ``t0_ns``."""
    return time.time_ns() + (t0_ns - perf_counter_ns())
