"""End-to-end tests of the local CPU vLLM launcher itself (real server on 127.0.0.1; ~2 minutes)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from server_launchers.local_vllm import LocalVllmServer, ServerStartError

REPO = Path(__file__).resolve().parents[2]
REASONING = ["--reasoning-parser", "deepseek_r1"]


def _events(body: bytes) -> list[dict]:
    """SSE body -> the JSON objects of its data lines (stops at [DONE])."""
    out = []
    for block in body.split(b"\n\n"):
        line = block.strip()
        if not line:
            continue
        assert line.startswith(b"data: "), line[:80]
        payload = line[len(b"data: ") :]
        if payload == b"[DONE]":
            break
        out.append(json.loads(payload))
    return out


def _pids_in_group(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    pids.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return pids


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_server_starts_lists_model_and_exports_metrics(vllm_server):
    srv = vllm_server(REASONING)
    assert srv.base_url == f"http://127.0.0.1:{srv.port}/v1"
    models = httpx.get(f"{srv.base_url}/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["tiny-llama"]
    assert srv.model_name == "tiny-llama"
    metrics = httpx.get(srv.metrics_url, timeout=10).text
    assert 'vllm:num_requests_running{engine="0",model_name="tiny-llama"}' in metrics
    assert srv.startup_s is not None and srv.startup_s < 300
    assert 0.5 * 2**30 < srv.rss_bytes() < 8 * 2**30


def test_streamed_chat_returns_reasoning_then_content(vllm_server, tiny_model_info):
    srv = vllm_server(REASONING)
    body = {
        "model": srv.model_name,
        "messages": [{"role": "user", "content": "Why is the sky blue? Think first."}],
        "max_tokens": 80,
        "seed": 7,
        "logit_bias": {str(tiny_model_info["think_end_id"]): 5},
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    r = httpx.post(f"{srv.base_url}/chat/completions", json=body, timeout=60)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = _events(r.content)
    kinds = []
    for ev in events:
        for ch in ev["choices"]:
            delta = ch["delta"]
            if delta.get("reasoning"):
                kinds.append("r")
            if delta.get("content"):
                kinds.append("c")
    assert "r" in kinds and "c" in kinds, kinds
    first_content = kinds.index("c")
    assert "r" not in kinds[first_content:], "reasoning after content"
    assert first_content >= 1
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] <= 80


@pytest.mark.parametrize("n", [1, 17])
def test_ignore_eos_gives_exactly_max_tokens(vllm_server, n):
    srv = vllm_server(REASONING)
    body = {
        "model": srv.model_name,
        "messages": [{"role": "user", "content": "Count."}],
        "max_tokens": n,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    events = _events(httpx.post(f"{srv.base_url}/chat/completions", json=body, timeout=60).content)
    usage = events[-1]["usage"]
    assert usage["completion_tokens"] == n
    finishes = [c["finish_reason"] for ev in events for c in ev["choices"] if c.get("finish_reason")]
    assert finishes == ["length"]


def test_bad_flag_fails_fast_with_log_tail(vllm_setup, tmp_path):
    venv, model_dir = vllm_setup
    srv = LocalVllmServer(["--no-such-flag"], venv=venv, model_dir=model_dir, log_path=tmp_path / "bad.log")
    with pytest.raises(ServerStartError, match="no-such-flag") as exc:
        srv.start()
    # it failed because the process exited, not by waiting out the start-up timeout
    assert "exited with code" in str(exc.value) and "not healthy after" not in str(exc.value)
    assert not srv.is_alive()


def test_shell_start_status_stop_passes_flags_and_leaves_nothing(vllm_setup, tmp_path):
    env = {**os.environ}
    name = f"e2e-{os.getpid()}"
    cli = [sys.executable, "-m", "server_launchers.local_vllm"]

    def run(*args, timeout=330):
        return subprocess.run(
            [*cli, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
        )

    started = run(
        "start", "--name", name, "--log", str(tmp_path / "shell.log"), "--", "--no-enable-prefix-caching"
    )
    state_file = None
    try:
        assert started.returncode == 0, started.stderr[-2000:]
        base_url = started.stdout.strip().splitlines()[-1]
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        status = run("status", "--name", name, timeout=30)
        assert status.returncode == 0 and "healthy" in status.stdout
        # The extra flag reached vLLM: its cache config says prefix caching is off.
        metrics = httpx.get(base_url.removesuffix("/v1") + "/metrics", timeout=10).text
        assert 'enable_prefix_caching="False"' in metrics
        from server_launchers.local_vllm import cache_dir

        state_file = cache_dir() / "run" / f"{name}.json"
        state = json.loads(state_file.read_text())
        assert len(_pids_in_group(state["pgid"])) >= 2  # API server + engine core
    finally:
        stopped = run("stop", "--name", name, timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    assert _pids_in_group(state["pgid"]) == []
    assert not _port_open(state["port"])
    assert not state_file.exists()
    assert run("status", "--name", name, timeout=30).returncode == 3


def test_stop_leaves_no_process_behind(vllm_server):
    # Runs last in this file: it stops the shared server (the factory restarts it if asked again).
    srv = vllm_server(REASONING)
    pgid, port = srv.pgid, srv.port
    assert pgid is not None and len(_pids_in_group(pgid)) >= 2
    srv.stop()
    assert _pids_in_group(pgid) == []
    assert not _port_open(port)
    assert not srv.is_alive()
    srv.stop()  # idempotent
