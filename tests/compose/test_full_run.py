"""The compose tier (marker ``compose``): ``bash docker/full_run.sh --engine llamacpp`` for real, end to end.

llama.cpp's llama-server (the e2e tier's CPU build and tiny model) + Prometheus + loadgen in containers, brought up
with compose on a dockerd the script starts itself; then: loadgen's summary has every request ok and the llama.cpp
server section, Prometheus's HTTP API answered with the engine's series and loadgen's ``loadgen_requests_total``
for the run, and nothing is left running (no dockerd it started, no container, network or volume of the run).

llama-server and its model come from the llama.cpp tier's set-up (``bash .ci/setup_llamacpp.sh``): when they are not
there, the test skips or fails as that tier does. Where dockerd cannot start here (no privileges, no kernel support) or debootstrap cannot reach Debian's packages,
the test skips with that reason, in CI too: the project cannot change the machine. Anything else (a tool .ci/run
installs is missing, a build fails, the run fails) fails under CI and skips elsewhere, with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.e2e.llamacpp_fixtures import llamacpp_setup  # noqa: F401 (fixture: built by .ci/setup_llamacpp.sh)
from tests.e2e.server_pool import in_ci

pytestmark = pytest.mark.compose

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "loadgen-fullrun"
REQUESTS = 24
# what the machine decides (skip everywhere) rather than the project (fail in CI)
MACHINE_REASONS = ("dockerd did not start", "debootstrap could not make", "starting one needs root")


def _not_here(reason: str) -> None:
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids(name: str) -> set[int]:
    r = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True)
    return {int(p) for p in r.stdout.split()}


def _left_by_the_run() -> list[str]:
    """Containers, networks and volumes of the run's compose project, on any dockerd that still answers."""
    left = []
    for what, args in (("container", ["ps", "-a", "-q"]), ("network", ["network", "ls", "-q"]),
                       ("volume", ["volume", "ls", "-q"])):  # fmt: skip
        r = subprocess.run(["docker", *args, "--filter", f"label=com.docker.compose.project={PROJECT}"],
                           capture_output=True, text=True)  # fmt: skip
        if r.returncode == 0:
            left += [f"{what} {x}" for x in r.stdout.split()]
    return left


def _query(results: Path, name: str) -> list[dict]:
    answer = json.loads((results / "prometheus" / f"{name}.json").read_text())
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def test_full_run_in_containers(tmp_path, llamacpp_setup):  # noqa: F811
    missing = [t for t in ("docker", "dockerd", "prometheus", "debootstrap") if shutil.which(t) is None]
    if shutil.which("docker-compose") is None:
        missing.append("docker-compose")
    if missing:
        _not_here(f"{', '.join(missing)} missing (Debian: apt-get install docker.io docker-compose prometheus "
                  "debootstrap; .ci/run installs them)")  # fmt: skip
    dockerd_before = _pids("dockerd") | _pids("containerd")
    label = "compose-e2e"
    env = {**os.environ, "LOADGEN_RESULTS": str(tmp_path), "LOADGEN_LABEL": label,
           "PROMETHEUS_PORT": str(_free_port())}  # fmt: skip
    load = ["--arrival", "poisson", "--rate", "4", "--num-requests", str(REQUESTS), "--max-tokens", "64",
            "--seed", "1", "--no-live"]  # fmt: skip
    r = subprocess.run(["bash", "docker/full_run.sh", "--engine", "llamacpp", "--", *load], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=3600)  # fmt: skip
    # nothing is left running, whatever the outcome
    assert (_pids("dockerd") | _pids("containerd")) - dockerd_before == set(), (
        "full_run.sh left a dockerd running"
    )
    assert _left_by_the_run() == []
    last = (r.stdout.strip().splitlines() or [""])[-1]
    if not last.startswith("results: "):  # it stopped before loadgen ran: its last line on stderr says why
        why = (r.stderr.strip().splitlines() or [f"exit {r.returncode}, no output"])[-1]
        if any(m in why for m in MACHINE_REASONS):
            pytest.skip(why)
        _not_here(why)
    results = Path(last.removeprefix("results: "))
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-2000:])
    assert results.parent == tmp_path and (results / "requests.jsonl").is_file()

    summary = json.loads((results / "summary.json").read_text())
    counts = summary["metrics"]["requests"]
    assert counts["measured"] == counts["ok"] == REQUESTS and counts["failed"] == 0, counts
    server = summary["server"]
    assert server["dialect"] == "llamacpp"
    assert server["server_time"]["generation_s"] > 0

    # Prometheus scraped loadgen's live figures for this run: every request, ok
    by_outcome = {
        x["metric"]["outcome"]: float(x["value"][1]) for x in _query(results, "loadgen_requests_total")
    }
    assert by_outcome.get("ok") == REQUESTS and sum(by_outcome.values()) == REQUESTS, by_outcome
    assert all(x["metric"]["run"] == label for x in _query(results, "loadgen_requests_total"))
    assert float(_query(results, "loadgen_ttft_count")[0]["value"][1]) == REQUESTS
    # ... and the engine's own series
    predicted = _query(results, "engine_tokens_predicted")
    assert predicted and predicted[0]["metric"]["job"] == "engine" and float(predicted[0]["value"][1]) > 0
    assert _query(results, "engine_prompt_tokens")
    up = {x["metric"]["job"]: x["value"][1] for x in _query(results, "up")}
    assert up.get("engine") == "1", up


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ((), "--engine is required"),
        (("--engine", "vllm"), "GPU host"),
        (("--engine", "llamacpp", "--x"), "unknown argument"),
    ],
)
def test_full_run_argument_mistakes_are_one_line_and_exit_2(args, needle):
    r = subprocess.run(
        ["bash", "docker/full_run.sh", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, r.stderr


def test_full_run_port_in_use_is_one_line_and_starts_nothing(tmp_path):
    if any(shutil.which(t) is None for t in ("docker", "docker-compose", "prometheus", "curl")):
        _not_here("docker, docker-compose, prometheus or curl missing (.ci/run installs them)")
    before = _pids("dockerd") | _pids("containerd")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        env = {**os.environ, "PROMETHEUS_PORT": str(port), "LOADGEN_RESULTS": str(tmp_path)}
        r = subprocess.run(["bash", "docker/full_run.sh", "--engine", "llamacpp"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        f"full_run: port {port} (Prometheus) is in use on 127.0.0.1: stop what listens there or set PROMETHEUS_PORT"
    ]
    assert (_pids("dockerd") | _pids("containerd")) - before == set() and list(tmp_path.iterdir()) == []
