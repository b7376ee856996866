"""loadgen: an open-loop, reasoning-aware load generator and measurement instrument for LLM inference servers.

Public API::

    from loadgen import RunConfig, EndpointConfig, run
    result = run(RunConfig(endpoint=EndpointConfig(base_url="http://127.0.0.1:8000")))

Everything else is internal and may change.
"""

from typing import Any

from loadgen.config import (
    AnalysisConfig,
    EndpointConfig,
    LengthDist,
    OutputConfig,
    RunConfig,
    SamplingConfig,
    ScheduleConfig,
    ScrapeConfig,
    SimConfig,
    Slo,
    WorkloadConfig,
)
from loadgen.records.record import RequestRecord
from loadgen.version import __version__


def read_records(path: Any) -> list[RequestRecord]:
    """Every record of a ``requests.jsonl`` (see :func:`loadgen.records.columns.read_records`); imported when called."""
    from loadgen.records.columns import read_records as _read

    return _read(path)


def run(config: RunConfig, **kwargs):  # type: ignore[no-untyped-def]
    """Run one measurement (see :func:`loadgen.run.runner.run`); imported lazily to keep ``import loadgen`` light."""
    from loadgen.run.runner import run as _run

    return _run(config, **kwargs)


__all__ = [
    "AnalysisConfig",
    "EndpointConfig",
    "LengthDist",
    "OutputConfig",
    "RequestRecord",
    "RunConfig",
    "SamplingConfig",
    "ScheduleConfig",
    "ScrapeConfig",
    "SimConfig",
    "Slo",
    "WorkloadConfig",
    "read_records",
    "run",
    "__version__",
]
