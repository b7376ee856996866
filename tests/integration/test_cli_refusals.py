"""Bad inputs a person (or a script) gives are one line on stderr and exit 2, never a traceback, and a refused
secret is never echoed back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sk-SECRET-0123456789"


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "loadgen", "-n", "2", "--no-live", "--no-report", "--no-scrape", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def _one_line_exit_2(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("loadgen: error: "), r.stderr
    return r.stderr


@pytest.mark.parametrize("where", ["/sys/loadgen-results", "/sys/kernel", "/proc/loadgen-results"])
def test_output_dir_that_cannot_be_written_is_one_line(where):
    err = _one_line_exit_2(cli("--output-dir", where))
    assert f"--output-dir {where}: cannot write there" in err


def test_trace_with_bytes_that_are_not_utf8_is_one_line(tmp_path):
    trace = tmp_path / "t.txt"
    trace.write_bytes(b"0.0\n0.5\n\xff\xfe1.0\n")
    err = _one_line_exit_2(cli("--trace", str(trace), "--output-dir", str(tmp_path / "o")))
    assert "not UTF-8" in err and "0xff" in err
    assert not (tmp_path / "o").exists()


def test_duration_inf_is_one_line(tmp_path):
    err = _one_line_exit_2(cli("--duration", "inf", "--output-dir", str(tmp_path / "o")))
    assert "--duration must be a finite number" in err


@pytest.mark.parametrize("brk", ["\r\n", "\n", "\r"])
def test_header_value_with_a_line_break_is_refused_without_its_value(tmp_path, brk):
    err = _one_line_exit_2(
        cli("--header", f"X-Key: {SECRET}{brk}Injected: 1", "--output-dir", str(tmp_path / "o"))
    )
    assert "--header X-Key: its value holds a line break" in err and SECRET not in err


@pytest.mark.parametrize("how", ["flag", "env"])
def test_api_key_with_a_line_break_is_refused_without_its_value(tmp_path, how):
    key = f"{SECRET}\r\nX-Injected: 1"
    args, env = (["--api-key", key], None) if how == "flag" else ([], {"OPENAI_API_KEY": key})
    err = _one_line_exit_2(cli(*args, "--output-dir", str(tmp_path / "o"), env=env))
    assert "--api-key" in err and SECRET not in err


def test_dataset_path_without_dataset_is_an_error_not_ignored(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "hi"}\n')
    err = _one_line_exit_2(cli("--dataset-path", str(data), "--output-dir", str(tmp_path / "o")))
    assert "--dataset-path needs --dataset" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("typed", "hint"),
    [
        (["--api-keyy", SECRET], "--api-keyy: did you mean --api-key?"),
        ([f"--api-keyy={SECRET}"], "--api-keyy: did you mean --api-key?"),
        (["--api-k", SECRET], "--api-k: options are not abbreviated; did you mean --api-key?"),
        (
            ["--heade", f"Authorization: {SECRET}"],
            "--heade: options are not abbreviated; did you mean --header?",
        ),
        (["--apikey", SECRET, "--rat", "5"], "--apikey: did you mean --api-key?; --rat: options are not"),
    ],
)
def test_mistyped_secret_option_never_prints_its_value_and_names_the_option(typed, hint):
    err = _one_line_exit_2(cli(*typed))
    assert SECRET not in err
    assert "unrecognized arguments: " in err and hint in err


def test_a_typo_far_from_every_option_gets_no_wrong_hint():
    err = _one_line_exit_2(cli("--zzzzzz", "1"))
    assert (
        "unrecognized arguments: --zzzzzz ***" in err and "did you mean" not in err and "abbreviat" not in err
    )
