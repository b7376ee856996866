"""SimServer: the OpenAI-compatible HTTP front of the engine model, with faults and a ground-truth log.

This module owns the server's life, the engine loop, per-request state, fault injection and the ground truth; the
bytes (request checks, SSE chunks, full responses, errors) are ``openai_wire``'s. Wire format follows vLLM's
OpenAI server: ``/v1/chat/completions`` and ``/v1/completions`` (streaming SSE and not),
``stream_options.include_usage`` and ``continuous_usage_stats``, reasoning text in ``delta.reasoning`` (or
``reasoning_content``), errors as ``{"error": {"message", "type", "param", "code"}}``.

Timing: one engine loop steps the engine on absolute deadlines (``deadline += step duration``, never
``sleep(duration)``); a step's tokens are written when its deadline passes, one chunk per request per step. If the
loop falls more than ``MAX_LATENESS_NS`` behind (a stalled process), it re-anchors instead of bursting, and counts it.

Ground truth: with ``ground_truth`` set, one JSON line per request with ``time.perf_counter_ns()`` stamps taken right
after the bytes were handed to the socket (``first_token_ns``, ``last_token_ns``) and right before
(``first_write_ns``, ``last_write_ns``): the same CLOCK_MONOTONIC a client in another process reads on Linux.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import numpy as np
import orjson

from loadgen.sim.config import SimConfig
from loadgen.sim.engine import Engine, SimRequest
from loadgen.sim.http11 import Connection, Request, frame
from loadgen.sim.metrics import SimMetrics
from loadgen.sim.openai_wire import (
    DONE,
    BadRequest,
    chunk_frames,
    error_body,
    full_response,
    models_body,
    parse_generate,
    response_head,
    stream_prefix,
)
from loadgen.sim.text import block_hashes, text_digest

__all__ = ["SimServer", "Stream"]

log = logging.getLogger(__name__)

MAX_LATENESS_NS = 50_000_000
SSE_HEADERS: list[tuple[str, str]] = []
clock = time.perf_counter_ns


class Stream:
    """Per-request server state: how to frame its output, what was sent when, which fault it carries."""

    __slots__ = (
        "conn", "req", "server_id", "chat", "stream", "continuous", "include_usage", "prefix", "created",
        "received_ns", "headers_ns", "first_token_ns", "last_token_ns", "first_write_ns", "last_write_ns",
        "end_ns", "last_out_ns", "fault",
        "fault_at", "held", "stall_until", "status", "http_status", "client_id", "reasoning_chars", "sent",
        "details",
    )  # fmt: skip

    def __init__(self, conn: Connection, server_id: str, chat: bool, stream: bool, received_ns: int) -> None:
        self.conn = conn
        self.req: SimRequest | None = None
        self.server_id = server_id
        self.chat = chat
        self.stream = stream
        self.continuous = False
        self.include_usage = False
        self.prefix = b""
        self.created = int(time.time())
        self.received_ns = received_ns
        self.headers_ns: int | None = None
        self.first_token_ns: int | None = None
        self.last_token_ns: int | None = None
        # the same moments stamped just before the write: a client cannot read the bytes earlier (causality),
        # whereas the stamp after the write can be late by however long this process waits for a core
        self.first_write_ns: int | None = None
        self.last_write_ns: int | None = None
        self.end_ns: int | None = None
        self.last_out_ns = 0
        self.fault: str | None = None
        self.fault_at = 0
        self.held: list[bytes] | None = None
        self.stall_until = 0
        self.status = "ok"
        self.http_status = 200
        self.client_id: str | None = None
        self.sent = 0
        self.details = False  # the final usage carries prompt_tokens_details (--enable-prompt-tokens-details)


class SimServer:
    """The simulated server. ``await start()`` binds and starts the engine loop; ``await stop()`` undoes it."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.engine = Engine(self.config)
        self.metrics = SimMetrics(
            self.config.metrics_dialect, self.config.model_name, self.config.max_model_len
        )
        self.late_resets = 0
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._gt = open(self.config.ground_truth, "ab") if self.config.ground_truth else None  # noqa: SIM115
        self._nonce = os.urandom(2).hex()
        self._created = int(time.time())
        self._fault_serial = 0

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Bind, start serving and return the bound port."""
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._server = await loop.create_server(
            lambda: Connection(self._handle, clock), host, port, backlog=4096, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._loop_task = asyncio.create_task(self._engine_loop(), name="loadgen.sim engine")
        return self.port

    async def stop(self) -> None:
        """Stop accepting, cancel the engine loop, flush the ground-truth log."""
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._loop_task is not None:
            self._loop_task.cancel()
            try:
                await self._loop_task
            except asyncio.CancelledError:
                pass
            self._loop_task = None
        if self._gt is not None:
            self._gt.close()
            self._gt = None

    # -- engine loop -----------------------------------------------------------------------------------------
    async def _engine_loop(self) -> None:
        engine = self.engine
        loop = asyncio.get_running_loop()
        assert self._wake is not None
        deadline = clock()
        while True:
            if not engine.has_work:
                self._wake.clear()
                await self._wake.wait()
                deadline = clock()
            now = clock()
            if now - deadline > MAX_LATENESS_NS:
                self.late_resets += 1
                deadline = now
            result = engine.step(deadline)
            if result.num_scheduled == 0:
                await asyncio.sleep(0.001)
                continue
            deadline += result.duration_ns
            delay = (deadline - clock()) / 1e9
            if delay > 0:
                fut = loop.create_future()
                loop.call_at(loop.time() + delay, _set_done, fut)
                await fut
            self._deliver(result.outputs, result.finished)

    def _deliver(self, outputs: list[tuple[SimRequest, int]], finished: list[SimRequest]) -> None:
        metrics = self.metrics
        done = {id(r) for r in finished}
        for req, n in outputs:
            st: Stream = req.handle
            if st is None or st.conn.closed:
                continue
            now = clock()
            start = req.output_tokens - n
            if st.first_token_ns is None:
                metrics.observe("ttft", (now - st.received_ns) / 1e9)
            else:
                metrics.observe("itl", (now - st.last_out_ns) / 1e9)
            st.last_out_ns = now
            is_last = id(req) in done
            if st.stream:
                data = chunk_frames(st, req, start, n, is_last, self.config.reasoning_field)
                if st.fault == "malformed" and start < st.fault_at <= req.output_tokens:
                    data = frame(st.prefix + b'"choices":[{"index":0,"delta":{"content":"\n\n') + data
                if st.held is not None:
                    st.held.append(data)
                    if is_last:
                        st.held.append(b"")  # marker: finished while held
                    continue
                before = clock()
                st.conn.write(data)
                stamp = clock()
                if st.first_token_ns is None:
                    st.first_token_ns, st.first_write_ns = stamp, before
                st.last_token_ns, st.last_write_ns = stamp, before
                if is_last:
                    self._end_stream(st)
                    continue
                if st.fault_at and start < st.fault_at <= req.output_tokens:
                    if st.fault == "cut":
                        self._cut(st)
                    elif st.fault == "stream_error":
                        self._stream_error(st)
                    elif st.fault == "stall":
                        st.held = []
                        asyncio.get_running_loop().call_later(
                            self.config.stall_ms / 1000.0, self._release, st
                        )
            else:
                if st.first_token_ns is None:
                    st.first_token_ns = now
                st.last_token_ns = now
                if is_last:
                    if st.fault == "stall":
                        asyncio.get_running_loop().call_later(
                            self.config.stall_ms / 1000.0, self._send_full, st
                        )
                    else:
                        self._send_full(st)

    def _release(self, st: Stream) -> None:
        held, st.held = st.held, None
        if not held or st.conn.closed:
            return
        finished = held[-1] == b""
        st.last_write_ns = clock()
        st.conn.write(b"".join(held))
        st.last_token_ns = clock()
        if finished:
            self._end_stream(st)

    def _send_full(self, st: Stream) -> None:
        req = st.req
        assert req is not None
        if st.conn.closed:
            return
        data = full_response(st, req, self.config)
        if st.fault == "malformed":
            data = data[: len(data) // 2]
        if st.fault == "cut":
            st.status = "cut"
            st.conn.write(response_head(st.server_id, len(data)) + data[: len(data) // 2])
            st.end_ns = clock()
            st.conn.abort_close()
        else:
            st.conn.send(200, data, extra=[("x-request-id", st.server_id)])
            st.end_ns = clock()
        self._finish(st)

    def _end_stream(self, st: Stream) -> None:
        st.conn.end_chunked()
        st.end_ns = clock()
        self._finish(st)

    def _stream_error(self, st: Stream) -> None:
        """vLLM's way of failing mid-stream: HTTP 200 already sent, one ``{"error": ...}`` event, ``[DONE]``."""
        err = error_body("Simulated engine failure mid-stream", "InternalServerError", 500)
        st.conn.write(frame(b"data: " + err + b"\n\n") + DONE)
        st.status = "stream_error"
        if st.req is not None:
            self.engine.abort(st.req)
        self._end_stream(st)

    def _cut(self, st: Stream) -> None:
        st.status = "cut"
        st.end_ns = clock()
        st.conn.abort_close()
        if st.req is not None:
            self.engine.abort(st.req)
        self._finish(st)

    def _on_lost(self, st: Stream) -> None:
        if st.end_ns is not None:
            return
        st.status = "client_disconnect"
        st.end_ns = clock()
        if st.req is not None:
            self.engine.abort(st.req)
        self._finish(st)

    def _finish(self, st: Stream) -> None:
        req = st.req
        if req is not None:
            if st.status == "ok":
                e2e = (st.end_ns - st.received_ns) / 1e9 if st.end_ns else 0.0
                self.metrics.observe("e2e", e2e)
                if req.first_scheduled_ns is not None:
                    self.metrics.observe("queue", max(0, req.first_scheduled_ns - st.received_ns) / 1e9)
                self.metrics.observe("input_length", req.prompt_tokens)
                self.metrics.observe("generated_tokens", req.output_tokens)
                if req.output_tokens > 1 and st.first_token_ns and st.last_token_ns:
                    self.metrics.observe(
                        "tpot", (st.last_token_ns - st.first_token_ns) / 1e9 / (req.output_tokens - 1)
                    )
            req.handle = None
        if self._gt is not None:
            self._write_ground_truth(st)

    def _write_ground_truth(self, st: Stream) -> None:
        req = st.req
        rec: dict[str, Any] = {
            "id": st.server_id, "client_request_id": st.client_id, "api": "chat" if st.chat else "completions",
            "stream": st.stream, "status": st.status, "http_status": st.http_status, "fault": st.fault,
            "received_ns": st.received_ns, "headers_ns": st.headers_ns, "first_token_ns": st.first_token_ns,
            "last_token_ns": st.last_token_ns, "first_write_ns": st.first_write_ns,
            "last_write_ns": st.last_write_ns, "end_ns": st.end_ns,
        }  # fmt: skip
        if req is not None:
            rec.update(
                serial=req.serial, prompt_tokens=req.prompt_tokens, completion_tokens=req.output_tokens,
                reasoning_tokens=req.reasoning_emitted, cached_tokens=req.cached_tokens,
                preemptions=req.preemptions, finish_reason=req.finish_reason, max_tokens=req.max_tokens,
                difficulty=req.difficulty, natural_reasoning_tokens=req.natural_reasoning, correct=req.correct,
                first_scheduled_ns=req.first_scheduled_ns,
            )  # fmt: skip
        assert self._gt is not None
        self._gt.write(orjson.dumps(rec) + b"\n")
        self._gt.flush()

    # -- request handling ------------------------------------------------------------------------------------
    def _handle(self, conn: Connection, r: Request) -> None:
        path = r.path
        try:
            if path in ("/v1/chat/completions", "/v1/completions"):
                if r.method != "POST":
                    conn.send(405, b'{"detail":"Method Not Allowed"}')
                    return
                self._generate(conn, r, chat=path == "/v1/chat/completions")
            elif path == "/health":
                conn.send(200, b"", content_type=b"application/json")
            elif path == "/metrics":
                conn.send(
                    200,
                    self.metrics.render(self.engine),
                    content_type=b"text/plain; version=1.0.0; charset=utf-8",
                )
            elif path == "/v1/models":
                conn.send(200, models_body(self.config, self._created, self._nonce))
            else:
                conn.send(404, b'{"detail":"Not Found"}')
        except BadRequest as e:
            conn.send(e.status, error_body(str(e), e.err_type, e.status, e.param))

    def _generate(self, conn: Connection, r: Request, chat: bool) -> None:
        cfg = self.config
        g = parse_generate(r.body, chat, cfg)
        self._fault_serial += 1
        self.metrics.requests_received += 1
        frng = np.random.default_rng([cfg.seed, self._fault_serial, 0xFA17])
        u = frng.random()
        status = 0
        if u < cfg.fault_429:
            status = 429
        elif u < cfg.fault_429 + cfg.fault_500:
            status = 500
        elif u < cfg.fault_429 + cfg.fault_500 + cfg.fault_503:
            status = 503
        server_id = f"{self._nonce}{self._fault_serial:012x}"
        st = Stream(conn, server_id, chat, g.stream, r.received_ns)
        st.client_id = r.headers.get("x-request-id")
        st.details = cfg.enable_prompt_tokens_details
        if status:
            st.status = "error"
            st.http_status = status
            st.fault = str(status)
            kinds = {429: "TooManyRequests", 500: "InternalServerError", 503: "ServiceUnavailable"}
            conn.send(status, error_body(f"Simulated fault {status}", kinds[status], status),
                      extra=[("x-request-id", server_id)])  # fmt: skip
            st.headers_ns = st.end_ns = clock()
            self._finish(st)
            return
        for name in ("cut", "stall", "malformed", "slow_first_byte", "stream_error"):
            if frng.random() < getattr(cfg, "fault_" + name):
                st.fault = name
                break

        digest = text_digest(g.prompt_text)
        hashes = block_hashes(g.tokens, cfg.block_size) if cfg.enable_prefix_caching else []
        req = SimRequest(cfg, self.engine.next_serial(), len(g.tokens), hashes, digest, g.max_tokens,
                         g.ignore_eos, g.sim)  # fmt: skip
        req.tail_tokens = g.tokens[len(hashes) * cfg.block_size :] if hashes else g.tokens
        req.chat = chat
        req.handle = st
        st.req = req
        if st.fault in ("cut", "stall", "malformed", "stream_error"):
            st.fault_at = max(
                1, req.target_tokens // 2 if st.fault != "malformed" else req.target_tokens // 3
            )
        st.continuous = bool(g.stream_options.get("continuous_usage_stats", False))
        st.include_usage = bool(g.stream_options.get("include_usage", False)) or st.continuous
        st.prefix = stream_prefix(server_id, chat, st.created, cfg.model_name)
        conn.on_lost = lambda: self._on_lost(st)
        if st.fault == "slow_first_byte":
            asyncio.get_running_loop().call_later(cfg.slow_first_byte_ms / 1000.0, self._admit, st)
        else:
            self._admit(st)

    def _admit(self, st: Stream) -> None:
        if st.conn.closed or st.req is None:
            return
        if st.stream:
            # Headers go out at once; vLLM's role chunk comes with the first output (see chunk_frames).
            extra = [("x-request-id", st.server_id), *SSE_HEADERS]
            st.conn.start_chunked(200, b"text/event-stream; charset=utf-8", extra)
            st.headers_ns = clock()
        self.engine.add(st.req)
        assert self._wake is not None
        self._wake.set()


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
