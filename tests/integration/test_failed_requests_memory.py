"""A failed request is freed as promptly as a finished one: it leaves no reference cycle behind.

The dispatcher freezes what has survived every 1,000 requests (``gc.freeze()``), so an object that only the cyclic
collector could free is kept for the rest of the run. A timed-out request once left one (its waiter's exception ->
traceback -> the client's frame -> the waiter), with the connection, record and bytes it reached: ~22-32 KB per
failed request, a straight line in a long run with faults (``benchmarks/memory_faults.py``). Here: with the
collector off, the objects each failure shape leaves unreachable are counted (none may be a frame, a traceback, an
exception, a record or a connection), against a real server in another process.
"""

from __future__ import annotations

import collections
import gc
import socket

import pytest
import uvloop

from loadgen.config import EndpointConfig, SamplingConfig
from loadgen.records.record import RequestRecord
from loadgen.wire.client import StreamingClient
from loadgen.workload.spec import RequestSpec
from tests.scripted_server import DONE, Script, ServerProcess, chat_chunk

KEPT = ("frame", "traceback", "RequestRecord", "Conn", "H1Error", "TimeoutError", "Future", "coroutine")

SHAPES = {
    # a stream that stalls past --timeout: aborted by the client
    "timeout": (
        Script(writes=[(0, chat_chunk(content="a")), (30.0, chat_chunk(content="b")), (0, DONE)]),
        {},
    ),
    # no byte for --read-timeout
    "read_timeout": (
        Script(writes=[(0, chat_chunk(content="a")), (30.0, chat_chunk(content="b")), (0, DONE)]),
        {"read_timeout_s": 0.1},
    ),
    # the server aborts the connection half-way
    "disconnect": (Script(writes=[(0, chat_chunk(content="a"))], cut=True), {}),
    "http_5xx": (Script(writes=[(0, b'{"error":{"message":"boom"}}')], status=500), {}),
    "malformed": (Script(writes=[(0, b"data: {not json\n\n"), (0, DONE)]), {}),
}


def _unreachable_after(
    base_url: str, n: int, **endpoint: object
) -> tuple[list[str | None], collections.Counter]:
    async def main() -> tuple[list[str | None], collections.Counter]:
        ep = EndpointConfig(base_url=base_url, model="scripted", timeout_s=0.3, **endpoint)  # type: ignore[arg-type]
        client = StreamingClient(ep, SamplingConfig())
        await client.open()
        spec = RequestSpec(prompt="hi")

        async def one(i: int) -> str | None:
            rec = RequestRecord(index=i)
            await client.execute(spec, rec)
            return rec.error_kind

        await one(0)  # first-use caches (the pool, the resolver) are not a request's garbage
        gc.collect()
        gc.disable()
        try:
            kinds = [await one(i) for i in range(1, n + 1)]
            gc.set_debug(gc.DEBUG_SAVEALL)
            gc.collect()
            garbage = collections.Counter(type(o).__name__ for o in gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
        await client.close()
        return kinds, garbage

    return uvloop.run(main())


@pytest.mark.parametrize("shape", list(SHAPES))
def test_failed_requests_leave_no_frames_tracebacks_or_records_behind(tmp_path, shape):
    script, endpoint = SHAPES[shape]
    with ServerProcess(tmp_path, default=script) as srv:
        kinds, garbage = _unreachable_after(srv.base_url, 10, **endpoint)
    assert kinds == [shape] * 10 if shape != "malformed" else all(k == "malformed" for k in kinds), kinds
    assert {k: garbage[k] for k in KEPT if garbage[k]} == {}, garbage.most_common(10)


def test_refused_connections_leave_no_frames_tracebacks_or_records_behind():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kinds, garbage = _unreachable_after(f"http://127.0.0.1:{port}", 10)
    assert kinds == ["connect"] * 10
    assert {k: garbage[k] for k in KEPT if garbage[k]} == {}, garbage.most_common(10)
