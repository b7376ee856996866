"""Credentials in ``--base-url http://user:PW@host:port`` become Basic auth and never leak (issue 18 item 1).

They are taken out of the URL once (``EndpointConfig``): every request carries ``Authorization: Basic ...`` and a
``Host`` of host:port only, /metrics is scraped at the clean origin, and no result file, log line or console line
holds the password, not even when the server echoes the Authorization header back. An explicit ``--api-key`` wins
over the URL's credentials (one Authorization header, the explicit one).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from loadgen.config import EndpointConfig
from tests.integration.test_cli import ThreadedServer, cli, slow_stream
from tests.scripted_server import Script

USER, PW = "alice", "Pw-0f-4lice-S3cret"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PW}".encode()).decode()
TOKEN = BASIC.split()[1]
METRICS = b"# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 1\n"


def _grep_everywhere(out: Path, *texts: str) -> list[str]:
    files = sorted(f for f in out.rglob("*") if f.is_file())
    assert files, "the run wrote nothing"
    hits = [
        f.name for f in files if PW in f.read_text(errors="replace") or TOKEN in f.read_text(errors="replace")
    ]
    hits += [f"console[{i}]" for i, t in enumerate(texts) if PW in t or TOKEN in t]
    return hits


def test_url_credentials_become_basic_auth_and_never_reach_a_file_a_log_or_a_host_header(tmp_path):
    out = tmp_path / "o"
    with ThreadedServer(slow_stream(0.02, 3)) as srv:
        srv.metrics_body = METRICS
        url = f"http://{USER}:{PW}@127.0.0.1:{srv.port}/v1"
        r = cli(
            "--base-url", url, "-n", "4", "--rate", "20", "--scrape-interval", "0.05", "--no-live",
            "--log-level", "debug", "--output-dir", str(out),
        )  # fmt: skip
        arrivals = list(srv.arrivals)
    assert r.returncode == 0, r.stderr[-2000:]
    posts = [a for a in arrivals if a.path.endswith("/chat/completions")]
    models = [a for a in arrivals if a.path.endswith("/models")]
    scrapes = [a for a in arrivals if a.path == "/metrics"]
    assert len(posts) == 4 and models and scrapes
    assert {a.headers["host"] for a in posts + models + scrapes} == {f"127.0.0.1:{srv.port}"}
    assert {a.headers.get("authorization") for a in posts + models} == {BASIC}
    assert _grep_everywhere(out, r.stdout, r.stderr) == []
    summary = json.loads((out / "summary.json").read_text())
    assert summary["target"]["base_url"] == f"http://127.0.0.1:{srv.port}/v1"
    assert summary["config"]["endpoint"]["url_credentials"] == "set"
    assert any(a.startswith("http://***@127.0.0.1") for a in summary["argv"]), summary["argv"]
    samples = [json.loads(line) for line in (out / "server_metrics.jsonl").read_text().splitlines()]
    assert samples and {s["url"] for s in samples} == {f"http://127.0.0.1:{srv.port}/metrics"}


def test_a_server_echoing_the_basic_credentials_never_puts_them_in_a_file(tmp_path):
    out = tmp_path / "o"
    echo = Script([], status=400, content_type="application/json", echo_headers=True)
    with ThreadedServer(echo) as srv:
        url = f"http://{USER}:{PW}@127.0.0.1:{srv.port}"
        r = cli(
            "--base-url", url, "-n", "3", "--rate", "50", "--no-scrape", "--no-live", "--output-dir", str(out)
        )
    assert r.returncode == 3, r.stderr[-2000:]  # every request failed: the run says so, with its results
    assert _grep_everywhere(out, r.stdout, r.stderr) == []
    recs = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    assert len(recs) == 3 and all("authorization: Basic ***" in x["error_message"] for x in recs)


def test_an_explicit_api_key_wins_over_url_credentials(tmp_path):
    with ThreadedServer(slow_stream(0.01, 2)) as srv:
        url = f"http://{USER}:{PW}@127.0.0.1:{srv.port}"
        r = cli(
            "--base-url", url, "--api-key", "sk-explicit-key", "-n", "2", "--rate", "50", "--no-scrape",
            "--no-live", "--output-dir", str(tmp_path / "o"),
        )  # fmt: skip
        posts = [a for a in srv.arrivals if a.path.endswith("/completions")]
    assert r.returncode == 0, r.stderr[-2000:]
    assert [a.headers["authorization"] for a in posts] == ["Bearer sk-explicit-key"] * 2
    assert _grep_everywhere(tmp_path / "o", r.stdout, r.stderr) == []


def test_url_credentials_are_percent_decoded_and_kept_out_of_the_url():
    ep = EndpointConfig(base_url="https://bob:p%40ss%3Aw0rd@example.test:8443/v1")
    assert ep.base_url == "https://example.test:8443/v1"
    assert ep.basic_auth == "bob:p@ss:w0rd"
    assert "p%40ss" not in repr(ep) and "p@ss" not in repr(ep)


def test_a_mistyped_url_with_credentials_is_refused_without_echoing_them(tmp_path):
    r = cli("--base-url", f"htp://{USER}:{PW}@127.0.0.1:1", "-n", "1", "--output-dir", str(tmp_path / "o"))
    assert r.returncode == 2 and "expected http://HOST" in r.stderr, r.stderr[-2000:]
    assert PW not in r.stderr + r.stdout and "htp://***@127.0.0.1:1" in r.stderr
