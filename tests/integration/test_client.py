"""The client end to end against a real HTTP server on loopback, including every failure a server can produce."""

import asyncio

import orjson
import pytest

from loadgen.config import (
    EndpointConfig,
    OutputConfig,
    RunConfig,
    SamplingConfig,
    ScheduleConfig,
    ScrapeConfig,
)
from loadgen.errors import EndpointError
from loadgen.records.columns import read_records
from loadgen.run.runner import run_async
from tests.scripted_server import DONE, Script, chat_chunk, usage_chunk


def cum(c):
    return {"prompt_tokens": 4, "completion_tokens": c, "total_tokens": 4 + c}


def stream_writes(n_reason=3, n_content=3, gap=0.005, first=0.02):
    w = [(0.0, chat_chunk(role=True, usage=cum(0)))]
    k = 0
    for i in range(n_reason):
        k += 1
        w.append((first if i == 0 else gap, chat_chunk(reasoning="r", usage=cum(k))))
    for _ in range(n_content):
        k += 1
        w.append((gap, chat_chunk(content="c", usage=cum(k))))
    w.append((0, chat_chunk(finish="stop", usage=cum(k)) + usage_chunk(4, k, n_reason) + DONE))
    return w


def config(server, tmp_path, **sched):
    sched.setdefault("rate", 100.0)
    sched.setdefault("num_requests", 10)
    return RunConfig(
        endpoint=EndpointConfig(
            base_url=server.base_url, api_key="sk-secret-123", timeout_s=sched.pop("timeout", 30)
        ),
        schedule=ScheduleConfig(**sched),
        sampling=SamplingConfig(max_tokens=16),
        scrape=ScrapeConfig(enabled=False),
        output=OutputConfig(output_dir=str(tmp_path / "out")),
    )


async def _run(server, cfg):
    await server.start()
    try:
        if callable(cfg):
            cfg = cfg()
        return await run_async(cfg, install_signal_handlers=False)
    finally:
        await server.stop()


def test_happy_path_records_timings_and_tokens(scripted, tmp_path):
    scripted.default = Script(stream_writes())
    res = asyncio.run(_run(scripted, lambda: config(scripted, tmp_path, warmup=2)))
    recs = read_records(tmp_path / "out" / "requests.jsonl")
    assert len(recs) == 12 and sum(r.warmup for r in recs) == 2
    assert all(r.status == "ok" and r.chunk_kind == "rrrccc" and r.chunk_tokens == [1] * 6 for r in recs)
    m = res.summary["metrics"]
    assert m["requests"]["measured"] == 10
    assert m["latency_ms"]["ttft"]["p50"] == pytest.approx(20, abs=8)
    assert m["latency_ms"]["ttfvt"]["p50"] > m["latency_ms"]["ttft"]["p50"] + 10
    # body carried what we asked for
    body = scripted.arrivals[-1].body
    assert body["stream"] is True and body["max_tokens"] == 16
    assert body["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
    assert scripted.arrivals[-1].headers["authorization"] == "Bearer sk-secret-123"
    assert recs[0].server_request_id == "req-1"


def test_client_timestamps_match_the_servers_own_clock(scripted, tmp_path):
    """Both sides use CLOCK_MONOTONIC: compare the client's send and token times with the server's."""
    import numpy as np

    scripted.default = Script(stream_writes(first=0.03))
    res = asyncio.run(_run(scripted, lambda: config(scripted, tmp_path, rate=20.0, num_requests=20)))
    posts = sorted((a for a in scripted.arrivals if a.path.endswith("/completions")), key=lambda a: a.t_ns)
    recs = sorted(res.records, key=lambda r: r.send_ns)
    t0 = res.summary["clock"]["t0_ns"]
    send_to_arrival = np.array([a.t_ns - (r.send_ns + t0) for a, r in zip(posts, recs, strict=True)]) / 1e6
    # the server's first token is its second write (the first is the role chunk)
    token_delivery = (
        np.array([(r.first_token_ns + t0) - a.writes_ns[1] for a, r in zip(posts, recs, strict=True)]) / 1e6
    )
    assert np.all(send_to_arrival > 0) and np.median(send_to_arrival) < 2.0
    assert np.all(token_delivery > 0) and np.median(token_delivery) < 2.0


def test_corrected_latency_includes_queueing_behind_the_concurrency_cap(scripted, tmp_path):
    scripted.default = Script(stream_writes(first=0.05, gap=0.0))
    res = asyncio.run(
        _run(scripted, lambda: config(scripted, tmp_path, rate=200.0, num_requests=12, max_concurrency=2))
    )
    lat = res.summary["metrics"]["latency_ms"]
    assert lat["queue_wait"]["max"] > 100  # 12 requests through 2 slots of ~50 ms each
    assert lat["ttft_from_intended"]["p90"] > lat["ttft"]["p90"] + 100
    # the last of 12 arrivals (planned 55 ms after t0) waits for the sixth wave (~250 ms) and ends ~50 ms later:
    # ~245 ms from its intended start, ~50 ms from its send (a bound of 250 sat on that edge: 249.6 was seen)
    assert lat["e2e_from_intended"]["max"] > lat["e2e"]["max"] + 150
    assert max(r.slot_ns - r.dispatched_ns for r in res.records) > 100e6


@pytest.mark.parametrize(
    ("script", "kind"),
    [
        (
            Script([(0, b'{"error":{"message":"slow down"}}')], status=429, content_type="application/json"),
            "http_429",
        ),
        (
            Script([(0, b'{"error":{"message":"boom"}}')], status=500, content_type="application/json"),
            "http_5xx",
        ),
        (
            Script(
                [(0, b'{"object":"error","message":"bad max_tokens"}')],
                status=400,
                content_type="application/json",
            ),
            "http_4xx",
        ),
        (
            Script(
                [(0, chat_chunk(content="a", usage=cum(1))), (0.01, chat_chunk(content="b", usage=cum(2)))],
                cut=True,
            ),
            "disconnect",
        ),
        (
            Script([(0, chat_chunk(content="a", usage=cum(1))), (0.01, b"data: {oops\n\n"), (0, DONE)]),
            "malformed",
        ),
        (
            Script(
                [(0, chat_chunk(content="a", usage=cum(1))), (0, b'data: {"error":{"message":"oom"}}\n\n')]
            ),
            "stream_error",
        ),
        (Script([(2.0, chat_chunk(content="late"))]), "timeout"),
        # a proxy's or portal's HTML page with status 200 is not a stream that broke off
        (
            Script([(0, b"<html><body>Please log in</body></html>")], content_type="text/html"),
            "malformed",
        ),
    ],
)
def test_failures_become_records_with_the_right_kind(scripted, tmp_path, script, kind):
    scripted.default = script
    res = asyncio.run(_run(scripted, lambda: config(scripted, tmp_path, num_requests=3, timeout=0.5)))
    recs = read_records(tmp_path / "out" / "requests.jsonl")
    assert len(recs) == 3
    assert {r.error_kind for r in recs} == {kind}, [r.error_message for r in recs]
    assert res.summary["metrics"]["requests"]["errors_by_kind"] == {kind: 3}


def test_close_delimited_stream_without_done(scripted, tmp_path):
    w = [
        (0, chat_chunk(content="a", usage=cum(1))),
        (0.005, chat_chunk(content="b", finish="stop", usage=cum(2))),
    ]
    scripted.default = Script(w, chunked=False)
    res = asyncio.run(_run(scripted, lambda: config(scripted, tmp_path, num_requests=3)))
    assert all(r.status == "ok" and r.completion_tokens == 2 for r in res.records)


def test_server_that_ignores_stream_true(scripted, tmp_path):
    body = orjson.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
        }
    )
    scripted.default = Script([(0.01, body)], content_type="application/json", chunked=False)
    res = asyncio.run(_run(scripted, lambda: config(scripted, tmp_path, num_requests=2)))
    r = res.records[0]
    assert r.status == "ok" and r.completion_tokens == 5 and r.first_token_ns == r.last_token_ns
    assert any("did not stream" in n for n in r.count_notes)


def test_unreachable_server_is_a_setup_error(tmp_path):
    cfg = RunConfig(
        endpoint=EndpointConfig(base_url="http://127.0.0.1:9"),
        schedule=ScheduleConfig(num_requests=1),
        scrape=ScrapeConfig(enabled=False),
        output=OutputConfig(output_dir=str(tmp_path / "o")),
    )
    with pytest.raises(EndpointError, match="cannot reach"):
        asyncio.run(run_async(cfg, install_signal_handlers=False))


def test_401_and_unknown_model_are_setup_errors(scripted, tmp_path):
    scripted.models_status = 401
    with pytest.raises(EndpointError, match="HTTP 401"):
        asyncio.run(_run(scripted, lambda: config(scripted, tmp_path)))
    scripted.models_status = 200
    from dataclasses import replace

    def cfg():
        c = config(scripted, tmp_path)
        return replace(c, endpoint=replace(c.endpoint, model="nope"))

    with pytest.raises(EndpointError, match="not served"):
        asyncio.run(_run(scripted, cfg))


def test_api_key_never_reaches_result_files(scripted, tmp_path):
    scripted.default = Script(stream_writes())
    asyncio.run(_run(scripted, lambda: config(scripted, tmp_path, num_requests=3)))
    files = [f for f in (tmp_path / "out").rglob("*") if f.is_file()]
    assert any(f.name == "summary.json" for f in files)
    for f in files:
        assert b"sk-secret-123" not in f.read_bytes(), f


def test_a_request_cancelled_after_the_headers_keeps_its_http_status(scripted, tmp_path):
    """Ctrl-C while a stream is open: the record is cancelled but still says the server answered 200."""
    from loadgen.records.record import RequestRecord
    from loadgen.wire import http11
    from loadgen.wire.client import StreamingClient
    from loadgen.workload.spec import RequestSpec

    scripted.default = Script([(0, chat_chunk(role=True)), (0, chat_chunk(content="a")), (60, DONE)])
    headers_read = asyncio.Event()
    original = http11.Conn._head

    def head(self, ts, data):
        original(self, ts, data)
        if self.status:
            headers_read.set()

    async def main():
        await scripted.start()
        client = StreamingClient(
            EndpointConfig(base_url=scripted.base_url, model="scripted"), SamplingConfig(), t0_ns=0
        )
        await client.open()
        rec = RequestRecord(index=0)
        try:
            task = asyncio.create_task(client.execute(RequestSpec(prompt="hi"), rec))
            await headers_read.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            await client.close()
            await scripted.stop()
        return rec

    http11.Conn._head = head
    try:
        rec = asyncio.run(main())
    finally:
        http11.Conn._head = original
    assert rec.status == "cancelled" and rec.error_kind == "cancelled"
    assert rec.http_status == 200 and rec.first_byte_ns is not None
    assert rec.server_request_id == "req-1"
