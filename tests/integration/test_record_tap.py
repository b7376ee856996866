"""The one place finished records are observed (``loadgen.run.runner.RecordTap``): every record once, whoever sent it.

A run of one sender (in this process) and a run of two local sender processes against the built-in simulator:
the observers see exactly the records that ``requests.jsonl`` holds, each once, with the same content.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import orjson
import pytest

from loadgen.config import (
    EndpointConfig,
    OutputConfig,
    RunConfig,
    SamplingConfig,
    ScheduleConfig,
    ScrapeConfig,
    SendersConfig,
)
from loadgen.records.record import RequestRecord
from loadgen.run.runner import run_async


@pytest.mark.parametrize("workers", [1, 2])
def test_observers_see_every_record_of_the_file_once(tmp_path, workers):
    cfg = RunConfig(
        endpoint=EndpointConfig(base_url="http://127.0.0.1:0", simulated=True, timeout_s=30.0),
        schedule=ScheduleConfig(rate=40.0, num_requests=30, warmup=2, seed=4),
        sampling=SamplingConfig(max_tokens=16),
        scrape=ScrapeConfig(enabled=False),
        output=OutputConfig(output_dir=str(tmp_path / "out"), report=False, live=False),
    )
    cfg = replace(cfg, senders=SendersConfig(workers=workers))
    seen: list[RequestRecord] = []
    res = asyncio.run(run_async(cfg, install_signal_handlers=False, observers=[seen.append]))
    lines = (tmp_path / "out" / "requests.jsonl").read_bytes().splitlines()
    on_disk = {d["index"]: d for d in map(orjson.loads, lines)}
    assert len(on_disk) == 32 == len(lines)  # 2 warm-up requests + 30 measured
    assert sorted(r.index for r in seen) == sorted(on_disk) == list(range(32))
    for r in seen:
        d = on_disk[r.index]
        assert (r.status, r.completion_tokens, r.intended_ns, r.warmup) == (
            d["status"],
            d["completion_tokens"],
            d["intended_ns"],
            d["warmup"],
        )
    assert ("senders" in res.summary) == (workers > 1)
