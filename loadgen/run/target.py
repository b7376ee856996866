"""The built-in simulated server as a child process: the default target when no endpoint is given.

A separate process keeps the simulator's CPU off the client's event loop, so the client's own measurements and
self-check mean the same thing against the simulator as against a real server.

Its output never blocks it: stderr goes straight to a file (``log_path``, else a temporary file kept for the
start-up error message), and after the ready line a thread copies the rest of stdout to the same file. An undrained
pipe fills at 64 KiB and then stops a chatty simulator at its next write. The simulator is started with
``--exit-with-parent``, so a client killed with ``kill -9`` (or by the OOM killer) does not leave it running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from loadgen.errors import EndpointError

__all__ = ["SimulatorProcess", "start_target"]

_READY = re.compile(r"listening on (http://\S+)")


@dataclass
class SimulatorProcess:
    profile: str | None = None
    seed: int = 0
    args: tuple[str, ...] = ()
    ground_truth_path: str | None = None
    startup_timeout_s: float = 30.0
    base_url: str = ""
    log_path: str | None = None  # the simulator's stderr, and its stdout after the ready line
    command: tuple[str, ...] | None = None  # run this instead of ``python -m loadgen.sim ...`` (tests)
    _proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None
    _threads: list[threading.Thread] = field(default_factory=list)

    def _command(self) -> list[str]:
        if self.command is not None:
            return list(self.command)
        cmd = [
            sys.executable,
            "-m",
            "loadgen.sim",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--seed",
            str(self.seed),
            "--exit-with-parent",
            "--enable-prompt-tokens-details",  # each request's cached prompt tokens (conversations' hit rates)
        ]
        if self.profile:
            cmd += ["--profile", self.profile]
        if self.ground_truth_path:
            cmd += ["--ground-truth", self.ground_truth_path]
        return cmd + list(self.args)

    async def start(self) -> str:
        self._log = open(self.log_path, "a+b") if self.log_path else tempfile.TemporaryFile()  # noqa: SIM115
        self._proc = proc = subprocess.Popen(
            self._command(),
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            # its own session: a Ctrl-C at the terminal (SIGINT to the whole foreground group) stops loadgen's
            # sending and gives in-flight requests their grace, which a simulator killed by the same Ctrl-C could
            # not answer; loadgen stops it at the end, and --exit-with-parent ends it if loadgen is killed
            start_new_session=True,
        )
        assert proc.stdout is not None
        # On a busy machine the client's timestamps must win the CPU over the simulator's work: the simulator keeps
        # its own (ground-truth) stamps, the client's lateness is what the self-check judges. Measured on a 2-core
        # machine at load 2-3: send lag p99 0.9-4 ms with the simulator at nice +5, 3-16 ms without.
        # The step is relative to loadgen's own priority, so a niced loadgen still outranks its simulator.
        with contextlib.suppress(OSError, ValueError):
            step = int(os.environ.get("LOADGEN_SIM_NICE", "5"))
            os.setpriority(os.PRIO_PROCESS, proc.pid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + step))
        loop = asyncio.get_running_loop()
        try:
            line = await asyncio.wait_for(
                loop.run_in_executor(None, proc.stdout.readline), self.startup_timeout_s
            )
        except TimeoutError:
            await self.stop()  # the blocked readline returns once the process is gone
            raise EndpointError(
                f"the built-in simulator did not start within {self.startup_timeout_s:g} s"
            ) from None
        m = _READY.search(line.decode(errors="replace"))
        if not m:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await loop.run_in_executor(None, proc.wait, 5)  # let it finish saying why (as it exits)
            words = self._last_words(line)
            await self.stop()
            raise EndpointError(f"the built-in simulator failed to start: {words}")
        self._drain(proc.stdout)
        self.base_url = m.group(1)
        return self.base_url

    def _drain(self, pipe: IO[bytes]) -> None:
        """Copy the rest of stdout to the log on a thread (idle, blocked in read, while the simulator is quiet)."""
        log = self._log

        def copy() -> None:
            try:
                while chunk := pipe.read1(65536):  # type: ignore[attr-defined]
                    if log is not None and not log.closed:
                        log.write(chunk)
            except (OSError, ValueError):
                pass

        t = threading.Thread(target=copy, name="loadgen-sim-stdout", daemon=True)
        t.start()
        self._threads.append(t)

    def _last_words(self, line: bytes) -> str:
        err = b""
        if self._log is not None:
            try:
                self._log.flush()
                self._log.seek(0)
                err = self._log.read()[-4096:]
            except (OSError, ValueError):
                err = b""
        last = err.decode(errors="replace").strip().splitlines()[-1:] or [
            line.decode(errors="replace").strip()
        ]
        return last[0] if last else "(no output)"

    async def stop(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            loop = asyncio.get_running_loop()
            try:
                await asyncio.wait_for(loop.run_in_executor(None, proc.wait), 10)
            except TimeoutError:
                proc.kill()
                await loop.run_in_executor(None, proc.wait)
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None


async def start_target(cfg: Any, out_dir: Path, stack: contextlib.AsyncExitStack, console: Any) -> Any:
    """The endpoint to measure: the configured one, or the built-in simulator started now (stopped by ``stack``)."""
    if not cfg.endpoint.simulated:
        return cfg.endpoint
    sim = SimulatorProcess(
        profile=cfg.sim.profile,
        seed=cfg.schedule.seed,
        args=cfg.sim.args,
        ground_truth_path=str(out_dir / "sim_ground_truth.jsonl"),
        log_path=str(out_dir / "sim.log"),
    )
    stack.push_async_callback(sim.stop)
    base_url = await sim.start()
    if console is not None:
        console.print(f"[cyan]no endpoint given: using the built-in simulated server at {base_url}[/]")
    return replace(cfg.endpoint, base_url=base_url)
