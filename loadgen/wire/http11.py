"""A minimal HTTP/1.1 client for the streamed POSTs: one keep-alive connection per response, a pool of idle ones.

aiohttp's StreamReader does Python work for every HTTP chunk of a response (feed_data, the chunk-split
bookkeeping, a resume_reading() that re-enters its parser): at 256 single-token chunks per response that was
more than half of the client's CPU. The hot path here does only what ``loadgen.wire.client`` promises: each
data_received() appends (perf_counter_ns(), bytes) to a list. Chunked framing is undone lazily
(``loadgen.wire.chunked``), in bounded steps (every ~64 KiB or 256 reads received, and when a read ends like the
terminating zero chunk), so no single read pays for a whole long stream; the SSE parse runs after the stream
closes. aiohttp still serves /v1/models (setup, not measured).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from time import perf_counter_ns
from typing import Any

from loadgen.errors import ErrorKind
from loadgen.wire.chunked import ENDED_WITH_EXTRA, MORE, SIZE, undo_chunking
from loadgen.wire.kernel_stamps import RealtimeToMonotonic, connect_stamped, kernel_stamps_available

ERROR_BODY_LIMIT = 2000


def describe_exc(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


class H1Error(Exception):
    """A transport-level failure; ``kind`` says how the record should classify it."""

    def __init__(self, kind: ErrorKind, message: str, skipped: int = 0) -> None:
        super().__init__(message)
        self.kind = kind
        self.skipped = skipped  # from Pool.acquire: closed kept-alive connections dropped before it failed


HEAD, BODY, DONE = 0, 1, 2
_CHUNKED, _LENGTH, _CLOSE = 0, 1, 2
_CHUNK_START = (SIZE, 0, b"")  # the dechunker's state before a body: at a size line, nothing pending
log = logging.getLogger(__name__)

# a kept-alive connection the server closed within this long after its response was not closed for idleness
# (keep-alive timeouts are seconds): the server closes after every response
CLOSE_AFTER_RESPONSE_S = 0.2
_DECHUNK_BYTES = 65_536  # undo the framing of what arrived every this many bytes (~0.1-0.3 ms of work)
# the per-read path (a token per read) takes reads below this size and undoes the framing every _DECHUNK_READS
# reads (<= 1 MiB, ~0.1 ms for single-token reads); larger reads take _body(), which counts bytes
_SMALL_READ = 4096
_DECHUNK_READS = 256


class Conn(asyncio.Protocol):
    """One keep-alive connection; serves one response at a time."""

    __slots__ = (
        "pool",
        "t0",
        "transport",
        "state",
        "head",
        "status",
        "headers",
        "framing",
        "length",
        "received",
        "read_ns",
        "reads",
        "body",
        "first_byte_ns",
        "waiter",
        "keep_alive",
        "lost",
        "limit",
        "_di",
        "_chunk_state",
        "_dbytes",
        "_idle_timer",
        "_idle_limit_ns",
        "_sent_ns",
        "served",
        "idle_since",
        "own_close",
        "_fast",
        "_step_at",
    )

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.t0 = 0  # timestamps are perf_counter_ns() - t0, the run's clock
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._idle_timer: asyncio.TimerHandle | None = None
        self._idle_limit_ns = 0
        self._sent_ns = 0
        self.served = 0  # responses completed on this connection (> 0: it is a kept-alive one)
        self.idle_since = 0.0  # loop time it went back to the pool
        self.own_close = (
            False  # loadgen closed it (idle at the end, a timeout, a Ctrl-C): not the server's doing
        )
        self._reset()

    def _reset(self) -> None:
        self.state = HEAD
        self.head = b""
        self.status = 0
        self.headers: dict[str, str] = {}
        self.framing = _CLOSE
        self.length = 0
        self.received = 0
        # raw body bytes as they arrived, and when: two flat lists, so a read allocates no tracked tuple (GC)
        self.read_ns: list[int] = []
        self.reads: list[bytes] = []
        self.body: list[tuple[int, bytes]] = []  # de-chunked body, one piece per read
        self.first_byte_ns = 0
        self.waiter: asyncio.Future[None] | None = None
        self.keep_alive = True
        self.limit = 0  # stop after this many body bytes (error bodies); 0 = read to the end
        self._di = 0  # reads whose framing is undone
        self._chunk_state = _CHUNK_START
        self._dbytes = 0  # body bytes received when the framing was last undone
        self._fast = False  # reading a chunked 200 body: small reads take the per-token path in data_received
        self._step_at = _DECHUNK_READS  # undo the framing once this many reads have arrived

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        ts = perf_counter_ns()
        # the per-token read of a streamed body: stamp, keep, nothing else (the framing is undone later, in bulk);
        # a read that may end the body (the zero chunk ends in a blank line) or is short or large takes _body()
        if self._fast and 3 < len(data) < _SMALL_READ and not data.endswith(b"\r\n\r\n"):
            self.read_ns.append(ts - self.t0)
            reads = self.reads
            reads.append(data)
            if len(reads) >= self._step_at:
                self._dechunk_step()
            return
        self.data_received_at(ts, data)

    def data_received_at(self, ts_abs: int, data: bytes) -> None:
        """``data`` arrived at ``ts_abs`` (perf_counter_ns clock): the kernel's receive time when known."""
        ts = ts_abs - self.t0
        if self._fast and 3 < len(data) < _SMALL_READ and not data.endswith(b"\r\n\r\n"):
            self.read_ns.append(ts)
            reads = self.reads
            reads.append(data)
            if len(reads) >= self._step_at:
                self._dechunk_step()
        elif self.state == BODY:
            self._body(ts, data)
        elif self.state == HEAD:
            self._head(ts, data)
        # bytes after a finished response: the connection is not reusable
        elif data:
            self.keep_alive = False

    def eof_received(self) -> bool:
        return False

    def drop(self) -> None:
        """loadgen closes this connection itself (aborts it): its ``connection_lost`` says nothing of the server."""
        self.own_close = True
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.pool.forget(self)
        # only the server's own closes say whether it honours keep-alive: loadgen's (the idle ones at the end, an
        # abort on --timeout or --read-timeout, Ctrl-C) never turn reuse off or reach the summary
        by_server = not self.own_close
        if by_server and self.state == DONE and self.served and self.pool.reuse:
            idle_s = asyncio.get_running_loop().time() - self.idle_since
            if idle_s < CLOSE_AFTER_RESPONSE_S:
                self.pool.stop_reuse(
                    f"closed a kept-alive connection {idle_s * 1e3:.1f} ms after its response"
                )
        if self.state == DONE or self.waiter is None:
            return
        if self.state == BODY and self.framing == _CLOSE:
            self._finish()
            return
        if self.state == HEAD:
            # the request was written: the server may have read it, so it is never sent again
            why = "closed" if exc is None else f"{type(exc).__name__}: {exc}"
            if self.served and by_server:
                self.pool.stop_reuse("closed a kept-alive connection as the next request was written to it")
            self._fail(
                H1Error(
                    ErrorKind.DISCONNECT,
                    f"ServerDisconnectedError: the connection {why} before a response (not resent: the server "
                    "may have read the request)",
                )
            )
        else:
            why = "connection closed" if exc is None else f"{type(exc).__name__}: {exc}"
            self._fail(
                H1Error(
                    ErrorKind.DISCONNECT, f"ClientPayloadError: response payload is not completed ({why})"
                )
            )

    # reuse and the idle (read) timeout
    def reusable(self) -> bool:
        """Still open at both ends: checked just before a request would be written to this kept-alive connection."""
        t = self.transport
        if self.lost or t is None or t.is_closing() or not self.keep_alive:
            return False  # keep_alive drops when bytes came while idle (a server's 408 before it closes)
        return not peer_closed(t)

    def last_read_ns(self) -> int:
        """When the last byte of this response arrived (run clock); the send time before any did."""
        last = self._sent_ns
        if self.status:
            last = max(last, self.first_byte_ns)
        if self.read_ns:
            last = max(last, self.read_ns[-1])
        if self.body:
            last = max(last, self.body[-1][0])
        return last

    def watch_idle(self, limit_s: float, sent_ns: int) -> None:
        """Fail the response with READ_TIMEOUT once no byte has arrived for ``limit_s`` (one timer, re-armed lazily)."""
        self._idle_limit_ns = int(limit_s * 1e9)
        self._sent_ns = sent_ns
        self._idle_timer = asyncio.get_running_loop().call_later(limit_s, self._idle_check)

    def stop_idle(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _idle_check(self) -> None:
        self._idle_timer = None
        if self.state == DONE:
            return
        idle = perf_counter_ns() - self.t0 - self.last_read_ns()
        left = self._idle_limit_ns - idle
        if left <= 0:
            self._fail(
                H1Error(
                    ErrorKind.READ_TIMEOUT,
                    f"no data from the server for {self._idle_limit_ns / 1e9:g} s (--read-timeout)",
                )
            )
        else:
            self._idle_timer = asyncio.get_running_loop().call_later(left / 1e9, self._idle_check)

    # parsing
    def _head(self, ts: int, data: bytes) -> None:
        buf = self.head + data if self.head else data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > 65536:
                self._fail(H1Error(ErrorKind.MALFORMED, "ClientResponseError: response headers too long"))
            self.head = buf
            return
        self.head = b""
        self.first_byte_ns = ts
        lines = buf[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        try:
            if not parts[0].startswith("HTTP/1."):
                raise ValueError
            self.status = int(parts[1])
        except (ValueError, IndexError):
            self._fail(
                H1Error(ErrorKind.MALFORMED, f"ClientResponseError: bad status line {lines[0][:80]!r}")
            )
            return
        h = self.headers
        for line in lines[1:]:
            k, sep, v = line.partition(":")
            if sep:
                h[k.strip().lower()] = v.strip()
        if parts[0] == "HTTP/1.0" or h.get("connection", "").lower() == "close":
            self.keep_alive = False
        if "chunked" in h.get("transfer-encoding", "").lower():
            self.framing = _CHUNKED
        elif "content-length" in h:
            try:
                self.length = int(h["content-length"])
            except ValueError:
                self._fail(H1Error(ErrorKind.MALFORMED, "ClientResponseError: bad Content-Length"))
                return
            self.framing = _LENGTH
        elif self.status in (204, 304) or 100 <= self.status < 200:
            self.framing = _LENGTH
        else:
            self.framing = _CLOSE
            self.keep_alive = False
        self.state = BODY
        if self.status != 200:
            self.limit = ERROR_BODY_LIMIT
        self._fast = self.framing == _CHUNKED and not self.limit
        rest = buf[end + 4 :]
        if rest or (self.framing == _LENGTH and self.length == 0):
            self._body(ts, rest)

    def _body(self, ts: int, data: bytes) -> None:
        fr = self.framing
        if data:
            self.received += len(data)
            if fr == _CHUNKED:
                self.read_ns.append(ts)
                self.reads.append(data)
            else:  # no framing to undo: the body as it arrived
                self.body.append((ts, data))
        if fr == _CHUNKED:
            # the last chunk is "0\r\n\r\n" (trailers end with a blank line too): only then undo the framing
            # (a read shorter than 4 bytes: the terminator may span the previous ones)
            tail = data if len(data) >= 4 else b"".join(self.reads[-4:])
            if tail.endswith(b"\r\n\r\n") or (self.limit and self.received >= self.limit):
                try:
                    done = self._dechunk()
                except ValueError:
                    self._fail(H1Error(ErrorKind.MALFORMED, "ClientPayloadError: bad chunked encoding"))
                    return
                if done:
                    self._finish()
                elif self.limit and self.received >= self.limit:
                    self.keep_alive = False
                    self._finish()
            elif self.received - self._dbytes >= _DECHUNK_BYTES or len(self.reads) >= self._step_at:
                self._dechunk_step()
        elif fr == _LENGTH:
            if self.received >= self.length:
                if self.received > self.length:
                    self.keep_alive = False
                self._finish()
            elif self.limit and self.received >= self.limit:
                self.keep_alive = False
                self._finish()
        elif self.limit and self.received >= self.limit:
            self._finish()

    def _dechunk_step(self) -> None:
        """Undo the framing of the reads so far, so the work at the end of a long stream stays small."""
        self._dbytes = self.received
        self._step_at = len(self.reads) + _DECHUNK_READS
        try:
            done = self._dechunk()
        except ValueError:
            self._fail(H1Error(ErrorKind.MALFORMED, "ClientPayloadError: bad chunked encoding"))
            return
        if done:  # the terminating chunk, followed by more bytes in the same read
            self._finish()

    def _dechunk(self) -> bool:
        """Undo chunked framing over the reads not yet seen; True once the terminating chunk has been read."""
        self._di, self._chunk_state, end = undo_chunking(
            self.read_ns, self.reads, self._di, self._chunk_state, self.body
        )
        if end == ENDED_WITH_EXTRA:
            self.keep_alive = False
        return end != MORE

    def _finish(self) -> None:
        self.state = DONE
        self._fast = False
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _fail(self, exc: H1Error) -> None:
        self.state = DONE
        self._fast = False
        self.keep_alive = False
        w = self.waiter
        if w is not None and not w.done():
            w.set_exception(exc)
        self.drop()

    def body_reads(self) -> list[tuple[int, bytes]]:
        """The body with framing removed, as (arrival ns, bytes) per read."""
        if self.framing == _CHUNKED:
            with contextlib.suppress(ValueError):
                self._dechunk()
        return self.body


_PEEK_FLAGS = socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)


def peer_closed(transport: Any) -> bool:
    """True when the server has closed or reset an idle connection, or sent bytes nobody asked for.

    The event loop learns of a server's FIN only when it next polls, so after a client stall (a busy machine, a long
    callback) a connection can be taken from the pool in the very pass in which its FIN waits to be read: writing a
    request there loses it. A non-blocking ``MSG_PEEK`` sees the FIN now and consumes nothing (a TLS close_notify
    shows as bytes: also not reusable).
    """
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        fd = sock.fileno()
    except OSError:
        return True
    if fd < 0:
        return True
    # asyncio's and uvloop's socket wrappers have no recv(): peek through a socket object on the same descriptor
    s = sock if isinstance(sock, socket.socket) else socket.socket(sock.family, sock.type, sock.proto, fd)
    try:
        s.recv(1, _PEEK_FLAGS)
    except (BlockingIOError, InterruptedError):
        return False  # open, nothing pending
    except OSError:
        return True  # reset
    finally:
        if s is not sock:
            s.detach()  # the descriptor stays the transport's
    return True  # b"": the server closed; or bytes nobody asked for


CLOSE_PER_PASS = 100  # idle connections closed per event-loop pass at the end of a run (~1-2 ms of closes)


class Pool:
    """Idle keep-alive connections to one origin (no limit, like ``TCPConnector(limit=0)``).

    With ``LOADGEN_KERNEL_TIMESTAMPS=1``, plain-HTTP connections on Linux (x86-64, arm64) are kernel-stamped
    sockets (see ``loadgen.wire.kernel_stamps``); otherwise an asyncio transport stamped in ``data_received``.
    """

    def __init__(self, host: str, port: int, ssl: Any) -> None:
        self.host = host
        self.port = port
        self.ssl = ssl
        self.idle: list[Conn] = []
        self.kernel_stamps = ssl is None and kernel_stamps_available()
        self._clock = RealtimeToMonotonic() if self.kernel_stamps else None
        self._addr: tuple[int, Any] | None = None
        # Some servers announce keep-alive and still close the connection after every (streamed) response
        # (llama.cpp's llama-server 0.5.0-dev does). Reusing such a connection races the server's FIN: a request
        # written just before it arrives is lost and, being a POST the server may have read, is never resent.
        # The first sign of it (a kept-alive connection closed within CLOSE_AFTER_RESPONSE_S of its response, or
        # closed under a request) turns reuse off for this origin: every later request gets its own connection, whose set-up is
        # timed apart (connect_ns), so no latency "from send" changes. ``reuse_note`` says why, for the summary.
        self.reuse = True
        self.reuse_note: str | None = None

    async def resolve(self) -> None:
        """Look the host up once (before the run's t0): later connects go to the address, no resolver in between."""
        if self._addr is None:
            loop = asyncio.get_running_loop()
            infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            if not infos:
                raise OSError(f"cannot resolve {self.host}")
            self._addr = (infos[0][0], infos[0][4])

    async def acquire(self, timeout_s: float) -> tuple[Conn, bool, int]:
        """A connection for one request: the most recently used idle one that is still open, else a new one.

        Returns ``(conn, reused, skipped)``; ``skipped`` counts kept-alive connections found closed by the server
        (before anything was written to them) and dropped. A new connection not up within ``timeout_s`` raises
        CONNECT_TIMEOUT; a refused one CONNECT. Either way the request was never sent.
        """
        skipped = 0
        idle = self.idle
        while idle:
            c = idle.pop()
            if c.reusable():
                c._reset()
                return c, True, skipped
            skipped += 1
            c.drop()
        loop = asyncio.get_running_loop()
        conn = Conn(self)
        try:
            async with asyncio.timeout(timeout_s):
                await self.resolve()
                assert self._addr is not None
                if self._clock is not None:
                    conn.transport = await connect_stamped(self._addr, conn, self._clock)  # type: ignore[assignment]
                else:
                    await loop.create_connection(
                        lambda: conn,
                        self._addr[1][0],
                        self.port,
                        ssl=self.ssl,
                        server_hostname=self.host if self.ssl else None,
                    )
        except TimeoutError:
            raise H1Error(
                ErrorKind.CONNECT_TIMEOUT,
                f"no connection to {self.host}:{self.port} within {max(timeout_s, 0):g} s; the request was not sent",
                skipped,
            ) from None
        except OSError as exc:
            raise H1Error(
                ErrorKind.CONNECT,
                f"ClientConnectorError: Cannot connect to host {self.host}:{self.port} [{describe_exc(exc)}]",
                skipped,
            ) from None
        return conn, False, skipped

    def release(self, c: Conn) -> None:
        """Back to the pool (or closed). The caller has taken the body it needs (``body_reads()``); the
        connection drops the raw reads it kept: after a backlog the pool can hold a connection per request that
        was in flight, and each kept its last response's raw bytes until reused. (Dropping the de-chunked body
        here too, the list the caller is parsing, cost 14% of the burst ceiling's tokens per CPU-s; it goes at
        the next ``_reset``.)"""
        c.read_ns, c.reads = [], []
        if self.reuse and c.keep_alive and c.state == DONE and not c.lost and c.transport is not None:
            c.served += 1
            c.idle_since = asyncio.get_running_loop().time()
            self.idle.append(c)
        elif c.transport is not None:
            c.own_close = True
            c.transport.close()

    def stop_reuse(self, what: str) -> None:
        """The server closes connections it announced as kept alive: open one per request from now on."""
        if self.reuse:
            self.reuse = False
            self.reuse_note = (
                f"{self.host}:{self.port} {what} although it announced keep-alive: every later request got its own "
                "connection (connect time is measured apart from send)"
            )
            log.info("%s", self.reuse_note)  # the summary says it once (metrics.connections.note), not twice
        self.close()

    def forget(self, c: Conn) -> None:
        with contextlib.suppress(ValueError):
            self.idle.remove(c)

    def close(self) -> None:
        """Close every idle connection now (in one loop pass: a few, mid-run, when reuse is turned off)."""
        _close_idle(self.idle)
        self.idle.clear()

    async def aclose(self) -> None:
        """Close the idle connections ``CLOSE_PER_PASS`` per loop pass (the end of a run).

        Closing thousands in one pass held the loop for their closes and ``connection_lost`` calls (2,500
        connections ~40-100 ms, 10,000 over a second): every sender's one stall at 10,000 streams.
        """
        idle, self.idle = self.idle, []
        for i in range(0, len(idle), CLOSE_PER_PASS):
            if i:
                await asyncio.sleep(0)  # the loop runs the last batch's closes before the next batch
            _close_idle(idle[i : i + CLOSE_PER_PASS])


def _close_idle(conns: list[Conn]) -> None:
    for c in conns:
        c.own_close = True
        if c.transport is not None:
            c.transport.close()
