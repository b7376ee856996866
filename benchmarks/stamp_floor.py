"""The floor under loadgen's per-event cost: a bare uvloop client that only stamps reads and keeps their bytes.

Same load as ``event_cost.py`` (Poisson arrivals, keep-alive connections to ``fast_server.py --mode timed``, the
request loadgen sends), but each connection is an ``asyncio.Protocol`` whose ``data_received`` appends
``(perf_counter_ns(), bytes)`` and checks for the zero chunk, nothing else: no de-framing, no parse, no records,
no self-check. What it costs per token event is the event loop's and the kernel's share (epoll, the read system
call, the ACK it sends, page faults) plus one Python call; loadgen cannot go below it. Prints one JSON line.

    python benchmarks/stamp_floor.py --port 8123 [--rate 360] [--requests 3600] [--tokens 130]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
from time import perf_counter_ns

import numpy as np

_END = b"\r\n0\r\n\r\n"  # the zero chunk after a chunk (a head can end in "0\r\n\r\n": x-request-id: 10)


class Bare(asyncio.Protocol):
    __slots__ = ("transport", "ts", "reads", "done")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.ts: list[int] = []
        self.reads: list[bytes] = []
        self.done: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.ts.append(perf_counter_ns())
        self.reads.append(data)
        if data.endswith(_END):
            self.done.set_result(None)  # type: ignore[union-attr]


async def main_async(args: argparse.Namespace) -> dict:
    loop = asyncio.get_running_loop()
    body = json.dumps(
        {
            "model": "m",
            "stream": True,
            "max_tokens": args.tokens,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True},
            "messages": [{"role": "user", "content": "x" * 1000}],
        }
    ).encode()
    req = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Accept: text/event-stream\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    idle: list[Bare] = []
    events = reads = 0

    async def one() -> None:
        nonlocal events, reads
        if idle:
            p = idle.pop()
        else:
            _, p = await loop.create_connection(Bare, "127.0.0.1", args.port)
        p.ts, p.reads = [], []
        p.done = loop.create_future()
        p.transport.write(req)  # type: ignore[union-attr]
        await p.done
        reads += len(p.reads)
        # token events: every "data: " but the finish, usage and [DONE] events of the tail
        events += sum(d.count(b"data: ") for d in p.reads) - 3
        idle.append(p)

    rng = np.random.default_rng(1)
    offsets = np.cumsum(rng.exponential(1 / args.rate, args.requests))
    tasks = []
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = perf_counter_ns()
    for off in offsets:
        delay = t0 / 1e9 + off - perf_counter_ns() / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(loop.create_task(one()))
    await asyncio.gather(*tasks)
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    wall = (perf_counter_ns() - t0) / 1e9
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return {
        "token_events": events,
        "reads": reads,
        "run_cpu_s": round(cpu, 3),
        "user_s": round(ru1.ru_utime - ru0.ru_utime, 3),
        "sys_s": round(ru1.ru_stime - ru0.ru_stime, 3),
        "minor_faults": ru1.ru_minflt - ru0.ru_minflt,
        "wall_s": round(wall, 3),
        "events_per_cpu_s": round(events / cpu) if cpu else None,
        "us_per_event": round(cpu / events * 1e6, 2) if events else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rate", type=float, default=360.0)
    p.add_argument("--requests", type=int, default=3600)
    p.add_argument("--tokens", type=int, default=130)
    args = p.parse_args()
    import uvloop

    print(json.dumps(uvloop.run(main_async(args))))


if __name__ == "__main__":
    main()
