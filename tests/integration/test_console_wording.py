"""The console summary in a reader's words: every count labelled, no internal names, answers cut at max_tokens
said, the keep-alive note once, what "planned" means, and one ITL row when every chunk holds one token."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from loadgen.report.console import print_summary
from tests.scripted_server import DONE, Script, ScriptedServer, ThreadedServer, chat_chunk, usage_chunk

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "loadgen", "--no-live", "--no-report", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
    )


@pytest.fixture(scope="module")
def budget_run(tmp_path_factory) -> tuple[str, dict]:
    """A simulated run whose every answer ends at its max_tokens, one token per chunk."""
    out = tmp_path_factory.mktemp("console") / "run"
    r = cli("-n", "6", "--rate", "20", "--max-tokens", "20", "--output-dir", str(out))
    assert r.returncode == 0, r.stderr
    return r.stdout, json.loads((out / "summary.json").read_text())


def test_answers_cut_at_max_tokens_are_said(budget_run):
    stdout, summary = budget_run
    assert summary["metrics"]["tokens"]["finish_reasons"] == {"length": 6}
    assert "every answer (6) was cut at max_tokens (finish_reason: length)" in stdout


def test_one_itl_row_when_every_chunk_holds_one_token(budget_run):
    stdout, summary = budget_run
    lat = summary["metrics"]["latency_ms"]
    assert lat["itl_per_token"] == lat["itl_per_chunk"]  # the premise: the two rows would be the same
    assert stdout.count("ITL (per chunk = per token)") == 1
    assert "ITL per chunk" not in stdout and "ITL per token" not in stdout


def test_planned_rate_is_explained_beside_the_target(budget_run):
    stdout, _ = budget_run
    line = next(ln for ln in stdout.splitlines() if "planned" in ln)
    assert "target 20.0" in line and "the rate this seeded schedule actually has over its length" in line


def test_token_counts_name_their_source_in_words_and_label_every_count(budget_run):
    stdout, summary = budget_run
    assert (
        "continuous_usage" not in stdout and "counts exact, from the server's usage in every chunk" in stdout
    )
    tok = summary["metrics"]["tokens"]
    tok["count_sources"] = {"estimated:chars_per_token": 40}
    tok["count_notes"] = {"one unsent token (</think>) counted just before the first answer chunk": 40}
    buf = io.StringIO()
    print_summary(summary, Console(file=buf, width=200))
    text = buf.getvalue()
    assert "estimated:chars" not in text and "chars_per_token" not in text
    assert "the server sent no usage per chunk, so its total is spread over the chunks by text length" in text
    assert (
        "token count notes: one unsent token (</think>) counted just before the first answer chunk (40 requests)"
        in text
    )


def _stream() -> Script:
    return Script(
        [
            (0.0, chat_chunk(role=True)),
            (0.0, chat_chunk(content="a")),
            (0.0, chat_chunk(finish="stop") + usage_chunk(1, 1) + DONE),
        ]  # fmt: skip
    )


def test_keep_alive_note_is_printed_once(tmp_path):
    server = ScriptedServer()
    server.default = _stream()
    server.idle_close_s = (
        0.001  # closes a kept-alive connection right after its response, as llama-server does
    )
    with ThreadedServer(server):
        r = cli("--base-url", server.base_url, "-n", "6", "--rate", "50", "--no-scrape",
                "--output-dir", str(tmp_path / "o"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert "announced keep-alive" in summary["metrics"]["connections"]["note"]
    assert (r.stdout + r.stderr).count("announced keep-alive") == 1
