"""The end of a run closes its idle connections a batch per event-loop pass, not all in one (issue 18 item 10).

At 10,000 streams every sender stalled once, 70-110 ms, "after last end": the pool closed the thousands of
connections it kept alive in one synchronous loop, and the loop then ran every ``connection_lost`` in one pass.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from loadgen.config import (
    EndpointConfig,
    OutputConfig,
    RunConfig,
    ScheduleConfig,
    ScrapeConfig,
    WorkloadConfig,
)
from loadgen.run.runner import run_async
from loadgen.wire import http11
from tests.integration.test_own_closes import CHUNKED

STREAMS = 250  # more than two batches of http11.CLOSE_PER_PASS


class HoldingServer:
    """Answers no POST until ``STREAMS`` are in: every request has a connection of its own, all kept alive."""

    def __init__(self) -> None:
        self.posts = 0
        self.all_in = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                fields = dict(h.split(b":", 1) for h in head.split(b"\r\n")[1:] if b":" in h)
                length = int({k.strip().lower(): v for k, v in fields.items()}.get(b"content-length", b"0"))
                await reader.readexactly(length)
                if head.startswith(b"GET /v1/models"):
                    body = b'{"data":[{"id":"m"}]}'
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                                 % (len(body), body))  # fmt: skip
                    continue
                self.posts += 1
                if self.posts >= STREAMS:
                    self.all_in.set()
                await self.all_in.wait()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                             + CHUNKED)  # fmt: skip
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


def test_a_run_closes_its_idle_connections_a_batch_per_loop_pass(tmp_path, monkeypatch):
    """Every connection of the run is closed by loadgen at the end, at most CLOSE_PER_PASS of them per loop pass.

    Before: all 250 were closed, and their ``connection_lost`` run, in one pass of the loop.
    """
    loop_pass = [0]
    lost_in_pass: Counter[int] = Counter()
    original = http11.Conn.connection_lost

    def connection_lost(self, exc):
        if self.own_close:
            lost_in_pass[loop_pass[0]] += 1
        original(self, exc)

    monkeypatch.setattr(http11.Conn, "connection_lost", connection_lost)

    async def main():
        loop = asyncio.get_running_loop()
        ticking = [True]

        def tick():  # runs once per pass of the loop: callbacks scheduled during a pass run in the next
            loop_pass[0] += 1
            if ticking[0]:
                loop.call_soon(tick)

        server = HoldingServer()
        srv = await asyncio.start_server(server.handle, "127.0.0.1", 0, backlog=STREAMS)
        port = srv.sockets[0].getsockname()[1]
        cfg = RunConfig(
            endpoint=EndpointConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m", timeout_s=60.0),
            schedule=ScheduleConfig(rate=float("inf"), cv=0.0, num_requests=STREAMS, seed=1),
            workload=WorkloadConfig(),
            scrape=ScrapeConfig(enabled=False),
            output=OutputConfig(output_dir=str(tmp_path / "run"), report=False),
        )
        async with srv:
            loop.call_soon(tick)
            res = await run_async(cfg, install_signal_handlers=False)
            await asyncio.sleep(0.05)  # the last connection_lost callbacks run
            ticking[0] = False
        return res

    res = asyncio.run(main())
    assert [r.status for r in res.records] == ["ok"] * STREAMS
    assert (
        res.summary["metrics"]["connections"]["new"] == STREAMS
    )  # a connection each, all kept alive to the end
    assert sum(lost_in_pass.values()) >= STREAMS  # every stream's connection (and the model lookup's, if any)
    assert max(lost_in_pass.values()) <= http11.CLOSE_PER_PASS, sorted(lost_in_pass.values(), reverse=True)[
        :3
    ]
