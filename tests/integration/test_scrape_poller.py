"""MetricsPoller against a real aiohttp /metrics server on loopback (run in its own thread and event loop)."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from loadgen.scrape import MetricsPoller, load_samples

STANDIN = Path(__file__).resolve().parents[1] / "data" / "metrics" / "vllm_standin_load.txt"


class MetricsServer:
    """Serves a changing vLLM-like text; ``script`` holds per-request behaviours to play first ('500', 'slow', 'junk')."""

    def __init__(self, body: str | None = None) -> None:
        self.hits = 0
        self.script: list[str] = []
        self.body = body
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _text(self) -> str:
        if self.body is not None:
            return self.body
        return (
            "# TYPE vllm:num_requests_running gauge\n"
            f'vllm:num_requests_running{{engine="0",model_name="m"}} {self.hits % 7}.0\n'
            "# TYPE vllm:prompt_tokens_total counter\n"
            f'vllm:prompt_tokens_total{{engine="0",model_name="m"}} {100.0 * self.hits}\n'
        )

    async def _handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        action = self.script.pop(0) if self.script else "ok"
        if action == "500":
            return web.Response(status=500, text="boom")
        if action == "slow":
            await asyncio.sleep(0.5)
        if action == "junk":
            return web.Response(text="hello, not metrics\n")
        return web.Response(text=self._text())

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> MetricsServer:
        self._thread.start()
        self._ready.wait(5)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    s = MetricsServer().start()
    yield s
    s.stop()


async def _run_for(poller: MetricsPoller, seconds: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(poller.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait_for(task, 2)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_samples_on_the_absolute_grid_with_increasing_times(server: MetricsServer, tmp_path: Path) -> None:
    sink = tmp_path / "server_metrics.jsonl"
    interval_ns = 50_000_000
    t0 = time.perf_counter_ns()
    poller = MetricsPoller([server.url], interval_s=0.05, sink_path=sink, t0_ns=t0)
    asyncio.run(_run_for(poller, 0.6))
    lines = _lines(sink)
    assert 9 <= len(lines) <= 13
    assert all("error" not in x for x in lines) and poller.stats["ok"] == len(lines)
    t = [x["t_ns"] for x in lines]
    assert t == sorted(t) and len(set(t)) == len(t)
    assert all(0 <= x["t_ns"] - x["t_start_ns"] < 50_000_000 for x in lines)
    # each scrape starts at t0 + k * interval: the offset past its tick stays small and does not grow (no drift)
    offsets = [x["t_start_ns"] % interval_ns for x in lines]
    ticks = [x["t_start_ns"] // interval_ns for x in lines]
    assert ticks == sorted(set(ticks))
    # on the grid: every scrape starts inside its own tick's interval (a drifting poller would spill into the
    # next ones); how close to the tick is a matter of machine load, printed rather than asserted
    print(
        f"offset past the tick: median {statistics.median(offsets) / 1e6:.2f} ms, last {offsets[-1] / 1e6:.2f} ms"
    )
    assert all(0 <= o < interval_ns for o in offsets)
    assert all(x["dialect"] == "vllm" for x in lines)
    prompt = [x["values"]["prompt_tokens"]['engine="0",model_name="m"'] for x in lines]
    assert prompt == sorted(prompt) and prompt[-1] - prompt[0] == 100.0 * (len(lines) - 1)
    samples = load_samples(sink)
    assert [s.t_ns for s in samples] == t


def test_failures_are_counted_by_kind_and_never_raised(server: MetricsServer, tmp_path: Path) -> None:
    server.script = ["500", "500", "500", "slow", "junk"]
    sink = tmp_path / "server_metrics.jsonl"
    closed = "http://127.0.0.1:9/metrics"  # discard port: nothing listens, connection refused
    poller = MetricsPoller(
        [server.url, closed], interval_s=0.05, sink_path=sink, t0_ns=time.perf_counter_ns(), timeout_s=0.15
    )
    asyncio.run(_run_for(poller, 1.0))
    f = poller.stats["failures"]
    assert f["http"] == 3 and f["timeout"] == 1 and f["parse"] == 1
    assert f["connect"] >= 10
    assert poller.stats["ok"] >= 5
    # the slow answer took 0.15 s: the ticks it overran are skipped, not replayed
    assert poller.stats["missed_ticks"] >= 2
    lines = _lines(sink)
    errors = [x for x in lines if "error" in x]
    assert len(errors) == sum(f.values())
    assert {x["error"] for x in errors} == {"http", "timeout", "parse", "connect"}
    assert len(load_samples(sink)) == poller.stats["ok"]


async def _ticker(seconds: float) -> list[float]:
    """Lateness (ms) of a 1 ms asyncio sleep, repeated for ``seconds``, sorted."""
    late: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        await asyncio.sleep(0.001)
        late.append((time.perf_counter() - t - 0.001) * 1e3)
    return sorted(late)


def _pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def test_scraping_never_stalls_a_concurrent_timer(tmp_path: Path) -> None:
    """A 1 ms ticker runs alone, then beside the poller scraping a real-size text every 50 ms.

    Other processes share this 2-core machine, so the ticker alone is the baseline and the poller is judged by
    what it adds. Measured here: alone p99 ~0.5-2 ms; with the poller p50 0.1 ms, p95 < 1 ms, p99 3-4 ms
    (~2.5 ms of parsing per scrape, in a worker thread).
    """
    srv = MetricsServer(body=STANDIN.read_text()).start()
    try:

        async def main() -> tuple[list[float], list[float], MetricsPoller]:
            alone = await _ticker(0.5)
            poller = MetricsPoller(
                [srv.url], interval_s=0.05, sink_path=tmp_path / "m.jsonl", t0_ns=time.perf_counter_ns()
            )
            stop = asyncio.Event()
            task = asyncio.create_task(poller.run(stop))
            beside = await _ticker(1.0)
            stop.set()
            await task
            return alone, beside, poller

        alone, beside, poller = asyncio.run(main())
    finally:
        srv.stop()
    ok = poller.stats["ok"]
    print(
        f"ticker alone p99 {_pct(alone, 0.99):.2f} ms; beside the poller p50 {_pct(beside, 0.5):.2f} "
        f"p95 {_pct(beside, 0.95):.2f} p99 {_pct(beside, 0.99):.2f} max {beside[-1]:.2f} ms; "
        f"{ok} scrapes, parse mean {poller.stats['parse_ns_total'] / max(1, ok) / 1e6:.2f} ms"
    )
    # Tail numbers depend on what else runs on this 2-core machine: they are printed (and measured in
    # benchmarks), while the test holds the robust part: scrapes happen and the ticker's median is untouched.
    assert ok >= 15
    assert _pct(beside, 0.5) < 2.0
