"""Secrets never reach a result file, a log or the terminal: not through an abbreviated flag, not through a server
that echoes the key back (issue 11 item 12)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadgen.options import build_parser, mask_secrets
from loadgen.records.columns import read_records
from loadgen.records.record import RecordSink, RequestRecord, Scrubber
from tests.integration.test_cli import ROOT, ThreadedServer, cli, slow_stream
from tests.scripted_server import Script

KEY, HDR = "sk-echo-SECRET-1234", "hdr-echo-SECRET-5678"


def _no_secret_anywhere(folder: Path, *texts: str) -> list[Path]:
    files = [f for f in folder.rglob("*") if f.is_file()] if folder.exists() else []
    for f in files:
        data = f.read_text(errors="replace")
        assert KEY not in data and HDR not in data, f
    for t in texts:
        assert KEY not in t and HDR not in t
    return files


@pytest.mark.parametrize(
    "flags",
    [
        ["--api-k", KEY],
        [f"--api-ke={KEY}"],
        ["--head", f"X-Api-Key: {HDR}"],
    ],
)
def test_abbreviated_secret_flags_are_refused_and_not_echoed(flags, tmp_path):
    with ThreadedServer(slow_stream(0.01, 2)) as srv:
        r = cli(
            "--base-url", srv.base_url, "-n", "2", "--no-scrape", "--output-dir", str(tmp_path / "o"), *flags
        )
        assert not srv.arrivals, "nothing may be sent"
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "unrecognized arguments" in lines[0] and "abbreviated" in lines[0], r.stderr
    _no_secret_anywhere(tmp_path / "o", r.stdout, r.stderr)
    assert not (tmp_path / "o").exists()


def test_server_echoing_the_key_in_an_error_body_never_puts_it_in_a_file(tmp_path):
    out = tmp_path / "o"
    with ThreadedServer(Script([], status=401, content_type="application/json", echo_headers=True)) as srv:
        r = cli(
            "--base-url", srv.base_url, "-n", "3", "--rate", "50", "--no-scrape", "--no-live",
            "--api-key", KEY, "--header", f"X-Api-Key: {HDR}", "--output-dir", str(out),
        )  # fmt: skip
        posts = [a for a in srv.arrivals if a.path.endswith("/completions")]
    assert posts and posts[0].headers["authorization"] == f"Bearer {KEY}"
    assert posts[0].headers["x-api-key"] == HDR
    assert "Traceback" not in r.stderr
    files = _no_secret_anywhere(out, r.stdout, r.stderr)
    assert {f.name for f in files} >= {"requests.jsonl", "summary.json", "report.html"}
    recs = read_records(out / "requests.jsonl")
    assert len(recs) == 3 and all(x.http_status == 401 for x in recs)
    # the message is kept, only the values are masked
    assert all("invalid credentials" in x.error_message and "***" in x.error_message for x in recs)
    summary = json.loads((out / "summary.json").read_text())
    argv = summary["argv"]
    assert argv[0] == "python -m loadgen"
    assert argv[argv.index("--api-key") + 1] == "***" and argv[argv.index("--header") + 1] == "***"
    assert summary["config"]["endpoint"]["api_key"] == "set"


def test_mask_secrets_finds_options_by_dest_in_every_form():
    argv = ["--api-key", "a-secret", "--header=X-K: v-secret", "--header", "Y: w-secret", "--rate", "4"]
    assert mask_secrets(argv) == ["--api-key", "***", "--header=***", "--header", "***", "--rate", "4"]
    secret_strings = {
        s for a in build_parser()._actions if a.dest in ("api_key", "header") for s in a.option_strings
    }
    assert secret_strings == {"--api-key", "--header"}  # a new alias is masked by dest without another change
    for flag in secret_strings:
        assert mask_secrets([flag, "zz-secret"])[1] == "***"


def test_record_sink_scrubs_secret_values_in_place(tmp_path):
    scrub = Scrubber([KEY, HDR, "ab", None])  # too-short values are not secrets: "ab" is left alone
    rec = RequestRecord(index=0, status="error", error_message=f"HTTP 401: bad key {KEY} (header {HDR}); ab")
    rec.output_text = f"echo {KEY}"
    with RecordSink(tmp_path / "r.jsonl", scrub) as sink:
        sink.write(rec)
    assert rec.error_message == "HTTP 401: bad key *** (header ***); ab" and rec.output_text == "echo ***"
    data = (tmp_path / "r.jsonl").read_text()
    assert KEY not in data and HDR not in data and "bad key ***" in data


_ABBREV_SCAN = """
import ast, json, pathlib, sys

def calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name in ("ArgumentParser", "OptionParser", "add_parser"):
                yield node

root = pathlib.Path(sys.argv[1])
missing, count = [], 0
for folder in ("loadgen", "server_launchers", "benchmarks"):
    for path in sorted((root / folder).rglob("*.py")):
        for call in calls(ast.parse(path.read_text())):
            count += 1
            v = {k.arg: k.value for k in call.keywords}.get("allow_abbrev")
            if not (isinstance(v, ast.Constant) and v.value is False):
                missing.append(f"{path.relative_to(root)}:{call.lineno}")
print(json.dumps({"count": count, "missing": missing}))
"""


def test_every_argument_parser_refuses_abbreviations():
    """argparse accepts any unambiguous prefix by default (--api-k, --head): every parser turns that off.

    The scan runs in a process of its own: CPython 3.11's ``ast.parse`` keeps its recursion count in state shared
    by every thread, and a thread left by an earlier test that parses too made it raise "AST constructor
    recursion depth mismatch" here.
    """
    import json
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-c", _ABBREV_SCAN, str(ROOT)], capture_output=True, text=True, check=True
    )
    found = json.loads(r.stdout)
    assert found["count"] >= 15 and not found["missing"], found["missing"]


@pytest.mark.parametrize(
    ("module", "argv"),
    [("loadgen.sim", ["--por", "1"]), ("server_launchers", ["render", "x.toml", "--nam", "a"])],
)
def test_sim_and_launcher_refuse_abbreviations(module, argv):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "unrecognized arguments" in r.stderr, r.stderr
