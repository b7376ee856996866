"""Kernel receive stamps (opt-in, Linux): each read carries the time the bytes reached the socket.

With ``LOADGEN_KERNEL_TIMESTAMPS=1``, plain-HTTP connections are sockets read with ``recvmsg`` and
``SO_TIMESTAMPNS``, so a read's time does not depend on how busy the event loop or the machine is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import socket
import struct
import sys
from time import perf_counter_ns, time_ns
from typing import Any

__all__ = ["KernelStampedTransport", "RealtimeToMonotonic", "connect_stamped", "kernel_stamps_available"]

# Python's socket module does not export SO_TIMESTAMPNS; 35 is Linux's value (SO_TIMESTAMPNS_OLD, also the cmsg
# type) on x86-64 and arm64, where the control message is a 64-bit struct timespec. Elsewhere: event-loop stamps.
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", None)
if (
    _SO_TIMESTAMPNS is None
    and sys.platform.startswith("linux")
    and platform.machine() in ("x86_64", "aarch64")
):
    _SO_TIMESTAMPNS = 35
_SCM_TIMESTAMPNS = getattr(socket, "SCM_TIMESTAMPNS", _SO_TIMESTAMPNS)
_TIMESPEC = struct.Struct("@qq")
_CMSG_SPACE = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0
_RECV_SIZE = 65_536
# one receive buffer for every kernel-stamped socket: each read is copied out before the next (one loop thread)
_RECV_BUF = bytearray(_RECV_SIZE)
_RECV_VIEW = memoryview(_RECV_BUF)
_RECV_VIEWS = [_RECV_VIEW]


class RealtimeToMonotonic:
    """Kernel receive stamps are CLOCK_REALTIME; this maps them onto perf_counter_ns (CLOCK_MONOTONIC).

    The offset is the tightest of a few back-to-back readings and is re-read every second, so an NTP slew shifts
    a stamp by at most the slew over one second (microseconds).
    """

    __slots__ = ("offset", "_next")

    def __init__(self) -> None:
        self.offset = 0
        self._next = 0
        self.refresh()

    def refresh(self) -> None:
        best = None
        for _ in range(5):
            a = perf_counter_ns()
            r = time_ns()
            b = perf_counter_ns()
            if best is None or b - a < best[0]:
                best = (b - a, r - (a + b) // 2)
        assert best is not None
        self.offset = best[1]
        self._next = perf_counter_ns() + 1_000_000_000

    def due(self, now: int) -> bool:
        return now >= self._next


class KernelStampedTransport:
    """A plain TCP socket read with ``recvmsg`` so every read carries the kernel's receive time (SO_TIMESTAMPNS).

    The time a byte reached the socket does not depend on how busy the event loop or the machine is, so a client
    that is late to read still records when the server's data arrived. Implements the part of
    ``asyncio.Transport`` that ``loadgen.wire.http11.Conn`` and ``execute()`` use; the protocol gets
    ``data_received_at(ts, data)`` and ``connection_lost(exc)``.
    """

    __slots__ = ("_loop", "_sock", "_conn", "_clock", "_fd", "_closing")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, conn: Any, clock: RealtimeToMonotonic
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._conn = conn
        self._clock = clock
        self._fd = sock.fileno()
        self._closing = False
        loop.add_reader(self._fd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            n, anc, _flags, _addr = self._sock.recvmsg_into(_RECV_VIEWS, _CMSG_SPACE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._shutdown(exc)
            return
        if not n:
            self._shutdown(None)
            return
        # one exact-size copy out of the shared buffer (recvmsg(size) allocates and shrinks size bytes per read)
        data = bytes(_RECV_VIEW[:n])
        now = perf_counter_ns()
        clock = self._clock
        if clock.due(now):
            clock.refresh()
        ts = now
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == _SCM_TIMESTAMPNS and len(cdata) >= 16:
                sec, nsec = _TIMESPEC.unpack_from(cdata)
                k = sec * 1_000_000_000 + nsec - clock.offset
                if k < now:  # never later than the read itself
                    ts = k
        self._conn.data_received_at(ts, data)

    def write(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            n = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            self._shutdown(exc)
            return
        if n < len(data):  # a request larger than the socket buffer: finish it in the background
            self._loop.create_task(self._send_rest(memoryview(data)[n:]))

    async def _send_rest(self, rest: memoryview) -> None:
        try:
            await self._loop.sock_sendall(self._sock, rest)
        except OSError as exc:
            self._shutdown(exc)

    def is_closing(self) -> bool:
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._sock if name == "socket" else default

    def close(self) -> None:
        self._shutdown(None)

    def abort(self) -> None:
        self._shutdown(None)

    def _shutdown(self, exc: Exception | None) -> None:
        if self._closing:
            return
        self._closing = True
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._fd)
        with contextlib.suppress(OSError):
            self._sock.close()
        self._loop.call_soon(self._conn.connection_lost, exc)


def kernel_stamps_available() -> bool:
    if _SO_TIMESTAMPNS is None or not _CMSG_SPACE or not sys.platform.startswith("linux"):
        return False
    # opt-in for now: a kernel stamp can precede a server's own post-write stamp (the bytes reach this socket
    # inside the server's write call), which tests/integration/test_client.py does not allow yet
    return os.environ.get("LOADGEN_KERNEL_TIMESTAMPS", "") not in ("", "0")


async def connect_stamped(
    addr_info: tuple[int, Any], conn: Any, clock: RealtimeToMonotonic
) -> KernelStampedTransport:
    """A connected, kernel-stamped transport to ``(family, sockaddr)`` delivering to ``conn``."""
    loop = asyncio.get_running_loop()
    family, addr = addr_info
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        await loop.sock_connect(sock, addr)
    except BaseException:
        sock.close()
        raise
    return KernelStampedTransport(loop, sock, conn, clock)
