"""The built-in simulator as loadgen's child process: its output is drained, and it does not outlive a killed
client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from loadgen.run.target import SimulatorProcess
from tests.integration.test_cli import ROOT, cli
from tests.integration.test_killed_run import _wait_for_lines

MIB = 1 << 20


def test_a_chatty_simulator_is_never_blocked_by_its_pipes(tmp_path):
    """Writes 2 MiB to stdout and to stderr after its ready line (an undrained pipe blocks at 64 KiB), then
    leaves a marker: the marker appears and the log holds everything it wrote."""
    marker = tmp_path / "marker"
    code = (
        "import sys, time\n"
        "print('loadgen.sim listening on http://127.0.0.1:9', flush=True)\n"
        "for _ in range(64):\n"
        "    sys.stdout.write('o' * 32768); sys.stdout.flush()\n"
        "    sys.stderr.write('e' * 32768); sys.stderr.flush()\n"
        f"open({str(marker)!r}, 'w').close()\n"
        "time.sleep(600)\n"
    )
    log = tmp_path / "sim.log"

    async def main() -> bool:
        sim = SimulatorProcess(command=(sys.executable, "-c", code), log_path=str(log))
        assert await sim.start() == "http://127.0.0.1:9"
        try:
            for _ in range(1200):  # bounded: a hang guard, not a timing assertion
                if marker.exists():
                    return True
                await asyncio.sleep(0.05)
            return False
        finally:
            await sim.stop()

    assert asyncio.run(main()), "the simulator blocked on a full pipe"
    data = log.read_bytes()
    assert data.count(b"o") == 64 * 32768 and data.count(b"e") == 64 * 32768


def test_a_simulator_that_fails_to_start_says_why(tmp_path):
    code = "import sys; sys.stderr.write('boom: no port\\n'); sys.exit(2)"

    async def main() -> str:
        sim = SimulatorProcess(command=(sys.executable, "-c", code))
        try:
            await sim.start()
        except Exception as exc:  # EndpointError
            return str(exc)
        return "started"

    assert asyncio.run(main()) == "the built-in simulator failed to start: boom: no port"


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigkilled_client_leaves_no_simulator_and_its_run_is_rebuilt(tmp_path):
    out = tmp_path / "killed-sim"
    p = subprocess.Popen(
        [sys.executable, "-m", "loadgen", "-n", "400", "--rate", "10", "--max-tokens", "32", "--no-live",
         "--scrape-interval", "0.2", "--output-dir", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _wait_for_lines(out / "requests.jsonl", 10, p)
        sims = _children(p.pid)
        assert sims, "the simulator runs as loadgen's child"
        p.send_signal(signal.SIGKILL)
        p.communicate()
    finally:
        if p.poll() is None:
            p.kill()
    for _ in range(600):  # bounded: the simulator checks for its parent every 0.5 s
        if not any(_alive(s) for s in sims):
            break
        time.sleep(0.05)
    assert not any(_alive(s) for s in sims), "the simulator outlived the killed client"
    assert not (out / "summary.json").exists() and (out / "sim.log").exists()
    r = cli("report", str(out))
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert (
        summary["target"]["kind"] == "simulated" and summary["rebuilt"]["from"][-1] == "server_metrics.jsonl"
    )
    assert summary["server"]["dialect"] == "vllm" and summary["metrics"]["requests"]["ok"] >= 10


def test_the_simulator_yields_the_cpu_to_the_client(tmp_path):
    """On a busy machine the client's stamps must win the CPU: the simulator runs at a lower priority (nice +5)."""
    code = "import time\nprint('loadgen.sim listening on http://127.0.0.1:9', flush=True)\ntime.sleep(600)\n"

    async def main() -> int:
        sim = SimulatorProcess(command=(sys.executable, "-c", code), log_path=str(tmp_path / "sim.log"))
        await sim.start()
        try:
            return os.getpriority(os.PRIO_PROCESS, sim._proc.pid) - os.getpriority(os.PRIO_PROCESS, 0)
        finally:
            await sim.stop()

    assert asyncio.run(main()) == 5
