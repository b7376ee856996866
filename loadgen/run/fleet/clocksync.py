"""Cristian's method: a sender's clock offset to the driver's, with the uncertainty that bounds it.

A sender reads its own monotonic clock (``perf_counter_ns``) at ``a``, asks the reference (the driver's host) for
its wall-clock time ``r``, and reads its clock again at ``b`` on the answer. The reference read its clock somewhere
between ``a`` and ``b``, so ``r`` happened at local ``(a + b) / 2`` give or take ``(b - a) / 2``: the offset
``r - (a + b) / 2`` maps local monotonic time onto the reference's wall clock, and half the round trip bounds its
error whatever the asymmetry of the two directions. Of several round trips the one with the smallest round trip
is kept (the others were delayed on the way, by the network or by a scheduler), as Cristian proposed.

Pure and deterministic: the probe is a function (a Ray call in an actor, anything in a test).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from time import perf_counter_ns

__all__ = ["ClockOffset", "DEFAULT_ROUNDS", "cristian", "measure"]

DEFAULT_ROUNDS = 16


@dataclass(frozen=True, slots=True)
class ClockOffset:
    """reference time = local time + ``offset_ns``, within ± ``uncertainty_ns``."""

    offset_ns: int
    uncertainty_ns: int
    rtt_ns: int  # the smallest round trip, the one the offset comes from
    rounds: int

    def to_local(self, reference_ns: int) -> int:
        """The local clock's reading at the reference's instant ``reference_ns``."""
        return reference_ns - self.offset_ns

    def as_dict(self) -> dict[str, int]:
        return {
            "offset_ns": self.offset_ns,
            "uncertainty_ns": self.uncertainty_ns,
            "rtt_ns": self.rtt_ns,
            "rounds": self.rounds,
        }


def cristian(samples: Iterable[tuple[int, int, int]]) -> ClockOffset:
    """The offset from ``(local before, reference, local after)`` samples: the one with the smallest round trip."""
    best: tuple[int, int, int] | None = None
    n = 0
    for a, r, b in samples:
        if b < a:
            raise ValueError(f"a round trip that ends before it starts: {a} > {b}")
        n += 1
        if best is None or b - a < best[2] - best[0]:
            best = (a, r, b)
    if best is None:
        raise ValueError("no round trips to estimate a clock offset from")
    a, r, b = best
    rtt = b - a
    # (a + b) // 2 without overflow worries (Python ints); the half round trip rounded up so it still bounds
    return ClockOffset(offset_ns=r - (a + b) // 2, uncertainty_ns=(rtt + 1) // 2, rtt_ns=rtt, rounds=n)


def measure(
    probe: Callable[[], int], rounds: int = DEFAULT_ROUNDS, local: Callable[[], int] = perf_counter_ns
) -> ClockOffset:
    """``rounds`` round trips to ``probe`` (it returns the reference's time in ns), kept by Cristian's rule."""
    if rounds < 1:
        raise ValueError("at least one round trip")
    samples = []
    for _ in range(rounds):
        a = local()
        r = probe()
        b = local()
        samples.append((a, int(r), b))
    return cristian(samples)
