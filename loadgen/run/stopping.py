"""Why a run stops early: Ctrl-C / SIGTERM (:class:`Interrupt`) and a key the server refuses (:class:`AuthStop`)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from typing import Any

from loadgen.plan.clock import RunClock
from loadgen.records.record import RequestRecord
from loadgen.run.sender import STOP_GRACE_S

__all__ = ["AuthStop", "Interrupt"]


class AuthStop:
    """Stops a run whose first requests (``FIRST``, or all when fewer are planned) were all refused with 401/403.

    A wrong or missing key cannot be measured around: sending the rest only repeats the refusal (200 x 401 was
    seen). The verdict is taken on the first requests to finish, warm-up included.
    """

    FIRST = 10

    def __init__(self, planned: int) -> None:
        self.n = max(1, min(self.FIRST, planned))
        self.seen = 0
        self.statuses: set[int] = set()
        self.reason: str | None = None

    def observe(self, rec: RequestRecord) -> bool:
        """True once, when the run should stop."""
        if self.seen >= self.n:
            return False
        self.seen += 1
        if rec.http_status in (401, 403):
            self.statuses.add(rec.http_status)
        else:
            self.seen = self.n  # one request was not refused: never stop for this
            return False
        if self.seen == self.n:
            codes = "/".join(str(c) for c in sorted(self.statuses))
            self.reason = (
                f"stopped: the first {self.n} requests were all refused with HTTP {codes}; "
                "check --api-key / OPENAI_API_KEY and --header"
            )
            return True
        return False


class Interrupt:
    """Ctrl-C / SIGTERM, installed while the fleet sends: the first stops every sender (in-flight requests get
    STOP_GRACE_S), the second cancels what is in flight. A sender's stop for another reason (AuthStop) is not an
    interruption."""

    def __init__(self, fleet: Any, console: Any, clock: RunClock) -> None:
        self.fleet, self.console, self.clock = fleet, console, clock
        self.interrupted = False
        self.at_ns: int | None = None  # when (ns since t0): requests planned later were never to be sent

    def __call__(self) -> None:
        if self.interrupted:
            self.fleet.cancel()
            return
        self.interrupted = True
        self.at_ns = self.clock.now_ns() if self.clock.started else 0
        self.fleet.stop()
        if self.console is None:
            return
        in_flight = getattr(self.fleet, "in_flight", None)
        if in_flight is not None:  # one sender, here: how many it waits for
            self.console.print(
                f"[yellow]interrupted: no new requests; waiting up to {STOP_GRACE_S:g} s for "
                f"{in_flight()} in flight (Ctrl-C again to stop now)[/]"
            )
        else:
            self.console.print(
                f"[yellow]interrupted: every sender stops sending; in-flight requests get up to {STOP_GRACE_S:g} s "
                "(Ctrl-C again to stop now)[/]"
            )

    @contextlib.contextmanager
    def installed(self, enabled: bool) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        done = False
        if enabled:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signal.SIGINT, self)
                loop.add_signal_handler(signal.SIGTERM, self)
                done = True
        try:
            yield
        finally:
            if done:
                loop.remove_signal_handler(signal.SIGINT)
                loop.remove_signal_handler(signal.SIGTERM)
