"""``--ray``: senders as Ray actors (issue 13, item 3), on a Ray cluster of one node started here on loopback only.

The cluster: ``ray start --head --block`` on 127.0.0.1 (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` keeps Ray from
replacing 127.0.0.1 by the host's routable address), 2 CPUs, no dashboard, usage stats off, free ports, its own
temporary folder; bounded in time and stopped at the end by its process group (the ``--block`` process and what it
started), never with a machine-wide ``ray stop``. ``--ray auto --workers 2`` writes the same results files as
local workers; an actor killed mid-run leaves ``worker_lost`` records and the run finishes.

Ray is an optional extra (``loadgen[ray]``, which ``.ci/run`` installs): these tests fail when it is missing on a
platform Ray publishes wheels for, and skip, saying so, only where it cannot be installed.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.integration.test_cli import ROOT, ThreadedServer, cli, slow_stream
from tests.integration.test_workers import SAME, _files, _records, _wait_for_sender_lines

START_TIMEOUT_S = 120


def _ray_installable() -> bool:
    """Ray 2.60 publishes wheels for CPython 3.10-3.13 on x86-64 and ARM64 Linux, ARM64 macOS, x86-64 Windows."""
    machine = platform.machine().lower()
    return (3, 10) <= sys.version_info[:2] <= (3, 13) and machine in ("x86_64", "amd64", "aarch64", "arm64")


def _require_ray() -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        if _ray_installable():
            pytest.fail("Ray is not installed: pip install -e '.[test,ray]' (as .ci/run does)")
        pytest.skip(
            f"Ray publishes no wheel for {platform.system()} {platform.machine()} / Python "
            f"{platform.python_version()}: the Ray tier cannot run here"
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LOOPBACK_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # on Linux: 127.0.0.1 stays the node's address
    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",  # a stopped head does not wait 30 s to drain
}


@pytest.fixture(scope="module")
def ray_cluster():
    """A one-node Ray cluster on 127.0.0.1 for this module; yields the environment to reach it."""
    _require_ray()
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="lgray", dir="/tmp")  # short: Ray's socket paths live under it
    env = {**os.environ, **LOOPBACK_ENV, "PYTHONPATH": str(ROOT)}
    log = open(Path(temp) / "head.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", "--node-ip-address",
         "127.0.0.1", "--port", str(port), "--num-cpus", "2", "--include-dashboard=false",
         "--disable-usage-stats", "--temp-dir", temp, "--ray-client-server-port", str(_free_port()),
         "--dashboard-agent-listen-port", str(_free_port())],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while b"Ray runtime started" not in (Path(temp) / "head.log").read_bytes():
            assert proc.poll() is None, (Path(temp) / "head.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Ray head did not start within 120 s"
            time.sleep(0.2)
        yield {**LOOPBACK_ENV, "RAY_ADDRESS": f"127.0.0.1:{port}"}
    finally:
        _stop_group(proc)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _stop_group(proc: subprocess.Popen) -> None:
    """The head and everything it started: SIGTERM to the --block process, then SIGKILL to its process group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    for _ in range(50):  # bounded: Ray's processes leave within seconds of the head
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_ray_senders_write_the_same_results_as_local_workers(ray_cluster, tmp_path):
    args = ["-n", "30", "--warmup", "2", "--rate", "20", "--seed", "5", "--max-tokens", "24", "--ignore-eos",
            "--workers", "2", "--no-live", "--quiet"]  # fmt: skip
    local, remote = tmp_path / "local", tmp_path / "ray"
    r = cli(*args, "--output-dir", str(local), timeout=180)
    assert r.returncode == 0, r.stderr
    r = cli(*args, "--ray", "auto", "--output-dir", str(remote), env=ray_cluster, timeout=300)
    assert r.returncode == 0, r.stderr
    assert _files(remote) == _files(local)  # the same results files, no staging folder left behind
    r1, r2 = _records(local), _records(remote)
    assert [{k: r[k] for k in SAME} for r in r2] == [{k: r[k] for k in SAME} for r in r1]
    s1, s2 = _summary(local), _summary(remote)
    assert set(s2) == set(s1) and s2["metrics"]["requests"] == s1["metrics"]["requests"]
    assert s2["config"]["senders"] == {"workers": 2, "ray": "auto"}
    senders = s2["senders"]
    assert senders["mode"] == "ray" and senders["count"] == 2 and senders["lost"] == []
    assert senders["ray"]["node_ips"] == ["127.0.0.1"] and senders["ray"]["cpus"] == 2
    for row in senders["list"]:
        clock = row["clock"]
        assert (
            row["node_ip"] == "127.0.0.1"
            and row["node_id"]
            and row["actor"].endswith(f"-sender-{row['sender']}")
        )
        assert clock["rounds"] == 16 and 0 < clock["uncertainty_ns"] == (clock["rtt_ns"] + 1) // 2
        assert "drift_ns" in clock and clock["end"]["rounds"] == 16
        # one host: the measured offset is the host's own wall-minus-monotonic gap, within its uncertainty
        assert row["records"] == 16
    gap = s2["clock"]["t0_unix_ns"] - s2["clock"]["t0_ns"]
    for row in senders["list"]:
        assert abs(row["clock"]["offset_ns"] - gap) <= row["clock"]["uncertainty_ns"] + 2_000_000
    err = senders["schedule_error"]
    assert err["vs_driver_max_ms"] == max(x["clock"]["uncertainty_ns"] for x in senders["list"]) / 1e6
    assert [c["sender"] for c in s2["client_check"]["senders"]] == [0, 1]
    assert all("event_loop_lag_ms" in c and "cpu_peak_1s" in c for c in s2["client_check"]["senders"])


def _on_ray(env: dict, base_url: str, out: Path, *args: str) -> subprocess.Popen:
    """``python -m loadgen --ray auto --workers 2`` against ``base_url``, in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "loadgen", "--ray", "auto", "--workers", "2", "--base-url", base_url, *args,
         "--no-scrape", "--no-report", "--no-live", "--output-dir", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env},
    )  # fmt: skip


KILL = """
import ray, sys
ray.init(namespace="loadgen", log_to_driver=False)
names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].endswith("-sender-1")]
assert len(names) == 1, names
ray.kill(ray.get_actor(names[0], namespace="loadgen"), no_restart=True)
print(names[0])
"""


def test_a_killed_actor_leaves_worker_lost_records_and_the_run_finishes(ray_cluster, tmp_path):
    out = tmp_path / "o"
    with ThreadedServer(slow_stream(0.3, 3)) as srv:
        p = _on_ray(ray_cluster, srv.base_url, out, "-n", "60", "--rate", "15")
        try:
            _wait_for_sender_lines(out, 6, p)
            k = subprocess.run(
                [sys.executable, "-c", KILL], env={**os.environ, **ray_cluster}, capture_output=True, text=True,
                timeout=120,
            )  # fmt: skip
            assert k.returncode == 0, k.stderr[-2000:]
            _, stderr = p.communicate(timeout=180)
        finally:
            if p.poll() is None:
                p.kill()
    assert p.returncode == 0, stderr
    assert "sender 1" in stderr and "was lost" in stderr and "worker_lost" in stderr
    summary = _summary(out)
    assert summary["senders"]["lost"] == [1]
    row = summary["senders"]["list"][1]
    assert row["actor"] == k.stdout.strip() and "killed" in row["lost"]
    recs = _records(out)
    assert [r["index"] for r in recs] == list(range(60))  # every planned request has a record
    lost = [r for r in recs if r["error_kind"] == "worker_lost"]
    assert lost and {r["index"] % 2 for r in lost} == {1} and len(lost) == row["worker_lost"]
    assert all(r["status"] == "ok" for r in recs if r["index"] % 2 == 0)  # sender 0 finished its shard
    assert summary["metrics"]["requests"]["errors_by_kind"] == {"worker_lost": len(lost)}
    assert 1 in summary["client_check"]["untrustworthy_senders"] and summary["outcome"]["senders_lost"]
    assert not (out / ".senders").exists()


def test_ctrl_c_stops_every_actor_and_keeps_what_finished(ray_cluster, tmp_path):
    out = tmp_path / "o"
    with ThreadedServer(slow_stream(1.0)) as srv:
        p = _on_ray(ray_cluster, srv.base_url, out, "-n", "200", "--rate", "10")
        try:
            _wait_for_sender_lines(out, 6, p)
            p.send_signal(signal.SIGINT)
            _, stderr = p.communicate(timeout=120)
        finally:
            if p.poll() is None:
                p.kill()
    assert p.returncode == 130, stderr
    recs = _records(out)
    idx = [r["index"] for r in recs]
    assert idx == sorted(set(idx)) and 6 <= len(recs) < 200
    assert {r["status"] for r in recs} <= {"ok", "cancelled"}  # nothing lost, nothing made up
    summary = _summary(out)
    assert summary["interrupted"] is True and summary["senders"]["lost"] == []
    senders = summary["senders"]["list"]
    assert sum(s["sent"] for s in senders) == len(recs) == sum(s["records"] for s in senders)
