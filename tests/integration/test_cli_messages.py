"""What a person sees from the command line: flags in their natural form, one-line setup errors, no leftovers."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

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
    assert r.returncode == 3, r.stderr  # every request answered 500: the documented "requests failed" exit
    req = json.loads(r.stdout)["metrics"]["requests"]
    assert req["failed"] == 4 and req["errors_by_kind"] == {"http_5xx": 4}


class _NotFound(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args):
        pass


@pytest.fixture
def url_answering_404():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("target", ["unreachable", "404"])
def test_failed_setup_leaves_no_results_folder(tmp_path, target, url_answering_404):
    # no --output-dir: the default results/<time>-<label>/ and its parent results/ must both go again
    url = "http://127.0.0.1:1/v1" if target == "unreachable" else url_answering_404
    r = cli("--base-url", url, "-n", "2", "--no-scrape", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1, r.stderr
    assert list(tmp_path.iterdir()) == [], "a run that measured nothing leaves nothing behind"


def test_failed_setup_keeps_a_results_folder_that_was_there(tmp_path):
    (tmp_path / "results" / "earlier-run").mkdir(parents=True)
    r = cli("--base-url", "http://127.0.0.1:1/v1", "-n", "2", "--no-scrape", cwd=tmp_path)
    assert r.returncode == 2
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["earlier-run"]


@pytest.mark.parametrize("command", [[], ["sweep", "--rates", "1"]])
def test_output_dir_that_is_a_file_is_one_line(tmp_path, command):
    f = tmp_path / "taken"
    f.write_text("x")
    for target in (f, f / "sub"):
        r = cli(*command, "-n", "2", "--output-dir", str(target))
        assert r.returncode == 2, r.stderr
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "--output-dir" in lines[0] and "is a file" in lines[0], r.stderr
        assert "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def faulty_sim_run(tmp_path_factory):
    """One small run on the simulator with failures, an SLO and secrets on the command line; its console output."""
    out = tmp_path_factory.mktemp("console") / "run"
    r = cli("-n", "30", "--rate", "20", "--cv", "2", "--seed", "4", "--slo", "ttft=0.5s,tpot=50", "--sim-arg",
            "--fault-500 0.2", "--api-key", "sk-argv-secret", "--header", "X-Token: hdr-secret", "--no-live",
            "--output-dir", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    return out, r.stdout


def test_console_reads_like_prose_not_python(faulty_sim_run):
    out, text = faulty_sim_run
    summary = json.loads((out / "summary.json").read_text())
    req = summary["metrics"]["requests"]
    assert req["failed"] > 0
    assert "{'" not in text and "':" not in text, text  # no dict reprs anywhere
    assert f"errors: {req['failed']} of {req['measured']} failed: {req['failed']} HTTP 5xx" in text
    assert "met TTFT ≤ 500 ms and TPOT ≤ 50 ms" in text
    header = next(ln for ln in text.splitlines() if "p50" in ln and "p99" in ln)
    assert header.index("p90") < header.index("p95") < header.index("p99"), header
    p95 = summary["metrics"]["latency_ms"]["e2e"]["p95"]
    e2e_row = next(ln for ln in text.splitlines() if "E2E (from send)" in ln)
    assert f"{p95:,.1f}" in e2e_row  # README lists p95: the console shows it


def test_console_says_how_many_stragglers_it_did_not_list(faulty_sim_run):
    from rich.console import Console

    from loadgen.report.console import print_summary

    out, _ = faulty_sim_run
    summary = json.loads((out / "summary.json").read_text())
    expl = {"index": 1, "verdict": "busy server", "detail": "queued"}
    summary["metrics"]["stragglers"]["count"] = 8
    summary["straggler_explanations"] = [dict(expl, index=i) for i in range(5)]
    con = Console(width=140, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    print_summary(summary, con)
    text = con.export_text()
    assert "): 8 (" in text and text.count("busy server") == 5
    assert "+3 more (see report.html)" in text


def test_report_shows_the_command_as_typed_with_secrets_masked(faulty_sim_run):
    out, _ = faulty_sim_run
    html = (out / "report.html").read_text()
    row = re.search(r"<td>command</td><td>(.*?)</td>", html).group(1)
    row = row.replace("&#x27;", "'").replace("&quot;", '"').replace("&amp;", "&")
    assert row.startswith("python -m loadgen -n 30 "), row
    assert "__main__.py" not in row
    assert "--api-key '***'" in row and re.search(r"--header '(X-Token: )?\*\*\*'", row), row
    assert "sk-argv-secret" not in html and "hdr-secret" not in html
    assert "<th>p95</th>" in html
