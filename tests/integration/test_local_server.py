"""The local engines' shared server and shell (server_launchers.local_server), without an engine: a subclass whose
"engine" is a small Python HTTP server in its own process group (it spawns a child, as vLLM does)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from server_launchers import local_server
from server_launchers.lifecycle import EngineUnavailable, LauncherError, group_alive, http
from server_launchers.local_server import LocalServer

REPO = Path(__file__).resolve().parents[2]
ENGINE = r"""
import subprocess, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # stopped with the group
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path in ("/health", "/metrics") else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
print("args:", sys.argv[2:], flush=True)
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


class FakeServer(LocalServer):
    engine = "fake"
    state_prefix = "fake-"
    startup_timeout_s_default = 30.0
    stop_grace_s_default = 5.0
    prepared = 0

    def __init__(self, extra_args=(), port=None, **common):
        super().__init__(extra_args, port, model_name="fake-model", **common)

    def prepare(self) -> None:
        FakeServer.prepared += 1

    def command(self) -> list[str]:
        return [sys.executable, "-c", ENGINE, str(self.port), *self.extra_args]


def _main(argv, setup=lambda args: 0):
    return local_server.main(
        FakeServer,
        argv,
        prog="fake",
        description="a fake engine",
        setup=setup,
        setup_help="nothing to set up",
    )


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LOADGEN_CACHE_DIR", str(tmp_path / "cache"))


def test_python_start_stop_kills_the_whole_group_and_logs_the_engines_output(tmp_path):
    with FakeServer(["--x", "1"], log_path=tmp_path / "fake.log") as srv:
        assert http(srv.health_url)[0] == 200 and srv.startup_s is not None
        assert srv.base_url == srv.root_url + "/v1" and srv.is_alive() and srv.rss_bytes() > 0
        pgid = srv.pgid
        assert FakeServer.prepared >= 1
    assert srv.pgid is None and not group_alive(pgid)
    assert "args: ['--x', '1']" in (tmp_path / "fake.log").read_text()


def test_shell_start_status_stop_keeps_state_and_refuses_a_second_start(tmp_path):
    # each verb in its own process, as from a shell: `start` returns while the server runs on
    env = {**os.environ, "LOADGEN_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}

    def shell(*args: str) -> subprocess.CompletedProcess:
        code = (
            "import sys; from tests.integration.test_local_server import _main; sys.exit(_main(sys.argv[1:]))"
        )
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert shell("status", "--name", "t").returncode == 3  # not started
    started = shell("start", "--name", "t", "--", "--flag", "v")
    assert started.returncode == 0, started.stderr
    base_url = started.stdout.strip().splitlines()[-1]
    state_path = tmp_path / "cache" / "run" / "fake-t.json"
    state = json.loads(state_path.read_text())
    assert (
        state["base_url"] == base_url
        and state["args"] == ["--flag", "v"]
        and state["model_name"] == "fake-model"
    )
    assert state["log"] == str(state_path.with_suffix(".log"))
    try:
        status = shell("status", "--name", "t")
        assert status.returncode == 0 and "healthy" in status.stdout
        again = shell("start", "--name", "t")
        assert again.returncode == 1 and "already running" in again.stderr
    finally:
        stopped = shell("stop", "--name", "t")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not group_alive(state["pgid"]) and not state_path.exists()
    assert shell("status", "--name", "t").returncode == 3
    gone = shell("stop", "--name", "t")
    assert gone.returncode == 0 and "no fake named 't'" in gone.stderr


def test_shell_exit_codes_say_hardware_or_error(capsys):
    def no_cpu(args):
        raise EngineUnavailable("this CPU lacks what the engine needs", hardware=True)

    def broken(args):
        raise LauncherError("the build failed\nlast lines of its log")

    assert _main(["setup"], no_cpu) == 3  # .ci/setup_vllm.sh reads 3 as "skip this tier"
    assert "unavailable on this machine: this CPU lacks" in capsys.readouterr().err
    assert _main(["setup"], broken) == 2
    assert capsys.readouterr().err == "error: the build failed\nlast lines of its log\n"
