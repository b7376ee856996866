"""The command line as a user meets it: one-line errors, exit codes, Ctrl-C, secrets, --json."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.scripted_server import DONE, Script, ScriptedServer, chat_chunk, usage_chunk
from tests.scripted_server import ThreadedServer as ScriptedThread

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, env=None, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "loadgen", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def ThreadedServer(script: Script) -> ScriptedThread:  # noqa: N802 - reads as the class it was
    """A scripted server playing ``script`` in a background thread, for tests that run loadgen as a subprocess."""
    server = ScriptedServer()
    server.default = script
    return ScriptedThread(server)


def slow_stream(seconds: float, tokens: int = 10) -> Script:
    w = [(0, chat_chunk(role=True))]
    for i in range(tokens):
        w.append(
            (
                seconds / tokens,
                chat_chunk(
                    content="x", usage={"prompt_tokens": 1, "completion_tokens": i + 1, "total_tokens": i + 2}
                ),
            )
        )
    w.append((0, chat_chunk(finish="stop") + usage_chunk(1, tokens) + DONE))
    return Script(w)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--rate", "abc"], "rate"),
        (["--cv", "-1"], "--cv must be"),
        (["--num-requests", "0"], "--num-requests must be"),
        (["--input-len", "uniform:5"], "--input-len"),
        (["--slo", "latency=5"], "--slo"),
        (["--extra-body", "{bad"], "--extra-body"),
        (["--base-url", "http://127.0.0.1:9"], "cannot reach"),
        (["--base-url", "ftp://x"], "--base-url"),
        (
            ["--prompts", "/nonexistent/prompts.jsonl", "--base-url", "http://127.0.0.1:9"],
            "cannot read prompts file",
        ),
        (["--arrival", "trace"], "--trace"),
        (["--connect-timeout", "0"], "--connect-timeout must be"),
        (["--read-timeout", "-1"], "--read-timeout must be"),
        (["--loop-lag-max-ms", "0"], "--loop-lag-max-ms must be"),
    ],
)
def test_user_mistakes_get_one_line_and_exit_2(args, needle, tmp_path):
    r = cli(*args, "--output-dir", str(tmp_path / "o"), "--no-scrape")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert any(needle in ln for ln in lines), r.stderr
    assert len([ln for ln in lines if "error" in ln]) == 1, r.stderr
    assert not (tmp_path / "o").exists(), "a run that measured nothing leaves no results folder"


def test_timeouts_and_loop_lag_limits_reach_the_config(monkeypatch):
    from loadgen.options import build_config, build_parser, resolve_options

    def config(*argv):
        return build_config(resolve_options(build_parser().parse_args(list(argv))))

    c = config()
    assert (c.endpoint.connect_timeout_s, c.endpoint.read_timeout_s) == (10.0, None)
    assert (c.analysis.loop_lag_p99_limit_ms, c.analysis.loop_lag_max_limit_ms) == (None, 50.0)
    c = config(
        "--connect-timeout",
        "2",
        "--read-timeout",
        "30",
        "--loop-lag-limit-ms",
        "3",
        "--loop-lag-max-ms",
        "80",
    )
    assert (c.endpoint.connect_timeout_s, c.endpoint.read_timeout_s) == (2.0, 30.0)
    assert (c.analysis.loop_lag_p99_limit_ms, c.analysis.loop_lag_max_limit_ms) == (3.0, 80.0)
    monkeypatch.setenv("LOADGEN_READ_TIMEOUT", "12.5")
    monkeypatch.setenv("LOADGEN_CONNECT_TIMEOUT", "4")
    c = config()
    assert (c.endpoint.connect_timeout_s, c.endpoint.read_timeout_s) == (4.0, 12.5)
    assert c.public_dict()["endpoint"]["read_timeout_s"] == 12.5


def test_malformed_dataset_line_names_the_line(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "hi"}\n{"prompt": \n')
    with ThreadedServer(slow_stream(0.01)) as srv:
        r = cli(
            "--base-url",
            srv.base_url,
            "--prompts",
            str(f),
            "-n",
            "2",
            "--no-scrape",
            "--output-dir",
            str(tmp_path / "o"),
        )
    assert r.returncode == 2 and f"{f}:2" in r.stderr and "Traceback" not in r.stderr


def test_json_output_and_secrets_stay_out_of_files(tmp_path):
    with ThreadedServer(slow_stream(0.02, 4)) as srv:
        r = cli(
            "--base-url",
            srv.base_url,
            "-n",
            "5",
            "--rate",
            "50",
            "--no-scrape",
            "--json",
            "--api-key",
            "sk-argv-secret",
            "--header",
            "X-Token: hdr-secret",
            "--output-dir",
            str(tmp_path / "o"),
            env={"OPENAI_API_KEY": "sk-env-secret"},
        )
        assert r.returncode == 0, r.stderr
        assert srv.arrivals[-1].headers["authorization"] == "Bearer sk-argv-secret"
    summary = json.loads(r.stdout)
    assert summary["metrics"]["requests"]["ok"] == 5
    assert summary["config"]["endpoint"]["api_key"] == "set"
    files = [f for f in (tmp_path / "o").rglob("*") if f.is_file()]
    assert any(f.name == "report.html" for f in files)  # the page quotes the command line: check it too
    for f in files:
        data = f.read_text()
        for secret in ("sk-argv-secret", "sk-env-secret", "hdr-secret"):
            assert secret not in data, (f, secret)
    for secret in ("sk-argv-secret", "sk-env-secret", "hdr-secret"):
        assert secret not in r.stderr


def test_ctrl_c_stops_sending_and_keeps_what_finished(tmp_path):
    out = tmp_path / "o"
    with ThreadedServer(slow_stream(1.0)) as srv:
        p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "loadgen",
                "--base-url",
                srv.base_url,
                "-n",
                "200",
                "--rate",
                "10",
                "--no-scrape",
                "--output-dir",
                str(out),
                "--no-live",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            f = out / "requests.jsonl"
            if f.exists() and f.read_text().count("\n") >= 5:
                break
            time.sleep(0.1)
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=20)
    assert p.returncode == 130, stderr
    assert "Traceback" not in stderr
    lines = (out / "requests.jsonl").read_text().splitlines()
    assert 5 <= len(lines) < 200
    recs = [json.loads(x) for x in lines]
    assert sum(r["status"] == "ok" for r in recs) >= 5
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True
    assert summary["metrics"]["requests"]["total"] == len(lines)


def test_ctrl_c_while_waiting_for_the_next_planned_send_stops_at_once(tmp_path):
    out = tmp_path / "slow"
    with ThreadedServer(slow_stream(0.05, 2)) as srv:
        p = subprocess.Popen(
            [sys.executable, "-m", "loadgen", "--base-url", srv.base_url, "-n", "5", "--rate", "0.02",
             "--arrival", "constant", "--no-scrape", "--no-report", "--output-dir", str(out), "--no-live"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.time() + 30
        while time.time() < deadline and not (out / "requests.jsonl").exists():
            time.sleep(0.1)
        while time.time() < deadline and (out / "requests.jsonl").read_text().count("\n") < 1:
            time.sleep(0.1)
        t = time.time()
        p.send_signal(signal.SIGINT)  # the next send is planned 50 s after the first
        p.communicate(timeout=20)
        stopped_in = time.time() - t
    assert p.returncode == 130
    # the next send was planned 50 s after the first: it stopped without waiting for it (a ratio, not a limit)
    assert stopped_in < 0.5 * 50, stopped_in
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] and summary["metrics"]["requests"]["total"] == 1


def test_ctrl_c_at_a_terminal_lets_the_simulator_answer_what_is_in_flight(tmp_path):
    """A terminal's Ctrl-C is SIGINT to the whole foreground group. The built-in simulator runs in a session of
    its own, so it still answers the requests in flight during the grace period and the last scrape; before, it
    died with the same Ctrl-C (the in-flight requests failed as 'disconnect' and the last scrape could not
    connect). loadgen stops it at the end."""
    out = tmp_path / "o"
    p = subprocess.Popen(
        [sys.executable, "-m", "loadgen", "-n", "400", "--rate", "20", "--max-tokens", "16",
         "--output-dir", str(out), "--no-live", "--no-report"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline:
        f = out / "requests.jsonl"
        if f.exists() and f.read_text().count("\n") >= 10:
            break
        time.sleep(0.1)
    os.killpg(p.pid, signal.SIGINT)  # what the terminal does
    _, stderr = p.communicate(timeout=60)
    assert p.returncode == 130, stderr
    recs = [json.loads(x) for x in (out / "requests.jsonl").read_text().splitlines()]
    assert 10 <= len(recs) < 400
    assert [r for r in recs if r["status"] != "ok"] == []  # 16-token answers all finish within the grace
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True
    assert summary["server"]["scrape"]["failures"]["connect"] == 0
