"""The launchers' help is plain text (no reStructuredText backticks from their docstrings), and the e2e marker's
description names both real engines it covers."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HELPS = [
    ("server_launchers",),
    *((m, *verb) for m in ("server_launchers.local_vllm", "server_launchers.local_llamacpp")
      for verb in ((), ("setup",), ("start",), ("stop",), ("status",))),
]  # fmt: skip


@pytest.mark.parametrize("argv", HELPS, ids=" ".join)
def test_launcher_help_is_plain_text_without_rst_backticks(argv):
    r = subprocess.run(
        [sys.executable, "-m", *argv, "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() and "`" not in r.stdout, r.stdout


def test_e2e_marker_description_names_both_engines():
    markers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    e2e = next(m for m in markers if m.startswith("e2e:"))
    assert "llama.cpp" in e2e and "vLLM" in e2e
