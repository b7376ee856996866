"""Scraping never delays the client: a large /metrics, the first requests of a run, a scraper that fails.

Issue 11 items 1 and 3. The scripted server runs in its own process, so its write times are the truth.
"""

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson

from loadgen.config import (
    EndpointConfig,
    OutputConfig,
    RunConfig,
    SamplingConfig,
    ScheduleConfig,
    ScrapeConfig,
)
from loadgen.records.columns import read_records
from loadgen.run.runner import run_async
from loadgen.scrape.process import PollerProcess
from tests.scripted_server import DONE, Script, ServerProcess, chat_chunk, usage_chunk

ROOT = Path(__file__).resolve().parents[2]
STANDIN = ROOT / "tests" / "data" / "metrics" / "vllm_standin_load.txt"


def big_metrics(copies: int = 80) -> bytes:
    """~5 MB of vLLM metrics: the stand-in text once per engine label (every line a family loadgen reads)."""
    base = STANDIN.read_text()
    return "".join(re.sub(r'engine="(\d+)"', f'engine="{k}"', base) for k in range(copies)).encode()


def stream(n=40, gap=0.005):
    w = [(0.0, chat_chunk(role=True))]
    w += [(gap, chat_chunk(content="c")) for _ in range(n)]
    w.append((0, chat_chunk(finish="stop") + usage_chunk(4, n) + DONE))
    return w


def lateness_ms(res, arrivals) -> np.ndarray:
    """Client stamp - server write time of every token (same CLOCK_MONOTONIC in both processes)."""
    t0 = res.summary["clock"]["t0_ns"]
    recs = sorted(res.records, key=lambda r: r.send_ns)
    posts = sorted((a for a in arrivals if a.path.endswith("/completions")), key=lambda a: a.t_ns)
    out = []
    for r, a in zip(recs, posts, strict=True):
        c = np.asarray(r.chunk_ns, dtype=np.int64) + t0
        out.extend((c - np.asarray(a.writes_ns[1 : 1 + len(c)], dtype=np.int64)) / 1e6)
    return np.asarray(out)


def test_a_large_metrics_text_does_not_delay_stamps(tmp_path):
    """Before: scraping a 5 MB text every 0.1 s (parsed in a worker thread, ~1 s each) made token stamps 44-62 ms
    late at p99 (first tokens 37-70 ms) against 0.4-3 ms without scraping. The scrape now runs in its own process."""
    body = big_metrics()
    assert len(body) > 4_000_000
    results = {}
    for scrape in (False, True):
        with ServerProcess(tmp_path / f"srv{scrape}", default=Script(stream()), metrics_body=body) as srv:
            cfg = RunConfig(
                endpoint=EndpointConfig(base_url=srv.base_url),
                schedule=ScheduleConfig(rate=20.0, num_requests=50, seed=1),
                sampling=SamplingConfig(max_tokens=64),
                scrape=ScrapeConfig(enabled=scrape, interval_s=0.1),
                output=OutputConfig(output_dir=str(tmp_path / f"out{scrape}"), report=False),
            )
            res = asyncio.run(run_async(cfg, install_signal_handlers=False))
        assert all(r.status == "ok" for r in res.records)
        results[scrape] = (res, lateness_ms(res, srv.arrivals))
    res, late = results[True]
    _, base = results[False]
    scrape = res.summary["server"]["scrape"]
    assert scrape["ok"] >= 2 and scrape["bytes_total"] >= 2 * len(body), scrape
    print(
        f"token lateness p99: {np.percentile(base, 99):.2f} ms without scraping, "
        f"{np.percentile(late, 99):.2f} ms with a {len(body) / 1e6:.1f} MB scrape every 0.1 s "
        f"({scrape['ok']} parsed, {scrape['parse_ns_max'] / 1e6:.0f} ms the longest)"
    )
    # the same machine, seconds apart: scraping may cost CPU (two cores here) but never the loop. Measured here:
    # 0.5-4.6 ms with scraping against 0.4-1.2 ms without; before the change 14-62 ms (mostly 44-48 ms).
    assert np.percentile(late, 99) <= 2 * np.percentile(base, 99) + 8


def test_the_first_requests_leave_on_time_with_scraping_on(tmp_path):
    """Before: the poller and its Prometheus parser were imported after t0; the first requests of every default
    run left 20-300 ms late. A fresh interpreter (the CLI) shows it: within one test process they stay imported.

    The bound is on the client's own lateness against its plan (requests at 0, 50 and 100 ms; t0 is set 5 ms
    ahead of the first). A busy machine can preempt one run at the wrong moment, the old bug delayed every run:
    up to three runs are made and one on time passes.
    """
    metrics = STANDIN.read_bytes()
    late = []
    for attempt in range(3):
        with ServerProcess(
            tmp_path / f"srv{attempt}", default=Script(stream(4, 0.001)), metrics_body=metrics
        ) as srv:
            out = tmp_path / f"out{attempt}"
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            cmd = [sys.executable, "-m", "loadgen", "--base-url", srv.base_url, "--arrival", "constant"]
            cmd += ["--rate", "20", "-n", "3", "--max-tokens", "4", "--scrape-interval", "0.05"]
            cmd += ["--output-dir", str(out), "--quiet", "--no-report"]
            subprocess.run(cmd, env=env, cwd=ROOT, check=True, timeout=300)
        recs = sorted(read_records(out / "requests.jsonl"), key=lambda r: r.index)
        assert len(recs) == 3 and all(r.status == "ok" for r in recs)
        samples = [orjson.loads(x) for x in (out / "server_metrics.jsonl").read_bytes().splitlines()]
        assert any("values" in x for x in samples), "scraping was on"
        late.append([(r.dispatched_ns - r.intended_ns) / 1e6 for r in recs])
        if max(late[-1]) < 2.0:
            break
    print("lateness of the first three requests (ms), per run:", late)
    assert min(max(run) for run in late) < 2.0
    assert json.loads((out / "summary.json").read_text())["server"]["scrape"]["ok"] >= 1


def test_the_scraper_process_stops_when_its_parent_is_gone(tmp_path):
    """Its stdin closing (the parent killed) ends the child: one last scrape, then exit."""

    async def main():
        poller = PollerProcess(["http://127.0.0.1:9/metrics"], 0.05, sink_path=tmp_path / "m.jsonl")
        assert await poller.start()
        proc = poller._proc
        poller.begin(0)
        await asyncio.sleep(0.2)
        proc.stdin.close()  # what the parent's death looks like to the child
        code = await asyncio.wait_for(proc.wait(), 60)  # a guard against a hang, not a time limit on the test
        await poller.kill()
        return code

    assert asyncio.run(main()) == 0
    lines = [orjson.loads(x) for x in (tmp_path / "m.jsonl").read_bytes().splitlines()]
    assert lines and all(x["error"] == "connect" for x in lines)


def test_a_scraper_that_cannot_start_is_reported_not_fatal(tmp_path, monkeypatch):
    with ServerProcess(tmp_path / "srv", default=Script(stream(2, 0.001))) as srv:
        monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
        cfg = RunConfig(
            endpoint=EndpointConfig(base_url=srv.base_url),
            schedule=ScheduleConfig(rate=50.0, num_requests=3),
            scrape=ScrapeConfig(enabled=True, interval_s=0.05),
            output=OutputConfig(output_dir=str(tmp_path / "out"), report=False),
        )
        res = asyncio.run(run_async(cfg, install_signal_handlers=False))
    assert all(r.status == "ok" for r in res.records)
    assert "did not start" in res.summary["server"]["error"]
