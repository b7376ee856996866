"""Only the server's own closes count as "the server closed a kept-alive connection" (issue 18 item 8).

loadgen closes connections itself: the idle ones at the end of a run, and one it aborts when a request passes
``--timeout``. Neither may raise the warning, reach summary.json or turn connection reuse off; a server that freezes
for a while mid-run (every request then times out on a kept-alive connection) is a server that froze, not one that
closes kept-alive connections.
"""

from __future__ import annotations

import asyncio
import logging

from loadgen.config import (
    EndpointConfig,
    OutputConfig,
    RunConfig,
    ScheduleConfig,
    ScrapeConfig,
    WorkloadConfig,
)
from loadgen.run.runner import run_async

SSE = (
    b'data: {"choices":[{"index":0,"delta":{"content":"a"}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n'
    b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n"
)
CHUNKED = b"%x\r\n%s\r\n0\r\n\r\n" % (len(SSE), SSE)


class KeepAliveServer:
    """Keeps every connection alive and answers each request at once, except the POSTs numbered in ``frozen``
    (0-based, in arrival order), which it never answers (the connection stays open: a server that froze)."""

    def __init__(self, frozen: range = range(0)) -> None:
        self.frozen = frozen
        self.posts = 0
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
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
                n, self.posts = self.posts, self.posts + 1
                if n in self.frozen:
                    await asyncio.sleep(30)  # frozen: the client gives up first (--timeout) and aborts
                    return
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                             + CHUNKED)  # fmt: skip
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


def _run(tmp_path, server: KeepAliveServer, n: int, rate: float, timeout_s: float):
    async def main():
        srv = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        cfg = RunConfig(
            endpoint=EndpointConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m", timeout_s=timeout_s),
            schedule=ScheduleConfig(rate=rate, cv=0.0, num_requests=n, seed=1),
            workload=WorkloadConfig(),
            scrape=ScrapeConfig(enabled=False),
            output=OutputConfig(output_dir=str(tmp_path / "run"), report=False),
        )
        async with srv:
            res = await run_async(cfg, install_signal_handlers=False)
            await asyncio.sleep(0.05)  # the last connection_lost callbacks run
        return res

    return asyncio.run(main())


def test_closing_idle_connections_at_the_end_is_not_a_server_close(tmp_path, caplog):
    server = KeepAliveServer()
    with caplog.at_level(logging.INFO):
        res = _run(tmp_path, server, n=40, rate=400.0, timeout_s=30)
    assert [r.status for r in res.records] == ["ok"] * 40
    assert not [m for m in caplog.messages if "kept-alive" in m], caplog.messages
    conns = res.summary["metrics"]["connections"]
    assert "note" not in conns and conns["reused"] > 0


def test_a_mid_run_freeze_aborted_on_timeout_keeps_reuse_on_and_stays_out_of_the_summary(tmp_path, caplog):
    server = KeepAliveServer(frozen=range(10, 14))
    with caplog.at_level(logging.INFO):
        res = _run(tmp_path, server, n=40, rate=20.0, timeout_s=0.5)
    recs = sorted(res.records, key=lambda r: r.index)
    failed = [r for r in recs if r.status != "ok"]
    assert len(failed) == 4 and {r.error_kind for r in failed} == {"timeout"}
    assert any(r.conn_reused for r in failed), (
        "the freeze must hit a kept-alive connection for this test to mean it"
    )
    last_failed = max(r.index for r in failed)
    after = [r for r in recs if r.index > last_failed]
    # reuse stays on after the freeze: the later requests go out on kept-alive connections
    assert after and sum(bool(r.conn_reused) for r in after) >= len(after) - 2, [r.conn_reused for r in after]
    assert not [m for m in caplog.messages if "kept-alive" in m], caplog.messages
    assert "note" not in res.summary["metrics"]["connections"]
