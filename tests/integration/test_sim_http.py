"""loadgen.sim over real loopback sockets with aiohttp: streams, usage blocks, /metrics, timing, ground truth."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from contextlib import asynccontextmanager

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

from loadgen.sim import SimConfig, SimServer

FAST = {"step_overhead_us": 2000.0, "reasoning_median": 30.0, "answer_median": 6.0, "seed": 11}


@asynccontextmanager
async def serve(**kw: object):
    server = SimServer(dataclasses.replace(SimConfig(), **{**FAST, **kw}))
    port = await server.start("127.0.0.1", 0)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
        try:
            yield server, session
        finally:
            await server.stop()


async def read_sse(resp: aiohttp.ClientResponse) -> list[tuple[int, bytes]]:
    """(arrival perf_counter_ns, data payload) per SSE event."""
    events = []
    buf = b""
    async for chunk in resp.content.iter_any():
        now = time.perf_counter_ns()
        buf += chunk
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            assert event.startswith(b"data: "), event
            events.append((now, event[6:]))
    return events


def chat_body(prompt: str = "What is 6 times 7?", **kw: object) -> dict:
    return {
        "model": "sim/reasoning-7b",
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
        **kw,
    }


def test_chat_stream_continuous_usage_reasoning_then_content(tmp_path) -> None:
    gt = tmp_path / "gt.jsonl"

    async def main() -> None:
        async with serve(ground_truth=str(gt)) as (_server, s):
            body = chat_body(
                max_tokens=200,
                stream_options={"include_usage": True, "continuous_usage_stats": True},
                sim={"reasoning_tokens": 25, "answer_tokens": 7, "reference": "42", "difficulty": 0.0},
            )
            async with s.post("/v1/chat/completions", json=body) as resp:
                assert resp.status == 200
                assert resp.headers["content-type"].startswith("text/event-stream")
                rid = resp.headers["x-request-id"]
                events = await read_sse(resp)
        assert events[-1][1] == b"[DONE]"
        chunks = [orjson.loads(d) for _, d in events[:-1]]
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        assert chunks[0]["usage"]["completion_tokens"] == 0
        final = chunks[-1]
        assert final["choices"] == []
        assert final["usage"]["completion_tokens"] == 32
        assert final["usage"]["completion_tokens_details"]["reasoning_tokens"] == 25
        kinds = []
        prev = 0
        for c in chunks[1:-1]:
            delta = c["choices"][0]["delta"]
            n = c["usage"]["completion_tokens"] - prev
            prev = c["usage"]["completion_tokens"]
            text = delta.get("reasoning", "") + delta.get("content", "")
            assert n == len(text.split()) == 1  # one token per step without spec decoding
            kinds.append("r" if "reasoning" in delta else "c")
        assert "".join(kinds) == "r" * 25 + "c" * 7
        assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
        answer = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[1:-1])
        assert answer.endswith("\\boxed{42}.")
        assert {c["id"] for c in chunks} == {"chatcmpl-" + rid}
        rec = orjson.loads(gt.read_bytes().splitlines()[0])
        assert rec["id"] == rid and rec["completion_tokens"] == 32 and rec["reasoning_tokens"] == 25
        # the server's send stamps precede the client's receipt stamps (same monotonic clock)
        assert rec["first_token_ns"] <= events[1][0] and rec["last_token_ns"] <= events[-1][0]
        assert events[-1][0] - rec["last_token_ns"] < 20_000_000

    asyncio.run(main())


def test_completions_stream_and_non_stream_usage() -> None:
    async def main() -> None:
        async with serve(reasoning_field="reasoning_content") as (_server, s):
            body = {"prompt": "Say something", "max_tokens": 9, "ignore_eos": True, "stream": True,
                    "stream_options": {"include_usage": True}}  # fmt: skip
            async with s.post("/v1/completions", json=body) as resp:
                events = await read_sse(resp)
            chunks = [orjson.loads(d) for _, d in events[:-1]]
            assert all("usage" not in c for c in chunks[:-1])  # include_usage alone: only the final chunk
            assert chunks[-1]["usage"]["completion_tokens"] == 9
            assert chunks[-1]["usage"]["prompt_tokens"] == 2
            text = "".join(c["choices"][0]["text"] for c in chunks[:-1])
            assert len(text.split()) == 9
            assert chunks[-2]["choices"][0]["finish_reason"] == "length"

            async with s.post(
                "/v1/completions", json={**body, "stream": False, "stream_options": None}
            ) as resp:
                data = await resp.json()
            assert data["object"] == "text_completion"
            assert data["usage"]["completion_tokens"] == 9 and data["choices"][0]["finish_reason"] == "length"

            chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 500,
                    "sim": {"reasoning_tokens": 12, "answer_tokens": 4}}  # fmt: skip
            async with s.post("/v1/chat/completions", json=chat) as resp:
                data = await resp.json()
            msg = data["choices"][0]["message"]
            assert len(msg["reasoning_content"].split()) == 12 and len(msg["content"].split()) == 4
            assert data["usage"]["completion_tokens"] == 16
            assert data["usage"]["completion_tokens_details"]["reasoning_tokens"] == 12
            # <|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n: 5 + 1 + 1 + 5 + 5 + 1 tokens
            assert data["usage"]["prompt_tokens"] == 18

    asyncio.run(main())


def test_errors_look_like_vllm() -> None:
    async def main() -> None:
        async with serve() as (_server, s):
            async with s.post("/v1/chat/completions", json={**chat_body(), "model": "nope"}) as resp:
                assert resp.status == 404
                err = (await resp.json())["error"]
                assert err["type"] == "NotFoundError" and err["code"] == 404 and "nope" in err["message"]
            async with s.post(
                "/v1/completions", data=b"{not json", headers={"content-type": "application/json"}
            ) as r:
                assert r.status == 400 and (await r.json())["error"]["code"] == 400
            async with s.post("/v1/completions", json={"prompt": "x " * 9000}) as resp:
                assert (
                    resp.status == 400 and "maximum context length" in (await resp.json())["error"]["message"]
                )
            async with s.post("/v1/completions", json={"prompt": "x", "max_tokens": 0}) as resp:
                assert resp.status == 400
            async with s.get("/v1/nothing") as resp:
                assert resp.status == 404
            async with s.get("/health") as resp:
                assert resp.status == 200
            async with s.get("/v1/models") as resp:
                assert (await resp.json())["data"][0]["id"] == "sim/reasoning-7b"

    asyncio.run(main())


def _families(text: str) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def _value(fams: dict, family: str, sample: str | None = None, **labels: str) -> float:
    return sum(
        s.value
        for s in fams[family]
        if s.name == (sample or family) and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_metrics_consistent_with_engine_under_load() -> None:
    async def main() -> None:
        cfg = {
            "num_blocks": 64,
            "max_num_batched_tokens": 256,
            "max_model_len": 1024,
            "step_overhead_us": 1000.0,
        }
        async with serve(**cfg) as (server, s):

            async def one(i: int) -> dict:
                body = {"prompt": f"q{i} " + "tok " * 60, "max_tokens": 120, "ignore_eos": True}
                async with s.post("/v1/completions", json=body) as resp:
                    return await resp.json()

            tasks = [asyncio.create_task(one(i)) for i in range(12)]
            await asyncio.sleep(0.05)
            async with s.get("/metrics") as resp:
                mid = _families(await resp.text())
            results = await asyncio.gather(*tasks)
            async with s.get("/metrics") as resp:
                end = _families(await resp.text())
        labels = {"model_name": "sim/reasoning-7b", "engine": "0"}
        assert _value(mid, "vllm:num_requests_running", **labels) >= 1
        assert _value(mid, "vllm:num_requests_running") + _value(mid, "vllm:num_requests_waiting") == 12
        assert 0.5 < _value(mid, "vllm:kv_cache_usage_perc") <= 1.0
        assert _value(end, "vllm:kv_cache_usage_perc") == 0.0
        assert (
            _value(end, "vllm:request_success", "vllm:request_success_total", finished_reason="length") == 12
        )
        assert _value(end, "vllm:generation_tokens", "vllm:generation_tokens_total") == 12 * 120
        assert _value(end, "vllm:prompt_tokens", "vllm:prompt_tokens_total") == sum(
            r["usage"]["prompt_tokens"] for r in results
        )
        assert (
            _value(end, "vllm:num_preemptions", "vllm:num_preemptions_total")
            == server.engine.stats.num_preemptions
            > 0
        )
        assert _value(end, "vllm:e2e_request_latency_seconds", "vllm:e2e_request_latency_seconds_count") == 12
        assert _value(end, "vllm:time_to_first_token_seconds", "vllm:time_to_first_token_seconds_count") == 12
        itl_count = _value(end, "vllm:inter_token_latency_seconds", "vllm:inter_token_latency_seconds_count")
        assert itl_count == 12 * 119
        hits = _value(end, "vllm:prefix_cache_hits", "vllm:prefix_cache_hits_total")
        assert (
            hits == server.engine.stats.prefix_cache_hits > 0
        )  # preempted requests find their own prompt blocks again
        assert "vllm:spec_decode_num_drafts" not in end  # only exposed with spec decoding on, as in vLLM

    asyncio.run(main())


def test_metrics_dialects_parse_and_spec_counters() -> None:
    async def main() -> None:
        for dialect, must in (
            ("sglang", ["sglang:token_usage", "sglang:num_running_reqs", "sglang:num_queue_reqs",
                        "sglang:generation_tokens", "sglang:time_to_first_token_seconds"]),
            ("tgi", ["tgi_queue_size", "tgi_batch_current_size", "tgi_request_success", "tgi_request_duration"]),
            ("vllm", ["vllm:spec_decode_num_drafts", "vllm:spec_decode_num_draft_tokens",
                      "vllm:spec_decode_num_accepted_tokens"]),
        ):  # fmt: skip
            async with serve(metrics_dialect=dialect, spec_method="ngram") as (server, s):
                body = {"prompt": "hello", "max_tokens": 40, "ignore_eos": True}
                async with s.post("/v1/completions", json=body) as resp:
                    assert (await resp.json())["usage"]["completion_tokens"] == 40
                async with s.get("/metrics") as resp:
                    fams = _families(await resp.text())
            assert set(must) <= set(fams), (dialect, sorted(fams))
            if dialect == "vllm":
                st = server.engine.stats
                assert (
                    _value(fams, "vllm:spec_decode_num_drafts", "vllm:spec_decode_num_drafts_total")
                    == st.spec_num_drafts
                    > 0
                )
                acc = _value(
                    fams, "vllm:spec_decode_num_accepted_tokens", "vllm:spec_decode_num_accepted_tokens_total"
                )
                assert acc == st.spec_num_accepted_tokens
            if dialect == "tgi":
                # TGI's counters carry no _total; the parser names their samples with it anyway
                assert _value(fams, "tgi_request_success", "tgi_request_success_total") == 1
                assert (
                    _value(fams, "tgi_batch_max_total_tokens")
                    == server.config.num_blocks * server.config.block_size
                )

    asyncio.run(main())


def test_step_timing_follows_cost_model_without_drift() -> None:
    async def main() -> None:
        async with serve(step_overhead_us=5000.0, decode_seq_us=0.0, context_token_us=0.0) as (_server, s):
            body = {"prompt": "time me", "max_tokens": 100, "ignore_eos": True, "stream": True}
            async with s.post("/v1/completions", json=body) as resp:
                events = await read_sse(resp)
        stamps = [t for t, d in events if d != b"[DONE]"]
        span = (stamps[-1] - stamps[0]) / 1e9
        # 99 decode steps of 5 ms each: absolute deadlines keep the total near 0.495 s (a relative sleep per
        # step would drift by ~1 ms a step, ~0.6 s in all); the margin is for the client's own wake-ups on a
        # busy machine, which can shorten or stretch the measured span by a few ms
        assert 0.475 < span < 0.525, span

    asyncio.run(main())
