"""A server that announces keep-alive but closes the connection after every response (llama.cpp's llama-server
does, after a streamed one): loadgen must not lose requests to the race with its FIN. After the first sign, it stops
reusing connections to that origin, and says so in the summary."""

from __future__ import annotations

import asyncio

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
    b"data: [DONE]\n\n"
)


async def _closer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[int]) -> None:
    """Reads one request, answers a chunked SSE stream with 'Keep-Alive' and closes: like llama-server."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        fields = dict(h.split(b":", 1) for h in head.split(b"\r\n")[1:] if b":" in h)
        length = int({k.strip().lower(): v for k, v in fields.items()}.get(b"content-length", b"0"))
        await reader.readexactly(length)
        seen.append(1)
        if head.startswith(b"GET /v1/models"):
            body = b'{"data":[{"id":"m"}]}'
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nKeep-Alive: timeout=5, max=100\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
        else:
            chunk = b"%x\r\n%s\r\n0\r\n\r\n" % (len(SSE), SSE)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
                         b"Keep-Alive: timeout=5, max=100\r\n\r\n" + chunk)  # fmt: skip
        await writer.drain()
        await asyncio.sleep(0.002)  # llama-server's FIN follows the last chunk a moment later
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def test_a_server_that_closes_after_each_response_loses_no_request(tmp_path):
    async def main():
        seen: list[int] = []
        server = await asyncio.start_server(lambda r, w: _closer(r, w, seen), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        cfg = RunConfig(
            endpoint=EndpointConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m", timeout_s=30),
            schedule=ScheduleConfig(rate=200.0, cv=1.0, num_requests=60, seed=3),
            workload=WorkloadConfig(),
            scrape=ScrapeConfig(enabled=False),
            output=OutputConfig(output_dir=str(tmp_path / "run"), report=False),
        )
        async with server:
            res = await run_async(cfg, install_signal_handlers=False)
        return res, len(seen)

    res, posts = asyncio.run(main())
    failed = [(r.index, r.error_kind, r.error_message) for r in res.records if r.status != "ok"]
    # at most the one request that met the FIN before loadgen learned; never a request sent twice
    assert len(failed) <= 1, failed
    # one GET /v1/models at start-up, then at most one POST per record (never one sent twice); a request that met
    # the FIN may not have been read at all
    assert len(res.records) - len(failed) <= posts - 1 <= len(res.records)
    conns = res.summary["metrics"]["connections"]
    assert "closed a kept-alive connection" in conns["note"]
    assert conns["reused"] <= 1 and conns["new"] >= len(res.records) - 1
