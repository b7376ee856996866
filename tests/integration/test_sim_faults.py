"""Each loadgen.sim fault is visible on the wire, and the standalone CLI starts, announces its port and stops cleanly."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
from contextlib import asynccontextmanager

import aiohttp
import orjson
import pytest

from loadgen.sim import SimConfig, SimServer

FAST = {"step_overhead_us": 2000.0, "seed": 3}
BODY = {"prompt": "fault please", "max_tokens": 40, "ignore_eos": True, "stream": True}


@asynccontextmanager
async def serve(**kw: object):
    server = SimServer(dataclasses.replace(SimConfig(), **{**FAST, **kw}))
    port = await server.start("127.0.0.1", 0)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
        try:
            yield server, session
        finally:
            await server.stop()


async def _stream(
    s: aiohttp.ClientSession, body: dict = BODY
) -> tuple[int, list[tuple[float, bytes]], float, str]:
    """(status, [(t, event)], seconds to headers, outcome) where outcome is 'done' or the exception's name."""
    t0 = time.perf_counter()
    async with s.post("/v1/completions", json=body) as resp:
        t_head = time.perf_counter() - t0
        events: list[tuple[float, bytes]] = []
        buf = b""
        try:
            async for chunk in resp.content.iter_any():
                buf += chunk
                while b"\n\n" in buf:
                    ev, buf = buf.split(b"\n\n", 1)
                    events.append((time.perf_counter(), ev[6:]))
        except aiohttp.ClientPayloadError as e:
            return resp.status, events, t_head, type(e).__name__
        return resp.status, events, t_head, "done"


@pytest.mark.parametrize("code", [429, 500, 503])
def test_error_status_faults(code: int) -> None:
    async def main() -> None:
        async with serve(**{f"fault_{code}": 1.0}) as (_server, s):
            for _ in range(3):
                async with s.post("/v1/completions", json=BODY) as resp:
                    assert resp.status == code
                    err = (await resp.json())["error"]
                    assert err["code"] == code

    asyncio.run(main())


def test_error_share_is_about_right() -> None:
    async def main() -> None:
        async with serve(fault_429=0.3) as (_server, s):
            statuses = []
            for _ in range(60):
                async with s.post("/v1/completions", json={**BODY, "stream": False, "max_tokens": 1}) as resp:
                    statuses.append(resp.status)
        share = statuses.count(429) / len(statuses)
        assert 0.12 < share < 0.5, share
        assert set(statuses) == {200, 429}

    asyncio.run(main())


def test_cut_stream_ends_without_terminating_chunk(tmp_path) -> None:
    gt = tmp_path / "gt.jsonl"

    async def main() -> None:
        async with serve(fault_cut=1.0, ground_truth=str(gt)) as (server, s):
            status, events, _, outcome = await _stream(s)
            assert status == 200 and outcome == "ClientPayloadError"
            assert events and b"[DONE]" not in [e for _, e in events]
            assert len(events) == 20  # cut right after the chunk that crossed half of 40 tokens
            await asyncio.sleep(0.02)
            assert not server.engine.has_work  # the engine dropped the request and freed its blocks
            assert server.engine.kv_usage == 0.0
        rec = orjson.loads(gt.read_bytes().splitlines()[0])
        assert rec["status"] == "cut" and rec["completion_tokens"] <= 40

    asyncio.run(main())


def test_stall_mid_stream() -> None:
    async def main() -> None:
        async with serve(fault_stall=1.0, stall_ms=300.0) as (_server, s):
            status, events, _, outcome = await _stream(s)
        assert status == 200 and outcome == "done"
        gaps = [b[0] - a[0] for a, b in zip(events, events[1:], strict=False)]
        assert max(gaps) >= 0.29
        assert sorted(gaps)[-2] < 0.1  # one stall only
        assert events[-1][1] == b"[DONE]"

    asyncio.run(main())


def test_slow_first_byte() -> None:
    async def main() -> None:
        async with serve(fault_slow_first_byte=1.0, slow_first_byte_ms=250.0) as (_server, s):
            status, events, t_head, outcome = await _stream(s)
            assert status == 200 and outcome == "done" and t_head >= 0.24
        async with serve() as (_server, s):
            _, _, t_head, _ = await _stream(s)
            assert t_head < 0.1

    asyncio.run(main())


def test_malformed_chunk() -> None:
    async def main() -> None:
        async with serve(fault_malformed=1.0) as (_server, s):
            status, events, _, outcome = await _stream(s)
        assert status == 200 and outcome == "done"
        bad = 0
        for _, e in events:
            if e == b"[DONE]":
                continue
            try:
                orjson.loads(e)
            except orjson.JSONDecodeError:
                bad += 1
        assert bad == 1
        assert len(events) == 40 + 1 + 1  # every token chunk still arrives, plus the bad one and [DONE]

    asyncio.run(main())


def test_cli_announces_port_serves_and_stops_cleanly(tmp_path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadgen.sim", "--port", "0", "--set", "step_overhead_us=1000", "--seed", "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    try:
        line = proc.stdout.readline().decode()
        assert line.startswith("loadgen.sim listening on http://127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])

        async def main() -> int:
            async with aiohttp.ClientSession() as s:
                body = {"prompt": "hi", "max_tokens": 5, "ignore_eos": True}
                async with s.post(f"http://127.0.0.1:{port}/v1/completions", json=body) as resp:
                    return (await resp.json())["usage"]["completion_tokens"]

        assert asyncio.run(main()) == 5
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert out == b""  # exactly one line was printed
    assert b"Traceback" not in err

    bad = subprocess.run(
        [sys.executable, "-m", "loadgen.sim", "--set", "nope=1"], capture_output=True, timeout=10
    )
    assert bad.returncode == 2 and b"unknown sim setting" in bad.stderr
