"""No collector pass beyond the young generation while requests are in flight (issue 18 item 10).

At 10,000 open streams every sender stalled once per run (1,048 ms with one sender): before 1,000 requests had
finished, nothing was frozen, the young generations grew to every stream in flight, and the collector's older
passes rescanned them all. Now what survives is frozen every 1,000 sent requests too, and no full pass runs while
sending. Scaled down here (a gen-0 threshold of 2,000 and a freeze every 100 requests, ~800 streams open before the
first 100 finish), the run's own self-check counts the collector's passes per generation.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from loadgen.config import EndpointConfig, OutputConfig, RunConfig, ScheduleConfig, ScrapeConfig
from loadgen.run import dispatch
from loadgen.run.runner import run_async
from tests.scripted_server import DONE, Script, ServerProcess, chat_chunk, usage_chunk


def test_no_gen1_or_full_collection_while_hundreds_of_streams_are_open(tmp_path, monkeypatch):
    monkeypatch.setattr(dispatch, "_GC_GEN0_THRESHOLD", 2_000)
    monkeypatch.setattr(dispatch, "_GC_FREEZE_EVERY", 100)
    writes = [(0.0, chat_chunk(role=True))] + [(0.1, chat_chunk(content="x")) for _ in range(20)]
    writes.append((0, chat_chunk(finish="stop") + usage_chunk(4, 20) + DONE))
    cfg = RunConfig(
        endpoint=EndpointConfig(base_url="http://127.0.0.1:1", model="scripted", timeout_s=60),
        schedule=ScheduleConfig(arrival="constant", rate=400.0, num_requests=800, seed=1),
        scrape=ScrapeConfig(enabled=False),
        output=OutputConfig(output_dir=str(tmp_path / "out"), report=False),
    )
    with ServerProcess(tmp_path / "srv", default=Script(writes)) as srv:
        cfg = replace(cfg, endpoint=replace(cfg.endpoint, base_url=srv.base_url))
        res = asyncio.run(run_async(cfg, install_signal_handlers=False))
    assert [r.status for r in res.records].count("ok") == 800
    gc_passes = {g: d["passes"] for g, d in res.summary["client_check"]["gc"].items()}
    assert gc_passes["gen0"] > 0, gc_passes  # the young generation was collected: the test saw allocation
    assert gc_passes["gen1"] == 0 and gc_passes["gen2"] == 0, gc_passes
