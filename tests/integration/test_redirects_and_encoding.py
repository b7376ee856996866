"""A 3xx answer to a POST is a ``redirect``, never followed; a stream is asked for uncompressed, and one that comes
compressed anyway is ``malformed`` "compressed stream" (issue 18 item 7)."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest

from loadgen.errors import ErrorKind
from tests.integration.test_cli import ThreadedServer, cli, slow_stream
from tests.scripted_server import DONE, Script, chat_chunk


def _records(out) -> list[dict]:
    return [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_its_own_error_kind_names_the_location_and_is_never_followed(tmp_path, status):
    with ThreadedServer(slow_stream(0.01, 2)) as elsewhere:
        where = f"{elsewhere.base_url}/v1/chat/completions"
        moved = Script([], status=status, content_type="text/html", extra_headers={"Location": where})
        with ThreadedServer(moved) as srv:
            r = cli("--base-url", srv.base_url, "-n", "3", "--rate", "50", "--no-scrape", "--no-live",
                    "--output-dir", str(tmp_path / "o"))  # fmt: skip
        followed = [a for a in elsewhere.arrivals if a.path.endswith("/completions")]
    assert r.returncode == 3, r.stderr[-2000:]  # every request failed
    recs = _records(tmp_path / "o")
    assert [x["error_kind"] for x in recs] == [ErrorKind.REDIRECT.value] * 3
    assert all(x["http_status"] == status and where in x["error_message"] for x in recs)
    assert "not followed" in recs[0]["error_message"]
    assert followed == []


SSE = chat_chunk(content="hello") + chat_chunk(finish="stop") + DONE


@pytest.mark.parametrize(
    "encoding,body",
    [("gzip", gzip.compress(SSE)), ("deflate", zlib.compress(SSE)), ("br", b"\x1b\x2c\x00\xf8\xa5\x40\x02")],
)
def test_a_compressed_stream_is_malformed_compressed_stream_and_identity_was_asked_for(
    tmp_path, encoding, body
):
    script = Script([(0, body)], extra_headers={"Content-Encoding": encoding})
    with ThreadedServer(script) as srv:
        r = cli("--base-url", srv.base_url, "-n", "2", "--rate", "50", "--no-scrape", "--no-live",
                "--output-dir", str(tmp_path / "o"))  # fmt: skip
        posts = [a for a in srv.arrivals if a.path.endswith("/completions")]
    assert r.returncode == 3, r.stderr[-2000:]
    assert [a.headers.get("accept-encoding") for a in posts] == ["identity", "identity"]
    recs = _records(tmp_path / "o")
    assert [x["error_kind"] for x in recs] == [ErrorKind.MALFORMED.value] * 2
    assert all(
        x["error_message"].startswith(f"compressed stream (Content-Encoding: {encoding})") for x in recs
    )


def test_an_uncompressed_stream_asked_for_with_identity_is_measured(tmp_path):
    with ThreadedServer(slow_stream(0.01, 3)) as srv:
        r = cli("--base-url", srv.base_url, "-n", "2", "--rate", "50", "--no-scrape", "--no-live",
                "--output-dir", str(tmp_path / "o"))  # fmt: skip
        posts = [a for a in srv.arrivals if a.path.endswith("/completions")]
    assert r.returncode == 0, r.stderr[-2000:]
    assert [a.headers.get("accept-encoding") for a in posts] == ["identity", "identity"]
    assert [x["status"] for x in _records(tmp_path / "o")] == ["ok", "ok"]
