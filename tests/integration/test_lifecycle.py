"""Server lifecycle (server_launchers.lifecycle): health waits, prefix-cache resets, adopted endpoints and stopped
process groups, against real HTTP servers and processes on this machine."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from server_launchers.lifecycle import (
    Server,
    group_alive,
    http,
    http_json,
    reset_prefix_cache,
    root_url,
    wait_healthy,
)
from server_launchers.spec import LaunchSpec


@contextmanager
def serving(routes: dict[tuple[str, str], list[tuple[int, dict]]]) -> Iterator[str]:
    """An HTTP server answering (method, path) with the next of its (status, JSON) answers (the last repeats)."""
    seen: dict[tuple[str, str], int] = {}

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            answers = routes.get((method, self.path), [(404, {"error": "not found"})])
            n = seen.get((method, self.path), 0)
            seen[(method, self.path)] = n + 1
            status, doc = answers[min(n, len(answers) - 1)]
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            self._answer("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._answer("POST")

        def log_message(self, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_http_helpers_answer_errors_as_statuses():
    with serving({("GET", "/v1/models"): [(200, {"data": [{"id": "m"}]})]}) as root:
        assert http_json(root + "/v1/models") == (200, {"data": [{"id": "m"}]})
        assert http(root + "/nope")[0] == 404
        assert root_url(root + "/v1") == root
    with pytest.raises(OSError):
        http(root + "/v1/models", timeout=2.0)  # the server is gone


def test_wait_healthy_takes_health_or_the_model_list_and_says_why_it_gave_up():
    with serving({("GET", "/health"): [(503, {}), (503, {}), (200, {})]}) as root:
        assert wait_healthy(root, 60.0, poll_s=0.01) >= 0
    with serving({("GET", "/v1/models"): [(200, {"data": []})]}) as root:  # no /health (404)
        assert wait_healthy(root, 60.0, poll_s=0.01) >= 0
    with serving({}) as root:
        with pytest.raises(RuntimeError, match="exited before"):
            wait_healthy(root, 60.0, alive=lambda: False, poll_s=0.01)
        with pytest.raises(TimeoutError, match="not healthy after"):
            wait_healthy(root, 0.05, poll_s=0.01)


def test_reset_prefix_cache_retries_while_blocks_are_held_and_names_what_is_missing():
    busy = [(200, {"success": False}), (200, {"success": False}), (200, {"success": True})]
    with serving({("POST", "/reset_prefix_cache"): busy}) as root:
        assert reset_prefix_cache(root) == "done (POST /reset_prefix_cache)"
    with serving({("POST", "/flush_cache"): [(200, {})]}) as root:  # SGLang
        assert reset_prefix_cache(root) == "done (POST /flush_cache)"
    with serving({}) as root:  # TGI, or vLLM without dev mode
        assert reset_prefix_cache(root).startswith(
            "unavailable: the server does not serve /reset_prefix_cache"
        )
    with serving({("POST", "/reset_prefix_cache"): [(500, {})]}) as root:
        assert reset_prefix_cache(root) == "failed: POST /reset_prefix_cache answered 500"
    with serving({("POST", "/reset_prefix_cache"): [(200, {"success": False})]}) as root:
        assert "kept answering success=false" in reset_prefix_cache(root, attempts=2)


def test_an_adopted_endpoint_reports_its_version_and_stopping_it_stops_nothing():
    routes = {("GET", "/health"): [(200, {})], ("GET", "/version"): [(200, {"version": "0.32.0"})]}
    spec = LaunchSpec(name="x", model="m")
    with serving(routes) as root:
        server = Server(spec, "endpoint", base_url=root + "/v1", timeout_s=10)
        assert server.start() == root
        assert server.info["root_url"] == root and server.info["server_version"] == "0.32.0"
        server.stop()
        assert http(root + "/health")[0] == 200
        assert server.state()["endpoint"] == root and "pgid" not in server.state()


def test_a_stopped_server_takes_its_whole_process_group_with_it():
    # a leader that started a child of its own, as engines do (vLLM's API server and engine core)
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); time.sleep(600)"
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    # reaped as its parent would reap it (a `stop` from the CLI runs in another process than the `start`)
    threading.Thread(target=proc.wait, daemon=True).start()
    try:
        spec = LaunchSpec(name="x", model="m")
        server = Server.from_state(spec, {"mode": "host", "pgid": proc.pid})
        assert group_alive(proc.pid)
        server.stop(grace_s=10.0)
        proc.wait(timeout=30)
        assert not group_alive(proc.pid)
        server.stop()  # again: nothing to do
    finally:
        if proc.poll() is None:
            proc.kill()
