"""What a person sees from the command line: flags in their natural form, one-line setup errors, no leftovers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "loadgen", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def test_sim_arg_word_by_word_reaches_the_simulator(tmp_path):
    # `--sim-arg --fault-500 --sim-arg 1` used to stop at "expected one argument"
    r = cli("-n", "4", "--rate", "20", "--sim-arg", "--fault-500", "--sim-arg", "1", "--no-scrape", "--no-report",
            "--json", "--output-dir", str(tmp_path / "o"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    req = json.loads(r.stdout)["metrics"]["requests"]
    assert req["failed"] == 4 and req["errors_by_kind"] == {"http_5xx": 4}
