"""A run reads its ``requests.jsonl`` once: the summary's columns, accuracy, llama.cpp's engine timings and the
report all come from one pass (``loadgen.records.columns``), however many of them the run needs.

Each run goes through ``python -m loadgen``'s ``main`` in a child process whose file opens are counted: every open
of ``requests.jsonl`` for reading is one read of the file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.scripted_server import DONE, Script, ScriptedServer, ThreadedServer, chat_chunk, usage_chunk

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"

COUNTING_MAIN = """
import builtins, io, sys
reads = []
_open = io.open
def counting_open(file, mode="r", *a, **k):
    if str(file).endswith("requests.jsonl") and not any(c in mode for c in "wax+"):
        reads.append(str(file))
    return _open(file, mode, *a, **k)
io.open = builtins.open = counting_open
from loadgen.__main__ import main
code = main(sys.argv[1:])
print("READS", len(reads), file=sys.stderr)
sys.exit(code)
"""


def run_counting(*args: str) -> tuple[int, int, str]:
    """``python -m loadgen ARGS`` with every read-open of requests.jsonl counted: (exit code, reads, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-c", COUNTING_MAIN, *args],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )  # fmt: skip
    line = [x for x in r.stderr.splitlines() if x.startswith("READS ")]
    assert line, r.stderr
    return r.returncode, int(line[-1].split()[1]), r.stderr


@pytest.mark.parametrize("senders", [(), ("--workers", "2")], ids=["one-process", "two-workers"])
def test_a_dataset_run_with_accuracy_and_report_reads_its_records_once(tmp_path, senders):
    """In this process or from two workers' files merged by index (the merge reads each line's index alone)."""
    out = tmp_path / "run"
    code, reads, err = run_counting(
        "--dataset", "gsm8k", "--dataset-path", str(DATA / "datasets"), "-n", "3", "--repeats", "4", "--rate", "60",
        "--output-dir", str(out), "--quiet", "--no-live", *senders,
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_bytes())
    assert summary["accuracy"]["overall"]["n"] == 12  # accuracy was scored
    assert (out / "report.html").is_file()  # and the report written, in the same process
    assert reads == 1


def _llamacpp_server() -> ScriptedServer:
    """Answers like llama-server: its per-response ``timings`` in the last event, /metrics in its dialect."""
    srv = ScriptedServer(models=("tiny",))
    timings = {"prompt_n": 9, "prompt_ms": 3.5, "predicted_n": 4, "predicted_ms": 8.0, "cache_n": 0}
    usage = usage_chunk(9, 4)  # llama-server sends its timings with the usage, in the last event
    last = usage[: -len(b"}\n\n")] + b',"timings":' + json.dumps(timings).encode() + b"}\n\n"
    srv.default = Script(
        [(0.0, chat_chunk(role=True)), *((0.003, chat_chunk(content=f" w{i}")) for i in range(4)),
         (0.0, chat_chunk(finish="stop") + last + DONE)]
    )  # fmt: skip
    srv.metrics_body = (DATA / "llamacpp" / "metrics_under_load.txt").read_bytes()
    return srv


def test_a_llamacpp_run_cross_checks_its_timings_from_the_same_read(tmp_path):
    out = tmp_path / "llama"
    with ThreadedServer(_llamacpp_server()) as srv:
        code, reads, err = run_counting(
            "--base-url", srv.base_url, "--model", "tiny", "-n", "10", "--rate", "40", "--scrape-interval", "0.1",
            "--output-dir", str(out), "--quiet", "--no-live",
        )  # fmt: skip
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_bytes())
    assert summary["server"]["dialect"] == "llamacpp"
    timings = summary["engine_timings"]
    assert timings["requests"] == 10 and timings["tokens"] == {"compared": 10, "equal_share": 1.0}
    assert (out / "report.html").is_file()
    assert reads == 1


def test_report_of_a_killed_run_rebuilds_and_draws_from_one_read(tmp_path):
    """``loadgen report DIR`` of a run that never wrote its summary: the rebuilt summary and the page, one read;
    of a finished run: the page alone, one read."""
    out = tmp_path / "killed"
    code, reads, err = run_counting("-n", "20", "--rate", "100", "--output-dir", str(out), "--quiet", "--no-live",
                                    "--no-report")  # fmt: skip
    assert code == 0 and reads == 1, err
    (out / "summary.json").unlink()  # as kill -9 leaves it
    code, reads, err = run_counting("report", str(out))
    assert code == 0, err
    assert "rebuilt it from" in err and (out / "summary.json").is_file() and (out / "report.html").is_file()
    assert reads == 1
    code, reads, err = run_counting("report", str(out))
    assert code == 0 and reads == 1, err
