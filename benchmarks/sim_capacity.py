"""How much one loadgen.sim process can carry: many slow streams at once, and fast streams' token rate.

    python benchmarks/sim_capacity.py [--slow 10000] [--fast 256] [--fast-tokens 400]

The server runs as its own process (``python -m loadgen.sim``, uvloop), the client here is a plain bounded aiohttp
loop on 127.0.0.1. It prints numbers, it does not pass or fail. Server CPU comes from /proc/<pid>/stat, so
"tokens per server CPU-second" is the figure that says what one core sustains.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import time

import aiohttp
import orjson

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start(settings: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    cmd = [sys.executable, "-m", "loadgen.sim", "--port", "0"]
    for s in settings:
        cmd += ["--set", s]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    return proc, int(line.rsplit(":", 1)[1])


async def _one(s: aiohttp.ClientSession, url: str, body: dict, gaps: list[float] | None) -> int:
    last_event = b""
    prev = None
    async with s.post(url, json=body) as resp:
        buf = b""
        async for chunk in resp.content.iter_any():
            if gaps is not None:
                now = time.perf_counter()
                if prev is not None:
                    gaps.append(now - prev)
                prev = now
            buf += chunk
            cut = buf.rfind(b"\n\n", 0, len(buf) - 2)
            if cut >= 0:
                head = buf[:cut]
                last_event = head[head.rfind(b"data: ") :] if b'"usage"' in head else last_event
                buf = buf[cut + 2 :]
    return int(orjson.loads(last_event[6:])["usage"]["completion_tokens"])


async def _run(
    port: int, n: int, body: dict, gaps: list[float] | None, timeout: float
) -> tuple[int, int, float]:
    url = f"http://127.0.0.1:{port}/v1/completions"
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=timeout)) as s:
        t0 = time.perf_counter()
        results = await asyncio.gather(*(_one(s, url, body, gaps) for _ in range(n)), return_exceptions=True)
        wall = time.perf_counter() - t0
    ok = [r for r in results if isinstance(r, int)]
    return len(ok), sum(ok), wall


def slow(n: int) -> None:
    step_ms = 500
    tokens = 12
    proc, port = _start([f"max_num_seqs={n}", f"num_blocks={n * 2 + 4200}", "max_num_batched_tokens=65536",
                         f"step_overhead_us={step_ms * 1000}", "prefill_token_us=0", "decode_seq_us=0",
                         "context_token_us=0", "max_model_len=1024"])  # fmt: skip
    try:
        cpu0 = _cpu_seconds(proc.pid)
        gaps: list[float] = []
        body = {"prompt": "slow", "max_tokens": tokens, "ignore_eos": True, "stream": True,
                "stream_options": {"include_usage": True}}  # fmt: skip
        ok, toks, wall = asyncio.run(_run(port, n, body, gaps, timeout=120))
        cpu = _cpu_seconds(proc.pid) - cpu0
    finally:
        proc.terminate()
        proc.wait()
    gaps.sort()
    mid = [g for g in gaps if g > step_ms / 2000]  # inter-step gaps (drop same-step frame splits)
    p50 = mid[len(mid) // 2] if mid else float("nan")
    p99 = mid[int(len(mid) * 0.99)] if mid else float("nan")
    print(f"slow streams: {ok}/{n} completed, {toks} tokens in {wall:.1f} s (ideal {tokens * step_ms / 1000:.1f} s), "
          f"inter-chunk gap p50 {p50 * 1000:.0f} ms p99 {p99 * 1000:.0f} ms (step {step_ms} ms), "
          f"server CPU {cpu:.1f} s")  # fmt: skip


def fast(n: int, tokens: int) -> None:
    proc, port = _start([f"max_num_seqs={n}", f"num_blocks={n * (tokens // 16 + 4)}", "max_num_batched_tokens=8192",
                         "step_overhead_us=1000", "prefill_token_us=0", "decode_seq_us=0", "context_token_us=0",
                         f"max_model_len={tokens + 64}"])  # fmt: skip
    try:
        cpu0 = _cpu_seconds(proc.pid)
        body = {"prompt": "fast", "max_tokens": tokens, "ignore_eos": True, "stream": True,
                "stream_options": {"include_usage": True, "continuous_usage_stats": True}}  # fmt: skip
        ok, toks, wall = asyncio.run(_run(port, n, body, None, timeout=300))
        cpu = _cpu_seconds(proc.pid) - cpu0
    finally:
        proc.terminate()
        proc.wait()
    print(f"fast streams: {ok}/{n} completed, {toks} tokens (one per chunk, continuous usage) in {wall:.2f} s: "
          f"{toks / wall:,.0f} tok/s wall, server CPU {cpu:.2f} s -> {toks / max(cpu, 1e-9):,.0f} tok per server "
          f"CPU-second")  # fmt: skip


def fast_with_loadgen(n: int, tokens: int, requests: int) -> None:
    """The same fast streams driven by loadgen itself (closed loop of ``n``), client on CPU 0, simulator on CPU 1:
    the wall rate here is the simulator's, since loadgen's client ceiling is far above it."""
    import json
    import shutil
    import tempfile

    settings = [f"max_num_seqs={n}", f"num_blocks={n * (tokens // 16 + 4)}", "max_num_batched_tokens=8192",
                "step_overhead_us=1000", "prefill_token_us=0", "decode_seq_us=0", "context_token_us=0",
                f"max_model_len={tokens + 64}"]  # fmt: skip
    pin = ["taskset", "-c", "1"] if shutil.which("taskset") and os.cpu_count() and os.cpu_count() > 1 else []
    cmd = [*pin, sys.executable, "-m", "loadgen.sim", "--port", "0"]
    for setting in settings:
        cmd += ["--set", setting]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None
    port = int(proc.stdout.readline().decode().rsplit(":", 1)[1])
    out = tempfile.mkdtemp(prefix="simcap-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        cpu0 = _cpu_seconds(proc.pid)
        client = ["taskset", "-c", "0"] if pin else []
        subprocess.run(
            [*client, sys.executable, "-m", "loadgen", "--base-url", f"http://127.0.0.1:{port}", "--api",
             "completions", "--rate", "inf", "--max-concurrency", str(n), "-n", str(requests), "--max-tokens",
             str(tokens), "--ignore-eos", "--input-len", "8", "--no-scrape", "--quiet", "--no-report",
             "--output-dir", out],
            check=True, cwd=ROOT,
        )  # fmt: skip
        cpu = _cpu_seconds(proc.pid) - cpu0
        with open(os.path.join(out, "summary.json")) as fh:
            summary = json.load(fh)
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(out, ignore_errors=True)
    m = summary["metrics"]
    toks = m["tokens"]["completion"]
    wall = m["window"]["duration_s"]
    print(f"fast streams via loadgen: {m['requests']['ok']}/{requests} ok, {toks} tokens in {wall:.2f} s: "
          f"{toks / wall:,.0f} tok/s wall, server CPU {cpu:.2f} s -> {toks / max(cpu, 1e-9):,.0f} tok per server "
          f"CPU-second; loadgen client CPU {summary['client_check']['cpu_s']:.2f} s")  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--slow", type=int, default=10000)
    p.add_argument("--fast", type=int, default=256)
    p.add_argument("--fast-tokens", type=int, default=400)
    p.add_argument(
        "--loadgen-requests", type=int, default=1024, help="fast streams driven by loadgen (0: skip)"
    )
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.slow + 1024)), hard))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    fast(args.fast, args.fast_tokens)
    if args.loadgen_requests:
        fast_with_loadgen(args.fast, args.fast_tokens, args.loadgen_requests)
    slow(args.slow)
    return 0


if __name__ == "__main__":
    sys.exit(main())
