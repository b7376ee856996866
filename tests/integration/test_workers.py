"""``--workers N``: local sender processes sharing one plan, one t0, one results folder (issue 13, item 2).

Against the built-in simulator and against ``benchmarks/fast_server.py``, two workers send what one sends (the same
records, the same counts, the same files); Ctrl-C stops every worker and what finished is merged without loss; a
worker killed mid-run leaves ``worker_lost`` records and the run finishes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks._common import FastServer
from tests.integration.test_cli import ROOT, ThreadedServer, cli, slow_stream

# what must be the same, request for request, whichever process sent it
SAME = ("index", "warmup", "api", "tags", "max_tokens", "intended_ns", "status", "error_kind", "http_status",
        "prompt_tokens", "completion_tokens", "finish_reason")  # fmt: skip


def _records(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "requests.jsonl").read_text().splitlines()]


def _files(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*"))


def _compare(one: Path, two: Path) -> tuple[dict, dict]:
    r1, r2 = _records(one), _records(two)
    assert [r["index"] for r in r2] == list(range(len(r2)))  # merged by index
    # one process writes each record as it finishes: under concurrency, a later request can finish first
    r1 = sorted(r1, key=lambda r: r["index"])
    assert [r["index"] for r in r1] == list(range(len(r1)))
    assert [{k: r[k] for k in SAME} for r in r2] == [{k: r[k] for k in SAME} for r in r1]
    s1, s2 = (json.loads((d / "summary.json").read_text()) for d in (one, two))
    assert s2["metrics"]["requests"] == s1["metrics"]["requests"]
    assert s2["metrics"]["rate"]["planned"] == s1["metrics"]["rate"]["planned"]
    assert s2["metrics"]["tokens"] == s1["metrics"]["tokens"]
    assert set(s2) - set(s1) == {"senders"} and "senders" not in s1
    assert _files(two) == _files(one)  # the results folder looks exactly as a one-process run's
    senders = s2["senders"]
    assert senders["mode"] == "local" and senders["count"] == 2 and senders["lost"] == []
    assert [x["records"] for x in senders["list"]] == [len(r2[0::2]), len(r2[1::2])]
    assert all(x["clock"]["uncertainty_ns"] == 0 and x["pid"] != senders["list"][0]["pid"] or x["sender"] == 0
               for x in senders["list"])  # fmt: skip
    assert [c["sender"] for c in s2["client_check"]["senders"]] == [0, 1]
    return s1, s2


def test_two_workers_on_the_simulator_send_what_one_sends(tmp_path):
    # --ignore-eos: every answer is max_tokens long, whichever order the simulator received the requests in
    args = ["-n", "40", "--warmup", "2", "--rate", "25", "--seed", "5", "--max-tokens", "24", "--ignore-eos",
            "--no-live", "--quiet"]  # fmt: skip
    one, two = tmp_path / "one", tmp_path / "two"
    r = cli(*args, "--output-dir", str(one), timeout=180)
    assert r.returncode == 0, r.stderr
    r = cli(*args, "--workers", "2", "--output-dir", str(two), timeout=180)
    assert r.returncode == 0, r.stderr
    _, s2 = _compare(one, two)
    assert s2["config"]["senders"] == {"workers": 2, "ray": None}
    html = (two / "report.html").read_text()  # the report names each sender and its own self-check
    assert 'id="senders"' in html and 'data-sender="0"' in html and 'data-sender="1"' in html
    assert 'id="senders"' not in (one / "report.html").read_text()
    # the simulator saw every request once, from both senders' connections
    truth = [json.loads(x) for x in (two / "sim_ground_truth.jsonl").read_text().splitlines()]
    assert len(truth) == 42 and {t["completion_tokens"] for t in truth} == {24}


def test_two_workers_against_the_fast_server_send_what_one_sends(tmp_path):
    args = ["-n", "300", "--rate", "inf", "--max-concurrency", "16", "--max-tokens", "64", "--input-len", "32",
            "--no-scrape", "--no-report", "--no-live", "--quiet"]  # fmt: skip
    for name, workers in (("one", "1"), ("two", "2")):
        (tmp_path / name).mkdir()
        with FastServer("burst", tmp_path / name / "server.jsonl", pin=False) as srv:
            r = cli("--base-url", srv.base_url, *args, "--workers", workers, "--output-dir",
                    str(tmp_path / name / "out"), timeout=180)  # fmt: skip
            assert r.returncode == 0, r.stderr
            served = list(srv.stop()["requests"].values())
        recs = _records(tmp_path / name / "out")
        assert len(served) == 300 and {s["tokens"] for s in served} == {64}
        # each request reached the server exactly once
        assert sorted(int(r["server_request_id"]) for r in recs) == sorted(s["id"] for s in served)
    s1, s2 = _compare(tmp_path / "one" / "out", tmp_path / "two" / "out")
    assert s2["metrics"]["tokens"]["completion"] == 300 * 64
    # a closed loop under --max-concurrency 16 stays at 16 in all: 8 per sender
    assert [x["max_concurrency"] for x in s2["senders"]["list"]] == [8, 8]


def _sender_pids(driver: int) -> list[int]:
    """The driver's spawned sender processes (children running multiprocessing's spawn_main)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == driver and b"spawn_main" in cmd:
            out.append(int(d.name))
    return sorted(out)


def _wait_for_sender_lines(out: Path, n: int, proc: subprocess.Popen) -> None:
    for _ in range(600):  # bounded: a hang guard, not a timing assertion
        files = list((out / ".senders").glob("sender-*.jsonl")) if (out / ".senders").exists() else []
        if sum(f.read_bytes().count(b"\n") for f in files) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"the senders never wrote {n} records")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the sender processes through /proc")
def test_ctrl_c_stops_every_worker_and_merges_what_finished_without_loss(tmp_path):
    out = tmp_path / "o"
    with ThreadedServer(slow_stream(1.0)) as srv:
        p = subprocess.Popen(
            [sys.executable, "-m", "loadgen", "--base-url", srv.base_url, "-n", "200", "--rate", "10",
             "--workers", "2", "--no-scrape", "--no-report", "--no-live", "--output-dir", str(out)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            _wait_for_sender_lines(out, 6, p)
            assert len(_sender_pids(p.pid)) == 2
            p.send_signal(signal.SIGINT)
            _, stderr = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
    assert p.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    recs = _records(out)
    idx = [r["index"] for r in recs]
    assert idx == sorted(set(idx)) and 6 <= len(recs) < 200  # merged by index, each request once
    assert {r["status"] for r in recs} <= {"ok", "cancelled"} and sum(r["status"] == "ok" for r in recs) >= 6
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["metrics"]["requests"]["total"] == len(recs)
    senders = summary["senders"]["list"]
    # nothing a worker sent is missing: every sent request has its record, from its own sender
    assert sum(s["sent"] for s in senders) == len(recs) == sum(s["records"] for s in senders)
    for s in senders:
        assert s["records"] == len([i for i in idx if i % 2 == s["sender"]]) and s["stopped_early"]
    assert not (out / ".senders").exists() and not _sender_pids(p.pid)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the sender processes through /proc")
def test_a_worker_killed_mid_run_leaves_worker_lost_records_and_the_run_finishes(tmp_path):
    out = tmp_path / "o"
    with ThreadedServer(slow_stream(0.3, 3)) as srv:
        p = subprocess.Popen(
            [sys.executable, "-m", "loadgen", "--base-url", srv.base_url, "-n", "60", "--rate", "15",
             "--workers", "2", "--no-scrape", "--no-report", "--no-live", "--output-dir", str(out)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            _wait_for_sender_lines(out, 6, p)
            victim = _sender_pids(p.pid)[0]
            os.kill(victim, signal.SIGKILL)
            stdout, stderr = p.communicate(timeout=120)
        finally:
            if p.poll() is None:
                p.kill()
    assert p.returncode == 0, stderr
    assert "was lost" in stderr and "worker_lost" in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert f"sender {summary['senders']['lost'][0]} on " in stdout and " - LOST" in stdout
    (k,) = summary["senders"]["lost"]
    row = summary["senders"]["list"][k]
    assert row["pid"] == victim and "killed by signal 9" in row["lost"]
    recs = _records(out)
    assert [r["index"] for r in recs] == list(range(60))  # every planned request has a record
    lost = [r for r in recs if r["error_kind"] == "worker_lost"]
    assert lost and {r["index"] % 2 for r in lost} == {k} and len(lost) == row["worker_lost"]
    assert all(r["status"] == "ok" for r in recs if r["index"] % 2 != k)  # the other sender finished
    m = summary["metrics"]["requests"]
    assert m["errors_by_kind"] == {"worker_lost": len(lost)} and m["total"] == 60
    assert k in summary["client_check"]["untrustworthy_senders"]
    assert any("worker_lost" in x for x in summary["outcome"]["senders_lost"])


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the sender processes through /proc")
def test_a_killed_driver_stops_its_workers_and_the_run_is_rebuilt_from_their_files(tmp_path):
    out = tmp_path / "o"
    with ThreadedServer(slow_stream(0.5, 3)) as srv:
        p = subprocess.Popen(
            [sys.executable, "-m", "loadgen", "--base-url", srv.base_url, "-n", "100", "--rate", "10",
             "--workers", "2", "--no-scrape", "--no-live", "--output-dir", str(out)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            _wait_for_sender_lines(out, 6, p)
            workers = _sender_pids(p.pid)
            p.send_signal(signal.SIGKILL)
            p.communicate()
            for _ in range(600):  # bounded: the workers read the end of their pipes, cancel and leave
                if not any(Path(f"/proc/{w}").exists() for w in workers):
                    break
                time.sleep(0.05)
        finally:
            if p.poll() is None:
                p.kill()
    assert len(workers) == 2 and not any(Path(f"/proc/{w}").exists() for w in workers)
    assert not (out / "requests.jsonl").exists() and (out / ".senders").is_dir()
    r = cli("report", str(out))
    assert r.returncode == 0, r.stderr
    assert "rebuilt it from .senders/" in r.stderr
    recs = _records(out)
    idx = [x["index"] for x in recs]
    assert idx == sorted(set(idx)) and len(recs) >= 6 and not (out / ".senders").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["requests"]["total"] == len(recs) and summary["rebuilt"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--workers", "0"], "--workers must be >= 1"),
        (["--workers", "two"], "not a number of senders"),
        (["--workers", "2", "--max-concurrency", "1"], "cannot be shared by 2 senders"),
        (["--workers", "2", "--base-url", "http://127.0.0.1:9"], "cannot reach"),
        (["--ray", "ray://head:10001"], "Ray Client"),
        (["--ray", "127.0.0.1:9"], "--ray"),  # nothing there: at once, not after Ray's minutes of retries
    ],
)
def test_sender_mistakes_get_one_line_and_exit_2(args, needle, tmp_path):
    r = cli(*args, "--output-dir", str(tmp_path / "o"), "--no-scrape", timeout=120)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and "error" in ln]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "o").exists(), "a run that measured nothing leaves no results folder"


def test_workers_auto_says_how_many_and_one_is_this_process(tmp_path):
    # 20 req/s x 16 tokens is ~320 token events/s: one sender, this process, as without --workers
    r = cli("--workers", "auto", "-n", "10", "--rate", "20", "--max-tokens", "16", "--no-report", "--no-live",
            "--output-dir", str(tmp_path / "o"), timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    (line,) = [ln for ln in r.stderr.splitlines() if "--workers auto:" in ln]
    assert (
        "--workers auto: 1 sender: the plan asks ~320 token events/s" in line
        and "left for the built-in" in line
    )
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert "senders" not in summary and summary["config"]["senders"] == {"workers": "auto", "ray": None}
