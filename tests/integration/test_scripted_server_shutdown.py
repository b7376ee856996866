"""The scripted server ends cleanly with connections still open: no CancelledError traceback per connection from
asyncio's stream callback, no "Event loop is closed" from a handler collected after its loop was closed (the
warnings that used to surround the tier summary at the end of pytest's output)."""

from __future__ import annotations

import asyncio
import gc
import socket
import sys

from tests.scripted_server import DONE, Script, ScriptedServer, ThreadedServer, chat_chunk

POST = b'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n{"model":"scripted"}'


def _script() -> Script:
    return Script([(0.0, chat_chunk(content="a")), (60.0, DONE)])  # stays mid-stream until stopped


def test_stop_ends_every_open_connection_without_a_traceback():
    errors: list[dict] = []

    async def main() -> set:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        srv = ScriptedServer()
        srv.default = _script()
        await srv.start()
        conns = []
        for _ in range(2):  # two streams waiting between writes
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
            writer.write(POST)
            await reader.readuntil(b"\r\n\r\n")
            conns.append(writer)
        idle = await asyncio.open_connection("127.0.0.1", srv.port)  # one connection that never sends
        conns.append(idle[1])
        while len(srv._handlers) < 3:
            await asyncio.sleep(0.01)
        await srv.stop()
        for w in conns:
            w.close()
        return srv._handlers

    handlers = asyncio.run(main())
    assert not handlers
    assert errors == [], [e.get("message") for e in errors]


def test_threaded_server_leaves_nothing_for_a_closed_loop():
    unraisable: list = []
    old, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        srv = ScriptedServer()
        srv.default = _script()
        t = ThreadedServer(srv)
        with t:
            s = socket.create_connection(("127.0.0.1", srv.port))
            s.sendall(POST)
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            idle = socket.create_connection(("127.0.0.1", srv.port))
        s.close()
        idle.close()
        assert t.loop.is_closed() and not srv._handlers
        del t, srv
        gc.collect()
    finally:
        sys.unraisablehook = old
    assert unraisable == [], [str(u.exc_value) for u in unraisable]
