"""A run killed with SIGKILL (kill -9, the OOM killer) keeps its records and its configuration (run.json);
``python -m loadgen report DIR`` rebuilds summary.json and the report from them and says what is missing
(issue 11 item 11)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.test_cli import ROOT, ThreadedServer, cli, slow_stream


def _wait_for_lines(path: Path, n: int, proc: subprocess.Popen) -> None:
    for _ in range(3000):  # bounded: a hang guard, not a timing assertion
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"{path} never reached {n} lines")


def test_sigkilled_run_is_rebuilt_from_its_records(tmp_path):
    out = tmp_path / "killed"
    with ThreadedServer(slow_stream(0.3, 6)) as srv:
        p = subprocess.Popen(
            [sys.executable, "-m", "loadgen", "--base-url", srv.base_url, "-n", "200", "--rate", "20",
             "--no-scrape", "--no-live", "--slo", "ttft=500ms", "--api-key", "sk-kill-secret",
             "--label", "to-be-killed", "--output-dir", str(out)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            _wait_for_lines(out / "requests.jsonl", 8, p)
            p.send_signal(signal.SIGKILL)
            p.communicate()
        finally:
            if p.poll() is None:
                p.kill()
    assert p.returncode == -signal.SIGKILL
    assert not (out / "summary.json").exists()
    run = json.loads((out / "run.json").read_text())
    assert run["planned_requests"] == 200 and run["config"]["endpoint"]["api_key"] == "set"
    assert "sk-kill-secret" not in (out / "run.json").read_text()
    n_lines = len((out / "requests.jsonl").read_text().splitlines())

    r = cli("report", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out / "report.html")
    assert "rebuilt it from requests.jsonl, run.json" in r.stderr
    assert "have no record" in r.stderr and "self-check" in r.stderr
    summary = json.loads((out / "summary.json").read_text())
    m = summary["metrics"]
    assert m["requests"]["total"] == n_lines >= 8 and m["requests"]["ok"] == n_lines
    assert summary["label"] == "to-be-killed" and summary["config"]["analysis"]["slo_ms"] == {"ttft": 500.0}
    assert m["goodput"]["slo_ms"] == {"ttft": 500.0}  # the analysis used the run's own configuration
    assert m["rate"]["target"] == 20.0 and m["latency_ms"]["ttft"]["count"] == n_lines
    assert summary["client_check"]["trustworthy"] in (None, False)
    assert any(f"{200 - n_lines:,} of 200 planned" in x for x in summary["rebuilt"]["missing"])
    html = (out / "report.html").read_text()
    assert 'id="rebuilt"' in html and "to-be-killed" in html
    assert "sk-kill-secret" not in html + json.dumps(summary)

    # without run.json the rebuild still works, from the records alone, and says so
    os.remove(out / "run.json")
    os.remove(out / "summary.json")
    r = cli("report", str(out))
    assert r.returncode == 0, r.stderr
    assert "missing: run.json" in r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["requests"]["total"] == n_lines and summary["target"]["kind"] == "unknown"
