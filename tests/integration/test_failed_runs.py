"""A run whose requests failed says so and exits 3 (issue 11 item 9): all failed, the first ones all refused
(401/403: stop early, one clear line), or more failed than --max-error-share allows."""

from __future__ import annotations

import json

import pytest

from loadgen.errors import EXIT_REQUESTS_FAILED
from loadgen.records.record import RequestRecord
from loadgen.results.summary import requests_outcome
from loadgen.run.stopping import AuthStop
from tests.integration.test_cli import ThreadedServer, cli, slow_stream
from tests.scripted_server import Script


def _error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("loadgen: error")]


def test_refused_key_stops_after_the_first_ten_and_exits_3(tmp_path):
    out = tmp_path / "o"
    refused = Script([(0, b'{"error":{"message":"bad key"}}')], status=401, content_type="application/json")
    with ThreadedServer(refused) as srv:
        r = cli("--base-url", srv.base_url, "-n", "200", "--rate", "50", "--no-scrape", "--no-live",
                "--api-key", "sk-wrong-key", "--output-dir", str(out))  # fmt: skip
        posts = [a for a in srv.arrivals if a.path.endswith("/completions")]
    assert r.returncode == EXIT_REQUESTS_FAILED == 3, r.stderr
    errs = _error_lines(r.stderr)
    assert len(errs) == 1 and "first 10 requests were all refused with HTTP 401" in errs[0], r.stderr
    assert "Traceback" not in r.stderr
    assert 10 <= len(posts) < 200, "the run stops instead of sending 200 refused requests"
    summary = json.loads((out / "summary.json").read_text())
    outcome = summary["outcome"]
    assert outcome["failed"] is True and outcome["stopped_early"] == outcome["reason"]
    assert summary["interrupted"] is False
    assert summary["metrics"]["requests"]["ok"] == 0
    assert "The requests failed" in (out / "report.html").read_text()


def test_every_request_failing_exits_3_and_fewer_than_ten_refusals_stop_too(tmp_path):
    boom = Script([(0, b'{"error":{"message":"boom"}}')], status=500, content_type="application/json")
    with ThreadedServer(boom) as srv:
        r = cli("--base-url", srv.base_url, "-n", "4", "--rate", "50", "--no-scrape", "--no-live", "--no-report",
                "--output-dir", str(tmp_path / "a"))  # fmt: skip
    assert r.returncode == 3, r.stderr
    errs = _error_lines(r.stderr)
    assert len(errs) == 1 and "every measured request failed (4 http_5xx)" in errs[0], r.stderr
    forbidden = Script([(0, b"{}")], status=403, content_type="application/json")
    with ThreadedServer(forbidden) as srv:
        r = cli("--base-url", srv.base_url, "-n", "3", "--no-scrape", "--no-live", "--no-report",
                "--output-dir", str(tmp_path / "b"))  # fmt: skip
    assert r.returncode == 3 and "first 3 requests were all refused with HTTP 403" in r.stderr, r.stderr
    # a healthy run still exits 0, with no outcome failure
    with ThreadedServer(slow_stream(0.01, 2)) as srv:
        r = cli("--base-url", srv.base_url, "-n", "3", "--no-scrape", "--no-live", "--no-report",
                "--max-error-share", "0", "--output-dir", str(tmp_path / "c"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "c" / "summary.json").read_text())["outcome"]["failed"] is False


def test_max_error_share_against_the_simulator(tmp_path):
    out = tmp_path / "sim"
    r = cli("-n", "20", "--rate", "40", "--max-tokens", "8", "--no-live", "--no-report", "--no-scrape",
            "--sim-arg=--fault-500", "--sim-arg=0.5", "--max-error-share", "0.05", "--output-dir", str(out))  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    req = summary["metrics"]["requests"]
    assert 0 < req["failed"] < req["measured"] == 20
    assert r.returncode == 3, r.stderr
    assert "more than --max-error-share 0.05" in r.stderr
    assert summary["config"]["analysis"]["max_error_share"] == 0.05
    r = cli("--max-error-share", "1.5", "--no-scrape", "--output-dir", str(tmp_path / "bad"))
    assert r.returncode == 2 and "--max-error-share must be in [0, 1)" in r.stderr


def test_outcome_rules():
    req = {"measured": 10, "failed": 3, "errors_by_kind": {"http_5xx": 3}}
    assert requests_outcome(req, None, None, False)["failed"] is False
    assert requests_outcome(req, 0.3, None, False)["failed"] is False  # 30 % is not above 0.3
    out = requests_outcome(req, 0.2, None, False)
    assert out["failed"] and "30.0% of measured requests failed (3 http_5xx)" in out["reason"]
    every = {"measured": 2, "failed": 2, "errors_by_kind": {"timeout": 2}}
    assert requests_outcome(every, None, None, True)["failed"] is False  # Ctrl-C: exit 130 says it all
    assert requests_outcome(every, None, None, False)["reason"] == "every measured request failed (2 timeout)"


@pytest.mark.parametrize(
    ("statuses", "stops_at"), [([401] * 12, 10), ([403, 401, 401], 3), ([401, 200, 401], None)]
)
def test_auth_stop(statuses, stops_at):
    guard = AuthStop(planned=len(statuses) if len(statuses) < 10 else 200)
    fired = [guard.observe(RequestRecord(index=i, http_status=s)) for i, s in enumerate(statuses)]
    assert (fired.index(True) + 1 if True in fired else None) == stops_at
    assert fired.count(True) <= 1
