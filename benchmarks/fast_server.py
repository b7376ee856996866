"""A very fast OpenAI-compatible streaming server for benchmarking the *client* (not a model of an engine).

Raw ``asyncio.Protocol`` on uvloop, HTTP/1.1 keep-alive, chunked transfer encoding, byte templates precomputed per
(prompt tokens, completion tokens). Endpoints: ``GET /v1/models`` and ``POST /v1/chat/completions`` (streamed).

Modes
  burst   every token of a response in one write (headers + all SSE events + the chunked terminator): the
          client-ceiling scenario, where the server costs as little as possible per token.
  timed   first token ``--ttft-ms`` after the request arrived, then one token every ``--itl-ms``, on absolute
          deadlines (arrival + ttft + k*itl, never re-anchored). One scheduler task sleeps until ~1 ms before the
          earliest deadline (uvloop timers tick in whole ms), yields with ``sleep(0)`` until it passes, then writes
          the next event of *every* stream that is due, in one pass.

Every request gets ``x-request-id: <n>`` so a client's record can be joined with the server's log. Several
servers can share one port (``--reuse-port``: the kernel spreads the connections over them), each on its own core,
with ids kept unique over all (``--id-base k --id-step K`` for server k of K) and a log of its own. With
``--log FILE`` the server writes, on SIGTERM/SIGINT, one JSON line per request: ``id``, ``arrival_ns`` (the
``perf_counter_ns()`` at which the first byte of the request was read, CLOCK_MONOTONIC like the client's), the
planned and actual write time of every token event (``plan_ns``, ``write_ns``; the first one is the first token),
so a server preempted between its stamp and its write shows as a long write, not as client error),
and a last line ``{"server_summary": ...}`` with its own lateness (write − plan) so server error is never blamed on
the client. ``write_ns`` is taken immediately before ``transport.write``, which on uvloop tries the socket write
synchronously.

    python benchmarks/fast_server.py --port 8123 --mode timed --ttft-ms 100 --itl-ms 10 --log server.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import heapq
import os
import signal
import sys
from time import perf_counter_ns

import orjson

MODEL = "Qwen/Qwen3-0.6B"  # vLLM-shaped events: a real model id, a 32-hex request id, logprobs null
ID_PLACEHOLDER = b"chatcmpl-" + b"0" * 32
CREATED = 1764300000
TOKEN_TEXT = " tok"
SPIN_NS = 1_200_000  # sleep until this close to the next deadline, then yield with sleep(0)

_MODELS_BODY = orjson.dumps(
    {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench", "created": 0}]}
)
_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\nx-request-id: "
)
_CHUNK_END = b"0\r\n\r\n"


def _frame(payload: bytes) -> bytes:
    """One HTTP chunk holding ``payload``."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _event(obj: dict) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


class Templates:
    """Per (prompt_tokens, n, continuous-usage): the SSE events of one response, already chunk-framed."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[int, bool], list[bytes]] = {}
        self._tails: dict[tuple[int, int], bytes] = {}
        self._bursts: dict[tuple[int, int, bool], bytes] = {}

    def token(self, p: int, k: int, continuous: bool) -> bytes:
        """The framed event of token k (1-based)."""
        key = (p, continuous)
        lst = self._tokens.get(key)
        if lst is None:
            lst = self._tokens[key] = [b""]
        while len(lst) <= k:
            i = len(lst)
            obj = {
                "id": ID_PLACEHOLDER.decode(),
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": MODEL,
                "choices": [
                    {"index": 0, "delta": {"content": TOKEN_TEXT}, "logprobs": None, "finish_reason": None}
                ],
            }
            if continuous:
                obj["usage"] = {"prompt_tokens": p, "completion_tokens": i, "total_tokens": p + i}
            lst.append(_frame(_event(obj)))
        return lst[k]

    def tail(self, p: int, n: int) -> bytes:
        """Finish chunk, usage chunk, [DONE] and the chunked terminator."""
        key = (p, n)
        t = self._tails.get(key)
        if t is None:
            fin = {
                "id": ID_PLACEHOLDER.decode(),
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": MODEL,
                "choices": [
                    {"index": 0, "delta": {"content": ""}, "logprobs": None, "finish_reason": "length"}
                ],
            }
            usage = {
                "id": ID_PLACEHOLDER.decode(),
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": MODEL,
                "choices": [],
                "usage": {"prompt_tokens": p, "completion_tokens": n, "total_tokens": p + n},
            }
            t = self._tails[key] = (
                _frame(_event(fin)) + _frame(_event(usage)) + _frame(b"data: [DONE]\n\n") + _CHUNK_END
            )
        return t

    def burst(self, p: int, n: int, continuous: bool) -> bytes:
        key = (p, n, continuous)
        b = self._bursts.get(key)
        if b is None:
            b = self._bursts[key] = b"".join(
                self.token(p, k, continuous) for k in range(1, n + 1)
            ) + self.tail(p, n)
        return b


class Stream:
    __slots__ = (
        "rid",
        "cid",
        "transport",
        "p",
        "n",
        "k",
        "continuous",
        "t_arrival",
        "plan",
        "writes",
        "ends",
    )

    def __init__(self, rid: int, transport, p: int, n: int, continuous: bool, t_arrival: int) -> None:
        self.rid = rid
        self.cid = b""
        self.transport = transport
        self.p = p
        self.n = n
        self.k = 0
        self.continuous = continuous
        self.t_arrival = t_arrival
        self.plan: list[int] = []
        self.writes: list[int] = []
        self.ends: list[int] = []  # perf_counter_ns() right after each write returned


class Server:
    def __init__(self, args: argparse.Namespace) -> None:
        self.mode = args.mode
        self.ttft_ns = int(args.ttft_ms * 1e6)
        self.itl_ns = int(args.itl_ms * 1e6)
        self.default_tokens = args.tokens
        self.log_path = args.log
        self.tpl = Templates()
        self.next_id = 0  # requests so far; the request id is id_base + next_id * id_step
        self.id_base = args.id_base
        self.id_step = args.id_step
        self.done: list[Stream] = []
        self.heap: list[tuple[int, int, Stream]] = []
        self._wake: asyncio.Event | None = None
        self._sched_task: asyncio.Task | None = None
        self.lateness: list[int] = []  # write − plan, every timed write

    # --- request handling -------------------------------------------------------------------------
    def start_stream(self, transport, body: bytes, t_arrival: int) -> None:
        rid = self.id_base + self.next_id * self.id_step
        self.next_id += 1
        n, p, continuous = self.default_tokens, 0, False
        if body:
            try:
                req = orjson.loads(body)
                mt = req.get("max_tokens") or req.get("max_completion_tokens")
                if mt:
                    n = int(mt)
                so = req.get("stream_options") or {}
                continuous = bool(so.get("continuous_usage_stats"))
                msgs = req.get("messages") or []
                p = max(1, sum(len(str(m.get("content", ""))) for m in msgs) // 4)
            except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
                pass
        head = _STREAM_HEAD + str(rid).encode() + b"\r\n\r\n"
        s = Stream(rid, transport, p, n, continuous, t_arrival)
        s.cid = b"chatcmpl-%032x" % rid
        if self.mode == "burst":
            data = head + self.tpl.burst(p, n, continuous).replace(ID_PLACEHOLDER, s.cid)
            t = perf_counter_ns()
            transport.write(data)
            s.ends.append(perf_counter_ns())
            s.writes.append(t)
            self.done.append(s)
            return
        # timed: headers now (like a server that accepted the request), tokens on their deadlines
        transport.write(head)
        first = t_arrival + self.ttft_ns
        heapq.heappush(self.heap, (first, rid, s))
        if self._wake is not None:
            self._wake.set()

    async def scheduler(self) -> None:
        heap = self.heap
        tpl = self.tpl
        itl = self.itl_ns
        lateness = self.lateness
        self._wake = wake = asyncio.Event()
        sleep = asyncio.sleep
        heappop, heappush = heapq.heappop, heapq.heappush
        while True:
            if not heap:
                wake.clear()
                await wake.wait()
                continue
            due = heap[0][0]
            now = perf_counter_ns()
            if due - now > SPIN_NS:
                # wake early; a new stream's earlier deadline also wakes us
                wake.clear()
                try:
                    await asyncio.wait_for(wake.wait(), (due - now - SPIN_NS) / 1e9)
                except TimeoutError:
                    pass
                continue
            if now < due:
                await sleep(0)
                continue
            # write every stream that is due, in one pass
            while heap and heap[0][0] <= now:
                plan, rid, s = heappop(heap)
                s.k += 1
                k = s.k
                tr = s.transport
                if tr.is_closing():
                    self.done.append(s)
                    continue
                data = tpl.token(s.p, k, s.continuous)
                if k == s.n:
                    data += tpl.tail(s.p, s.n)
                data = data.replace(ID_PLACEHOLDER, s.cid)
                t = perf_counter_ns()
                tr.write(data)
                s.ends.append(perf_counter_ns())
                s.plan.append(plan)
                s.writes.append(t)
                lateness.append(t - plan)
                if k < s.n:
                    heappush(heap, (plan + itl, rid, s))
                else:
                    self.done.append(s)
                now = perf_counter_ns()

    # --- log ---------------------------------------------------------------------------------------
    def dump(self) -> None:
        if not self.log_path:
            return
        streams = list(self.done) + [e[2] for e in self.heap]
        with open(self.log_path, "wb") as fh:
            for s in sorted(streams, key=lambda s: s.rid):
                fh.write(
                    orjson.dumps(
                        {
                            "id": s.rid,
                            "arrival_ns": s.t_arrival,
                            "tokens": s.n,
                            "plan_ns": s.plan,
                            "write_ns": s.writes,
                            "write_end_ns": s.ends,
                        }
                    )
                    + b"\n"
                )
            fh.write(orjson.dumps({"server_summary": self.summary()}) + b"\n")

    def summary(self) -> dict:
        import numpy as np

        out: dict = {"mode": self.mode, "requests": self.next_id, "timed_writes": len(self.lateness)}
        if self.lateness:
            a = np.asarray(self.lateness, dtype=np.float64) / 1e6
            out["write_lateness_ms"] = {
                "p50": float(np.percentile(a, 50)),
                "p99": float(np.percentile(a, 99)),
                "p999": float(np.percentile(a, 99.9)),
                "max": float(a.max()),
                "mean": float(a.mean()),
            }
        return out


class Http(asyncio.Protocol):
    """HTTP/1.1 keep-alive; requests are read whole (Content-Length), no pipelining needed by aiohttp."""

    __slots__ = ("server", "transport", "buf", "t_first")

    def __init__(self, server: Server) -> None:
        self.server = server
        self.transport = None
        self.buf = b""
        self.t_first = 0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        t = perf_counter_ns()
        if not self.buf:
            self.t_first = t
            self.buf = data
        else:
            self.buf += data
        while True:
            buf = self.buf
            he = buf.find(b"\r\n\r\n")
            if he < 0:
                return
            head = buf[:he]
            cl = 0
            i = head.lower().find(b"content-length:")
            if i >= 0:
                j = head.find(b"\r\n", i)
                cl = int(head[i + 15 : j if j > 0 else len(head)])
            end = he + 4 + cl
            if len(buf) < end:
                return
            body = buf[he + 4 : end]
            self.buf = buf[end:]
            t_arrival = self.t_first
            if self.buf:
                self.t_first = t
            self.handle(head, body, t_arrival)
            if not self.buf:
                return

    def handle(self, head: bytes, body: bytes, t_arrival: int) -> None:
        line_end = head.find(b"\r\n")
        method, _, rest = head[: line_end if line_end > 0 else len(head)].partition(b" ")
        path = rest.split(b" ", 1)[0]
        tr = self.transport
        if method == b"POST" and path.endswith(b"/completions"):
            self.server.start_stream(tr, body, t_arrival)
        elif method == b"GET" and path.endswith(b"/models"):
            tr.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(_MODELS_BODY), _MODELS_BODY)
            )
        else:
            msg = b'{"error":{"message":"not found","code":404}}'
            tr.write(
                b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(msg), msg)
            )


async def main_async(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    server = Server(args)
    srv = await loop.create_server(
        lambda: Http(server),
        args.host,
        args.port,
        backlog=4096,
        reuse_address=True,
        reuse_port=args.reuse_port or None,
    )
    port = srv.sockets[0].getsockname()[1]
    sched = loop.create_task(server.scheduler()) if args.mode == "timed" else None
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    gc.collect()
    gc.freeze()
    print(f"fast_server listening on http://{args.host}:{port} mode={args.mode}", flush=True)
    await stop.wait()
    if sched is not None:
        sched.cancel()
    srv.close()
    server.dump()
    print(orjson.dumps(server.summary()).decode(), flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8123)
    p.add_argument("--mode", choices=("burst", "timed"), default="burst")
    p.add_argument("--ttft-ms", type=float, default=100.0)
    p.add_argument("--itl-ms", type=float, default=10.0)
    p.add_argument("--tokens", type=int, default=256, help="tokens when the request gives no max_tokens")
    p.add_argument("--log", help="per-request JSONL log written on SIGTERM/SIGINT")
    p.add_argument(
        "--reuse-port",
        action="store_true",
        help="SO_REUSEPORT: several servers on one port, the kernel spreading connections over them",
    )
    p.add_argument(
        "--id-base", type=int, default=0, help="request ids are id-base + n x id-step (n = 0, 1, ...)"
    )
    p.add_argument("--id-step", type=int, default=1, help="with --id-base: ids unique over several servers")
    args = p.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("fast_server: loopback only")
    import uvloop

    os.environ.setdefault("PYTHONHASHSEED", "0")
    uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
