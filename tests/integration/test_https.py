"""HTTPS endpoints: the streamed-POST reader runs over TLS too (certificate trusted through SSL_CERT_FILE)."""

import json
import os
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from tests.scripted_server import DONE, Script, ScriptedServer, ThreadedServer, chat_chunk


def usage(n):
    return {"prompt_tokens": 1, "completion_tokens": n, "total_tokens": n + 1}


ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cert(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a test certificate")
    key, crt = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, crt


def test_streams_over_tls(cert, tmp_path):
    """As a user runs it: a separate loadgen process trusting the certificate through SSL_CERT_FILE."""
    key, crt = cert
    server = ScriptedServer()
    writes = [
        (0.0, chat_chunk(content="a", usage=usage(1))),
        (0.01, chat_chunk(content="bc", usage=usage(3))),
    ]
    server.default = Script([*writes, (0.0, chat_chunk(finish="stop", usage=usage(3)) + DONE)])
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(crt), str(key))
    with ThreadedServer(server, ssl=ctx):
        out = tmp_path / "out"
        r = subprocess.run(
            [sys.executable, "-m", "loadgen", "--base-url", f"https://127.0.0.1:{server.port}", "-n", "6",
             "--rate", "50", "--no-scrape", "--no-report", "--json", "--output-dir", str(out)],
            capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ, "SSL_CERT_FILE": str(crt)},
        )  # fmt: skip
        # without trusting the certificate, the same endpoint is one clear setup error, not a traceback
        env = {k: v for k, v in os.environ.items() if k != "SSL_CERT_FILE"}
        untrusted = subprocess.run(
            [sys.executable, "-m", "loadgen", "--base-url", f"https://127.0.0.1:{server.port}", "-n", "1",
             "--no-scrape", "--no-report", "--output-dir", str(tmp_path / "u")],
            capture_output=True, text=True, timeout=60, cwd=ROOT, env=env,
        )  # fmt: skip
    assert r.returncode == 0, r.stderr
    recs = [json.loads(x) for x in (out / "requests.jsonl").read_text().splitlines()]
    assert [x["status"] for x in recs] == ["ok"] * 6
    assert all(x["chunk_tokens"] == [1, 2] and x["completion_tokens"] == 3 for x in recs)
    assert untrusted.returncode == 2 and "Traceback" not in untrusted.stderr
    assert "certificate" in untrusted.stderr
