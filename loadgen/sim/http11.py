"""A minimal HTTP/1.1 server connection on ``asyncio.Protocol``: keep-alive, Content-Length bodies, chunked responses.

Why not aiohttp's web server: one simulator process must drive thousands of streams, and a chunk here is one
``transport.write`` of precomputed bytes, with no per-chunk task, future or header object.

Requests are handled one at a time per connection; pipelined requests wait in the buffer until the current
response ends. Request bodies must carry Content-Length (what every OpenAI client sends); chunked request bodies
are answered with 411.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["Connection", "Request", "frame", "status_line"]

MAX_HEAD = 64 * 1024
MAX_BODY = 32 * 1024 * 1024

REASONS = {
    200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 411: "Length Required",
    413: "Payload Too Large", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 503: "Service Unavailable",
}  # fmt: skip


class Request:
    """One parsed request: method, path (query string removed), lower-cased headers, raw body."""

    __slots__ = ("method", "path", "headers", "body", "received_ns")

    def __init__(
        self, method: str, path: str, headers: dict[str, str], body: bytes, received_ns: int
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.received_ns = received_ns


def status_line(status: int) -> bytes:
    return f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n".encode()


class Connection(asyncio.Protocol):
    """Parses requests and hands each to ``handler(conn, request)``; the handler answers with the send methods."""

    __slots__ = ("handler", "clock", "on_lost", "transport", "buf", "busy", "closed", "keep_alive", "state")

    def __init__(self, handler: Callable[[Connection, Request], None], clock: Callable[[], int]) -> None:
        self.handler = handler
        self.clock = clock
        self.on_lost: Callable[[], None] | None = None  # set by the handler while a response is in flight
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.busy = False
        self.closed = False
        self.keep_alive = True
        self.state: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        cb = self.on_lost
        self.on_lost = None
        if cb is not None:
            cb()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._next()

    def _next(self) -> None:
        while not self.busy and not self.closed and self.buf:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self._fail(431)
                return
            received = self.clock()
            head = bytes(self.buf[:end]).decode("latin-1")
            lines = head.split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                self._fail(400)
                return
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if not sep:
                    self._fail(400)
                    return
                headers[name.strip().lower()] = value.strip()
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self._fail(411)
                return
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                self._fail(400)
                return
            if length < 0 or length > MAX_BODY:
                self._fail(413)
                return
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4 : end + 4 + length])
            del self.buf[: end + 4 + length]
            conn_hdr = headers.get("connection", "").lower()
            self.keep_alive = parts[2] == "HTTP/1.1" and conn_hdr != "close" or conn_hdr == "keep-alive"
            self.busy = True
            self.handler(self, Request(parts[0], parts[1].split("?", 1)[0], headers, body, received))

    def _fail(self, status: int) -> None:
        self.keep_alive = False
        self.busy = True
        self.send(status, b'{"detail":"' + REASONS.get(status, "Error").encode() + b'"}')

    # -- responses -------------------------------------------------------------------------------------------
    def _head(
        self, status: int, content_type: bytes, extra: list[tuple[str, str]] | None, tail: bytes
    ) -> bytes:
        parts = [status_line(status), b"content-type: ", content_type, b"\r\n"]
        if extra:
            for k, v in extra:
                parts.append(f"{k}: {v}\r\n".encode())
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(tail)
        return b"".join(parts)

    def send(
        self,
        status: int,
        body: bytes,
        content_type: bytes = b"application/json",
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        """A complete response with Content-Length; ends the request."""
        if self.closed or self.transport is None:
            return
        head = self._head(status, content_type, extra, b"content-length: %d\r\n\r\n" % len(body))
        self.transport.write(head + body)
        self.finish()

    def start_chunked(
        self, status: int, content_type: bytes, extra: list[tuple[str, str]] | None = None, first: bytes = b""
    ) -> None:
        """Status line and headers of a chunked response, optionally followed by a first (already framed) chunk."""
        if self.closed or self.transport is None:
            return
        self.transport.write(
            self._head(status, content_type, extra, b"transfer-encoding: chunked\r\n\r\n") + first
        )

    def write(self, data: bytes) -> None:
        """Write raw, already framed bytes."""
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def end_chunked(self, last: bytes = b"") -> None:
        """Write the final framed bytes and the zero-length chunk; ends the request."""
        if self.closed or self.transport is None:
            return
        self.transport.write(last + b"0\r\n\r\n")
        self.finish()

    def finish(self) -> None:
        self.on_lost = None
        self.state = None
        self.busy = False
        if not self.keep_alive:
            self.abort_close()
            return
        if self.buf:
            self._next()

    def abort_close(self) -> None:
        """Close after flushing what was written, without ending any chunked body (a cut stream)."""
        self.on_lost = None
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def frame(payload: bytes) -> bytes:
    """One chunk of a chunked body."""
    return b"%x\r\n%b\r\n" % (len(payload), payload)
