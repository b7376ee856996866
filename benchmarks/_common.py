"""Shared plumbing for the benchmarks: the fast server as a child process, loadgen via its CLI, the joins.

Every process is pinned with ``taskset`` (client on one core, server on the other) when the machine has two or more
cores; every child is stopped by its own pid. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
PY = sys.executable
CLIENT_CPU = "0"
SERVER_CPU = "1"


def scratch_dir(prefix: str) -> tempfile.TemporaryDirectory:
    """Results of the measured runs go to tmpfs when there is one: a disk that stalls a write() for hundreds of ms
    (seen here while another process loaded a model) would otherwise be measured as client error."""
    shm = Path("/dev/shm")
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    return tempfile.TemporaryDirectory(prefix=prefix, dir=base)


def pinned(cmd: list[str], cpu: str) -> list[str]:
    if (os.cpu_count() or 1) >= 2 and _has_taskset():
        return ["taskset", "-c", cpu, *cmd]
    return cmd


def _has_taskset() -> bool:
    return subprocess.run(["which", "taskset"], capture_output=True).returncode == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_jiffies() -> list[tuple[int, int]]:
    """Per core (busy, total) jiffies from /proc/stat."""
    out = []
    try:
        with open("/proc/stat") as fh:
            for line in fh:
                if line.startswith("cpu") and line[3].isdigit():
                    v = [int(x) for x in line.split()[1:]]
                    idle = v[3] + (v[4] if len(v) > 4 else 0)
                    out.append((sum(v) - idle, sum(v)))
    except OSError:
        pass
    return out


def pid_cpu_s(pid: int) -> float:
    """utime + stime of a live process, from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            f = fh.read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class CpuWindow:
    """Busy core-seconds per core over a window, so a result says how loaded the machine was while measured."""

    def __init__(self) -> None:
        self.t = time.perf_counter()
        self.j = _cpu_jiffies()

    def report(self, own_cpu_s: float = 0.0) -> dict[str, Any]:
        j = _cpu_jiffies()
        wall = time.perf_counter() - self.t
        tck = os.sysconf("SC_CLK_TCK")
        busy = [(b1 - b0) / tck for (b0, _), (b1, _) in zip(self.j, j, strict=False)]
        total = sum(busy)
        return {
            "wall_s": round(wall, 2),
            "busy_share_per_core": [round(b / wall, 3) for b in busy] if wall > 0 else [],
            "benchmark_processes_cpu_s": round(own_cpu_s, 2),
            # what everything else on the machine used, in cores: the number to read a result against
            "other_load_cores": round(max(total - own_cpu_s, 0.0) / wall, 3) if wall > 0 else None,
        }


def machine_load() -> dict[str, Any]:
    """Load average and the busiest other processes, so a number can be read against what else ran."""
    la = os.getloadavg()
    top = subprocess.run(["ps", "-eo", "pcpu,comm", "--sort=-pcpu"], capture_output=True, text=True).stdout
    busy = [ln.strip() for ln in top.splitlines()[1:6]]
    return {"loadavg_1m": round(la[0], 2), "loadavg_5m": round(la[1], 2), "top_processes": busy}


class FastServer:
    """``benchmarks/fast_server.py`` in a child process on the server core (``core``; default SERVER_CPU).

    ``port``, ``reuse_port``, ``id_base`` and ``id_step``: one of several servers sharing a port (``ServerGroup``).
    """

    def __init__(
        self,
        mode: str,
        log: Path,
        ttft_ms: float = 100.0,
        itl_ms: float = 10.0,
        *,
        core: str | None = None,
        port: int | None = None,
        reuse_port: bool = False,
        id_base: int = 0,
        id_step: int = 1,
        pin: bool = True,
    ) -> None:
        """``pin``: on the server core (a benchmark); False lets the scheduler place it (a test)."""
        self.port = port or free_port()
        self.log = log
        cmd = [
            PY,
            str(BENCH / "fast_server.py"),
            "--port",
            str(self.port),
            "--mode",
            mode,
            "--ttft-ms",
            str(ttft_ms),
            "--itl-ms",
            str(itl_ms),
            "--log",
            str(log),
        ]
        if reuse_port:
            cmd += ["--reuse-port", "--id-base", str(id_base), "--id-step", str(id_step)]
        self.proc = subprocess.Popen(
            pinned(cmd, core or SERVER_CPU) if pin else cmd, stdout=subprocess.PIPE, text=True
        )
        line = self.proc.stdout.readline()
        if "listening" not in line:
            self.proc.kill()
            raise RuntimeError(f"fast_server did not start: {line!r}")
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.cpu_s = 0.0

    def stop(self) -> dict[str, Any]:
        """SIGTERM (the server then writes its log), wait, read the log back."""
        self.cpu_s = pid_cpu_s(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return read_server_log(self.log)

    def __enter__(self) -> FastServer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class ServerGroup:
    """Several ``fast_server.py`` processes on one port (SO_REUSEPORT), one per core in ``cores``.

    One Python server writes ~20,000 timed token events/s with a whole core: a load beyond that needs several. The
    kernel spreads connections over them (a keep-alive connection stays with its server); each logs its own
    requests under ids unique over the group (server k of K: k, k + K, k + 2K, ...), and ``stop()`` merges the
    logs into one, as ``FastServer.stop()`` returns it, with the write lateness taken over every server's writes.
    """

    def __init__(
        self, mode: str, logdir: Path, cores: list[str], ttft_ms: float = 100.0, itl_ms: float = 10.0
    ):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.cores = cores
        self.servers: list[FastServer] = []
        try:
            for k, core in enumerate(cores):
                self.servers.append(
                    FastServer(mode, logdir / f"server-{k}.jsonl", ttft_ms, itl_ms, core=core, port=self.port,
                               reuse_port=len(cores) > 1, id_base=k, id_step=len(cores))
                )  # fmt: skip
        except BaseException:
            self.__exit__()
            raise
        self.cpu_s = 0.0
        self.cpu_s_each: list[float] = []

    def stop(self) -> dict[str, Any]:
        logs = [s.stop() for s in self.servers]
        self.cpu_s_each = [round(s.cpu_s, 2) for s in self.servers]
        self.cpu_s = sum(s.cpu_s for s in self.servers)
        requests: dict[int, dict[str, Any]] = {}
        for log in logs:
            requests.update(log["requests"])
        late = [np.asarray(r["write_ns"], np.int64) - np.asarray(r["plan_ns"], np.int64)
                for r in requests.values() if r.get("plan_ns")]  # fmt: skip
        summary: dict[str, Any] = {
            "servers": len(self.servers),
            "requests_each": [log["summary"].get("requests") for log in logs],
        }
        if late:
            a = np.concatenate(late) / 1e6
            summary["write_lateness_ms"] = {
                "p50": float(np.percentile(a, 50)),
                "p99": float(np.percentile(a, 99)),
                "p999": float(np.percentile(a, 99.9)),
                "max": float(a.max()),
                "mean": float(a.mean()),
            }
        return {"requests": requests, "summary": summary}

    def __enter__(self) -> ServerGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        for s in self.servers:
            s.__exit__()


def read_server_log(path: Path) -> dict[str, Any]:
    by_id: dict[int, dict[str, Any]] = {}
    summary: dict[str, Any] = {}
    with open(path, "rb") as fh:
        for line in fh:
            obj = json.loads(line)
            if "server_summary" in obj:
                summary = obj["server_summary"]
            else:
                by_id[obj["id"]] = obj
    return {"requests": by_id, "summary": summary}


def run_loadgen(
    args: list[str],
    out_dir: Path,
    timeout_s: float = 900,
    src: Path | None = None,
    cpu: str | None = CLIENT_CPU,
) -> dict[str, Any]:
    """``python -m loadgen ...`` on the client core (``cpu``: a taskset core list, None for any core); returns its
    summary, records and rusage of the child (with the sender processes it waited for).

    ``src``: another checkout's root to run loadgen from (its ``loadgen`` package), e.g. main's code for a
    before/after comparison in one session; default this one.
    """
    cmd = [PY, "-m", "loadgen", *args, "--output-dir", str(out_dir), "--quiet", "--no-live"]
    cmd = pinned(cmd, cpu) if cpu is not None else cmd
    t = time.perf_counter()
    env = None
    if src is not None:  # that checkout's loadgen first, the rest of the path as it is (carried packages)
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join(filter(None, (str(src), os.environ.get("PYTHONPATH"))))
        )
    proc = subprocess.Popen(cmd, cwd=src or ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = t + timeout_s
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            pid, status, ru = os.wait4(proc.pid, 0)
            raise RuntimeError("loadgen timed out")
        time.sleep(0.05)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen exited {proc.returncode}: {err[-2000:]}")
    summary = json.loads((out_dir / "summary.json").read_bytes())
    records = [json.loads(line) for line in (out_dir / "requests.jsonl").read_bytes().splitlines() if line]
    return {
        "summary": summary,
        "records": records,
        "process_cpu_s": ru.ru_utime + ru.ru_stime,
        "process_user_s": ru.ru_utime,
        "process_sys_s": ru.ru_stime,
        "process_wall_s": wall,
        "max_rss_mb": ru.ru_maxrss / 1024,
    }


def child_cpu_s(cmd: list[str], cpu: str = CLIENT_CPU) -> float:
    """CPU seconds (user + sys) of one child command run to completion."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(pinned(cmd, cpu), cwd=ROOT, capture_output=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def pct(a: Any, qs: tuple[float, ...] = (50, 90, 99, 99.9)) -> dict[str, float | None]:
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        return {f"p{q:g}": None for q in qs} | {"max": None, "n": 0}
    out: dict[str, float | None] = {f"p{q:g}": round(float(np.percentile(a, q)), 4) for q in qs}
    out["max"] = round(float(a.max()), 4)
    out["mean"] = round(float(a.mean()), 4)
    out["n"] = int(a.size)
    return out


def write_result(name: str, result: dict[str, Any]) -> Path:
    d = BENCH / "results"
    d.mkdir(exist_ok=True)
    p = d / f"{name}.json"
    p.write_text(json.dumps(result, indent=2) + "\n")
    return p
