"""The real-engine tier summary is the last thing pytest prints before its final count line, after -ra's short
summary and the warnings summary (a real pytest run of a probe file, in a process of its own)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import TIERS

ROOT = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).resolve().parent / "probes" / "tier_order_probe.py"


def test_tier_summary_is_printed_last_after_skips_and_warnings():
    r = subprocess.run(
        [sys.executable, "-m", "pytest", str(PROBE), "-p", "no:cacheprovider", "-ra", "--color=no"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert r.returncode == 0, r.stdout[-3000:]
    sep = next(i for i, ln in enumerate(lines) if "real-engine and browser tiers" in ln)
    assert any("SKIPPED" in ln and "a skip that -ra lists" in ln for ln in lines[:sep])
    assert any("a warning the summary lists" in ln for ln in lines[:sep])
    tiers = lines[sep + 1 : -1]
    assert [ln.split(":")[0] for ln in tiers] == [name for name, _ in TIERS]
    assert "1 passed" in lines[-1] and "1 skipped" in lines[-1]
