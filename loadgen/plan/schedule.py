"""Arrival processes as plans: absolute int64 send offsets (ns since the run's start), computed up front.

Pure and seeded: no clock, no I/O. The dispatcher only reads the plan. Offsets are never rescaled to fit a duration
(which would distort the process) and never re-anchored when the sender falls behind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loadgen.config import ScheduleConfig
from loadgen.errors import ConfigError, WorkloadError
from loadgen.workload.traces import Trace, read_trace

__all__ = ["GammaSchedule", "Schedule", "TraceSchedule", "arrivals_of", "make_schedule"]

NS_PER_S = 1_000_000_000


@dataclass(frozen=True, slots=True)
class GammaSchedule:
    """Inter-arrival gaps i.i.d. Gamma(shape=1/cv², scale=cv²/rate): mean rate ``rate``, gap CV ``cv``.

    ``cv == 1`` is a Poisson process, ``cv == 0`` constant spacing, ``rate == inf`` everything at t=0.
    The first request is sent at t=0 and gap *i* separates request *i* from *i+1*.
    """

    rate: float
    cv: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.rate > 0):
            raise ConfigError(f"--rate must be > 0 (or inf), got {self.rate}")
        if not (self.cv >= 0) or math.isinf(self.cv):
            raise ConfigError(f"--cv must be a finite number >= 0, got {self.cv}")

    @property
    def kind(self) -> str:
        if math.isinf(self.rate):
            return "burst"
        if self.cv == 0:
            return "constant"
        if self.cv == 1:
            return "poisson"
        return "gamma"

    def gaps_s(self, n: int) -> np.ndarray:
        """The first ``n`` gaps, in seconds (float64)."""
        if n <= 0:
            return np.zeros(0)
        if math.isinf(self.rate):
            return np.zeros(n)
        if self.cv == 0:
            return np.full(n, 1.0 / self.rate)
        shape = 1.0 / (self.cv * self.cv)
        scale = self.cv * self.cv / self.rate
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x5C4ED]))
        return rng.gamma(shape, scale, size=n)

    def offsets_ns(self, n: int | None = None, duration_s: float | None = None) -> np.ndarray:
        """Send offsets for at most ``n`` requests and/or those falling before ``duration_s``."""
        if n is None and duration_s is None:
            raise ConfigError("a schedule needs --num-requests and/or --duration")
        if n is not None:
            gaps = self.gaps_s(max(n - 1, 0))
            offsets = np.concatenate(([0.0], np.cumsum(gaps)))[: max(n, 0)]
        else:
            if math.isinf(self.rate):
                raise ConfigError("--rate inf needs --num-requests (a duration alone would send without end)")
            # Draw in blocks until the duration is covered; the same seed gives the same prefix.
            block = max(int(self.rate * duration_s * 1.5) + 16, 64)
            gaps = self.gaps_s(block)
            while gaps.sum() <= duration_s:
                block *= 2
                gaps = self.gaps_s(block)
            offsets = np.concatenate(([0.0], np.cumsum(gaps)))
        out = np.round(offsets * NS_PER_S).astype(np.int64)
        if duration_s is not None:
            out = out[out < int(duration_s * NS_PER_S)]
        return out

    def describe(self) -> dict[str, object]:
        shape = None if self.cv == 0 or math.isinf(self.rate) else 1.0 / (self.cv * self.cv)
        scale = None if shape is None else self.cv * self.cv / self.rate
        return {
            "arrival": self.kind,
            "rate": "inf" if math.isinf(self.rate) else self.rate,
            "cv": self.cv,
            "gamma_shape": shape,
            "gamma_scale_s": scale,
            "seed": self.seed,
        }


@dataclass(frozen=True, slots=True)
class TraceSchedule:
    """Send times replayed from a file of timestamps (seconds, one per line, or the first CSV column).

    Offsets are relative to the first timestamp kept; ``speedup`` divides every gap (2.0 replays twice as fast).
    """

    offsets: tuple[int, ...]
    source: str = ""
    speedup: float = 1.0

    @classmethod
    def from_file(cls, path: str | Path, speedup: float = 1.0) -> TraceSchedule:
        if speedup <= 0:
            raise ConfigError(f"--trace-speedup must be > 0, got {speedup}")
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise WorkloadError(f"cannot read arrival trace {path}: {exc.strerror or exc}") from None
        values: list[float] = []
        for lineno, line in enumerate(text.splitlines(), 1):
            field = line.split(",")[0].strip()
            if not field or field.startswith("#"):
                continue
            try:
                values.append(float(field))
            except ValueError:
                if not values and lineno == 1:
                    continue  # a header line
                raise WorkloadError(f"{path}:{lineno}: not a timestamp: {field[:40]!r}") from None
        if not values:
            raise WorkloadError(f"arrival trace {path} has no timestamps")
        ts = np.sort(np.asarray(values, dtype=np.float64))
        rel = (ts - ts[0]) / speedup
        return cls(tuple(int(x) for x in np.round(rel * NS_PER_S)), str(path), speedup)

    @classmethod
    def from_offsets_ns(cls, offsets: np.ndarray, source: str = "", speedup: float = 1.0) -> TraceSchedule:
        return cls(tuple(int(x) for x in np.sort(offsets)), source, speedup)

    @property
    def kind(self) -> str:
        return "trace"

    def offsets_ns(self, n: int | None = None, duration_s: float | None = None) -> np.ndarray:
        out = np.asarray(self.offsets, dtype=np.int64)
        if n is not None:
            out = out[:n]
        if duration_s is not None:
            out = out[out < int(duration_s * NS_PER_S)]
        return out

    def describe(self) -> dict[str, object]:
        n = len(self.offsets)
        span = (self.offsets[-1] - self.offsets[0]) / NS_PER_S if n > 1 else 0.0
        gaps = np.diff(np.asarray(self.offsets, dtype=np.float64)) / NS_PER_S
        cv = float(gaps.std() / gaps.mean()) if n > 2 and gaps.mean() > 0 else None
        return {
            "arrival": "trace",
            "source": self.source,
            "speedup": self.speedup,
            "requests_in_trace": n,
            "rate": (n - 1) / span if span > 0 else None,
            "cv": cv,
        }


Schedule = GammaSchedule | TraceSchedule


def make_schedule(arrival: str, rate: float, cv: float, seed: int) -> GammaSchedule:
    """Map ``--arrival`` onto a Gamma schedule: constant is cv 0, poisson is cv 1."""
    if arrival == "constant":
        return GammaSchedule(rate, 0.0, seed)
    if arrival == "poisson":
        return GammaSchedule(rate, 1.0, seed)
    if arrival == "gamma":
        return GammaSchedule(rate, cv, seed)
    raise ConfigError(f"--arrival must be constant, poisson, gamma or trace, got {arrival!r}")


def arrivals_of(s: ScheduleConfig) -> tuple[Schedule, Trace | None]:
    """The run's arrival process: Gamma (rate, cv) for ``--arrival constant|poisson|gamma``, else the timestamps of
    ``--trace``; the trace is read once here and returned too (its lengths can be the workload)."""
    if s.arrival != "trace":
        return make_schedule(s.arrival, s.rate, s.cv, s.seed), None
    assert s.trace_path
    trace = read_trace(
        s.trace_path, s.trace_format, speedup=s.trace_speedup, start_s=s.trace_start_s, end_s=s.trace_end_s
    )
    return TraceSchedule.from_offsets_ns(trace.arrival_ns, s.trace_path, s.trace_speedup), trace
