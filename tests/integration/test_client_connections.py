"""Connections: set-up timed apart from the request, never a request sent twice, timeouts that cover connecting.

Issue 11 items 4, 7 and 8 (and issue 10's 'Server disconnected' after a client stall).
"""

import asyncio
import socket
import threading
import time
from dataclasses import replace

import pytest

from loadgen.config import EndpointConfig, SamplingConfig
from loadgen.records.columns import read_records
from loadgen.records.record import RequestRecord
from loadgen.run.runner import run_async
from loadgen.wire.client import StreamingClient
from loadgen.workload.spec import RequestSpec
from tests.integration.test_client import _run, config, cum, stream_writes
from tests.scripted_server import DONE, Script, ServerProcess, chat_chunk


def test_a_post_the_server_may_have_read_is_never_sent_again(scripted, tmp_path):
    """The server reads every request that arrives on a reused connection and hangs up without answering.

    Before: loadgen resent each of those once on a new connection (the server saw more POSTs than records).
    """
    scripted.default = Script(stream_writes(first=0.002, gap=0.001))
    scripted.hangup_on_reuse = True
    # one request at a time (a closed loop of 1): every second request lands on a kept-alive connection
    res = asyncio.run(
        _run(
            scripted,
            lambda: config(scripted, tmp_path, rate=float("inf"), num_requests=20, max_concurrency=1),
        )
    )
    posts = [a for a in scripted.arrivals if a.path.endswith("/completions")]
    assert len(res.records) == 20
    assert len(posts) == 20, "a request was sent more than once"
    failed = [r for r in res.records if r.status != "ok"]
    assert failed and all(r.conn_reused for r in failed)
    assert {r.error_kind for r in failed} == {"disconnect"}
    assert all("not resent" in r.error_message for r in failed)
    assert all(r.retries == 0 for r in res.records)
    assert res.summary["metrics"]["connections"]["retries"] == 0


def test_kept_alive_connections_closed_during_a_client_stall_are_skipped_not_written(tmp_path, monkeypatch):
    """Issue 10: after a client stall the server has closed every idle connection; the FINs wait unread.

    The server runs in its own process and closes connections idle for 50 ms; the client's loop is blocked for
    0.4 s, then a burst of 8 requests is started. asyncio runs the new tasks before it reads the FINs, so every
    pooled connection still looks open. Before: each request was written to a dead connection, failed with
    'Server disconnected' and was sent again on a new one (24 writes for 16 requests; without that resend, 8
    failures). Now each dead connection is seen before anything is written to it.
    """
    from asyncio.selector_events import _SelectorSocketTransport

    from loadgen.wire.kernel_stamps import KernelStampedTransport

    script = Script(stream_writes(first=0.002, gap=0.001))
    spec = RequestSpec(prompt="hi")
    writes: list[bytes] = []

    def counting(write):
        def counting_write(self, data):
            if bytes(data[:5]) == b"POST ":
                writes.append(bytes(data[:5]))
            return write(self, data)

        return counting_write

    for transport in (
        _SelectorSocketTransport,
        KernelStampedTransport,
    ):  # LOADGEN_KERNEL_TIMESTAMPS=1 uses the latter
        monkeypatch.setattr(transport, "write", counting(transport.write))

    async def main(base_url):
        client = StreamingClient(
            EndpointConfig(base_url=base_url, model="scripted"), SamplingConfig(), t0_ns=0
        )
        await client.open()
        try:
            first = [RequestRecord(index=i) for i in range(8)]
            await asyncio.gather(*(client.execute(spec, r) for r in first))
            time.sleep(0.4)  # the client stalls (deliberately blocking its own event loop)
            second = [RequestRecord(index=8 + i) for i in range(8)]
            await asyncio.gather(*(client.execute(spec, r) for r in second))
        finally:
            await client.close()
        return first, second

    with ServerProcess(tmp_path / "srv", default=script, idle_close_s=0.05) as srv:
        first, second = asyncio.run(main(srv.base_url))  # the default loop: tasks run before I/O callbacks
    assert all(r.status == "ok" for r in first + second), [r.error_message for r in first + second]
    posts = [a for a in srv.arrivals if a.path.endswith("/completions")]
    assert len(posts) == 16
    assert len(writes) == 16, "a request was written to a connection the server had closed"
    assert all(r.conn_reused is False for r in first) and all(r.conn_reused is False for r in second)
    assert sum(r.retries for r in second) == 8  # each closed connection skipped once, before any write


def test_a_kept_alive_connection_that_sent_bytes_while_idle_is_not_reused(scripted):
    """A server that answers an idle connection with 408 and closes it a second later (Apache does): the 408 is
    read while the connection is idle, so no peek can see it any more, yet the connection must not carry the
    next request."""
    scripted.default = Script(stream_writes(first=0.001, gap=0.0))
    scripted.idle_close_s = 0.05
    scripted.idle_408 = True

    async def main():
        await scripted.start()
        client = StreamingClient(
            EndpointConfig(base_url=scripted.base_url, model="scripted"), SamplingConfig(), t0_ns=0
        )
        await client.open()
        try:
            recs = [RequestRecord(index=i) for i in range(2)]
            await client.execute(RequestSpec(prompt="x"), recs[0])
            idle = client._pool.idle
            for _ in range(500):  # until the 408 has been read (bounded: 5 s at most)
                await asyncio.sleep(0.01)
                if idle and not idle[0].keep_alive:
                    break
            assert idle and not idle[0].keep_alive and not idle[0].lost
            await client.execute(RequestSpec(prompt="x"), recs[1])
        finally:
            await client.close()
            await scripted.stop()
        return recs

    recs = asyncio.run(main())
    assert [r.status for r in recs] == ["ok", "ok"], [r.error_message for r in recs]
    assert recs[1].conn_reused is False and recs[1].retries == 1
    assert len([a for a in scripted.arrivals if a.path.endswith("/completions")]) == 2


def test_connect_time_is_recorded_apart_from_send(scripted, tmp_path):
    """send_ns is when the bytes were written; connecting is connect_ns..send_ns, and the summary shows it."""
    scripted.default = Script(stream_writes(first=0.002, gap=0.001))
    res = asyncio.run(
        _run(scripted, lambda: config(scripted, tmp_path, rate=50.0, num_requests=12, warmup=0))
    )
    recs = sorted(res.records, key=lambda r: r.index)
    assert all(r.status == "ok" for r in recs)
    assert all(r.connect_ns is not None and r.dispatched_ns <= r.connect_ns <= r.send_ns for r in recs)
    assert recs[0].conn_reused is False  # the pool starts empty
    new = [r for r in recs if r.conn_reused is False]
    reused = [r for r in recs if r.conn_reused is True]
    assert reused, "requests 20 ms apart with ~15 ms streams should reuse a kept-alive connection"
    m = res.summary["metrics"]
    assert m["connections"] == {
        "new": len(new),
        "reused": len(reused),
        "none": 0,
        "retries": 0,
        "requests_retried": 0,
    }
    assert m["latency_ms"]["connect"]["count"] == len(new)
    assert m["latency_ms"]["connect"]["min"] > 0
    # "from send" latencies exclude connecting: first_byte is measured from the write
    assert all(r.first_byte_ns > r.send_ns for r in recs)
    # the send time is the write: the server receives the request after it (same monotonic clock)
    t0 = res.summary["clock"]["t0_ns"]
    posts = sorted((a for a in scripted.arrivals if a.path.endswith("/completions")), key=lambda a: a.t_ns)
    assert all(
        a.t_ns > r.send_ns + t0 for a, r in zip(posts, sorted(recs, key=lambda r: r.send_ns), strict=True)
    )


class FrozenServer:
    """A server whose process has stopped: it answered GET /v1/models on one connection, then nothing ever again.

    Its listening socket stays open with a backlog of 1 and is never accepted from again, so one or two later
    connections complete the TCP handshake into the full queue (their requests are never read) and the kernel
    drops the SYNs of the rest (their connects hang).
    """

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve_models_once, daemon=True)

    def _serve_models_once(self) -> None:
        conn, _ = self.sock.accept()
        self._conns.append(conn)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += conn.recv(4096)
        body = b'{"object":"list","data":[{"id":"frozen","object":"model"}]}'
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )

    def __enter__(self) -> "FrozenServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(5)
        for c in self._conns:
            c.close()
        self.sock.close()


def test_a_frozen_server_fails_every_request_within_its_timeouts(tmp_path):
    """Before: --timeout did not cover connecting; 20 requests with --timeout 5 took 142 s (kernel SYN retries)."""
    timeout_s, connect_s = 1.5, 0.3
    with FrozenServer() as srv:
        cfg = config(
            type("S", (), {"base_url": f"http://127.0.0.1:{srv.port}"})(),
            tmp_path,
            rate=100.0,
            num_requests=20,
        )
        cfg = replace(cfg, endpoint=replace(cfg.endpoint, timeout_s=timeout_s, connect_timeout_s=connect_s))
        res = asyncio.run(run_async(cfg, install_signal_handlers=False))
    recs = read_records(tmp_path / "out" / "requests.jsonl")
    assert len(recs) == 20 and all(r.status == "error" for r in recs)
    kinds = {r.error_kind for r in recs}
    assert kinds <= {"connect_timeout", "timeout"} and "connect_timeout" in kinds
    for r in recs:
        took_s = (r.end_ns - r.connect_ns) / 1e9
        if r.error_kind == "connect_timeout":
            assert r.send_ns is None and r.conn_reused is None  # never sent
            assert connect_s * 0.9 <= took_s < timeout_s
            assert "not sent" in r.error_message
        else:  # connected into the backlog, written, never answered
            assert r.send_ns is not None
            assert timeout_s * 0.9 <= took_s < timeout_s * 3
    assert res.summary["metrics"]["requests"]["failed"] == 20


def test_connect_time_counts_against_the_whole_request_timeout(tmp_path):
    """With --connect-timeout above --timeout, the request's own deadline ends the connect: it is never sent."""
    with FrozenServer() as srv:
        base = f"http://127.0.0.1:{srv.port}"
        client = StreamingClient(
            EndpointConfig(base_url=base, model="frozen", timeout_s=0.3, connect_timeout_s=30),
            SamplingConfig(),
            0,
        )

        async def main():
            await client.open()
            await client.resolve_model()  # the one connection the server ever accepts
            try:
                recs = [RequestRecord(index=i) for i in range(6)]
                await asyncio.gather(*(client.execute(RequestSpec(prompt="x"), r) for r in recs))
            finally:
                await client.close()
            return recs

        recs = asyncio.run(main())
    hung = [r for r in recs if r.error_kind == "connect_timeout"]
    assert hung and all(r.send_ns is None for r in hung)
    assert all((r.end_ns - r.connect_ns) < 30e9 / 4 for r in recs)


@pytest.mark.parametrize(("gap", "kind"), [(0.5, "read_timeout"), (0.03, None)])
def test_read_timeout_fails_a_stalled_stream_but_not_a_slow_steady_one(scripted, tmp_path, gap, kind):
    """--read-timeout 0.15: a 0.5 s silence mid-stream fails; tokens every 30 ms for ~0.3 s do not."""
    w = [(0, chat_chunk(role=True, usage=cum(0)))]
    w += [(gap, chat_chunk(content="c", usage=cum(i + 1))) for i in range(10 if gap < 0.1 else 2)]
    w.append((0, chat_chunk(finish="stop", usage=cum(10 if gap < 0.1 else 2)) + DONE))
    scripted.default = Script(w)

    def cfg():
        c = config(scripted, tmp_path, rate=20.0, num_requests=3)
        return replace(c, endpoint=replace(c.endpoint, read_timeout_s=0.15))

    res = asyncio.run(_run(scripted, cfg))
    if kind is None:
        assert all(r.status == "ok" for r in res.records), [r.error_message for r in res.records]
    else:
        assert {r.error_kind for r in res.records} == {kind}
        r = res.records[0]
        assert r.http_status == 200 and r.first_byte_ns is not None and "--read-timeout" in r.error_message
        assert (
            r.chunk_kind == "" and r.first_chunk_ns is not None
        )  # the role chunk before the silence was kept


def test_an_idle_pooled_connection_holds_no_raw_response_bytes(scripted):
    """After a burst, the pool keeps a connection per request that was in flight; before, each kept its last
    response's raw bytes until reused.
    The records still get every token: the client took the body before the connection went back."""
    scripted.default = Script(stream_writes(first=0.002, gap=0.001))

    async def main():
        await scripted.start()
        client = StreamingClient(
            EndpointConfig(base_url=scripted.base_url, model="scripted"), SamplingConfig(), t0_ns=0
        )
        await client.open()
        try:
            recs = [RequestRecord(index=i) for i in range(12)]
            await asyncio.gather(*(client.execute(RequestSpec(prompt="x"), r) for r in recs))
            idle = list(client._pool.idle)
        finally:
            await client.close()
            await scripted.stop()
        return recs, idle

    recs, idle = asyncio.run(main())
    assert all(r.status == "ok" and r.completion_tokens and len(r.chunk_ns) > 1 for r in recs)
    assert len(idle) == 12
    assert all(not c.reads and not c.read_ns for c in idle)
