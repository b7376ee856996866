"""The set-up probe (GET /v1/models before t0) keeps the run's own limits (issue 18 item 4): a server that accepts
and never answers is given up after ``--timeout``, a connection after ``--connect-timeout``, and ``https://`` to a
plain-HTTP port says so ("the server did not answer a TLS handshake: is it plain http?"), each as one line with
exit code 2. Judged by what the message names (the configured limit), not by a wall-clock constant."""

from __future__ import annotations

import socket
import threading

import pytest

from tests.integration.test_cli import ThreadedServer, cli, slow_stream


class FrozenServer:
    """Accepts connections and reads nothing, answers nothing (a hung process behind a live socket)."""

    def __init__(self, answer: bytes | None = None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answer = answer  # with bytes: write them once something arrives, then close (a plain HTTP 400)
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            if self.answer is not None:
                c.settimeout(5)
                try:
                    c.recv(4096)
                    c.sendall(self.answer)
                except OSError:
                    pass
                c.close()

    def __enter__(self) -> FrozenServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()
        self.thread.join(5)


def _one_line(r) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    return lines[0]


def test_a_frozen_server_is_given_up_after_the_runs_timeout_not_30_s(tmp_path):
    with FrozenServer() as srv:
        r = cli(
            "--base-url", f"http://127.0.0.1:{srv.port}", "-n", "1", "--timeout", "0.7", "--connect-timeout", "0.3",
            "--no-scrape", "--output-dir", str(tmp_path / "o"),
        )  # fmt: skip
    line = _one_line(r)
    assert "did not answer GET" in line and "within 0.7 s (--timeout)" in line, line


@pytest.mark.parametrize("answer", [None, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"])
def test_https_to_a_plain_http_port_says_is_it_plain_http_within_the_connect_timeout(tmp_path, answer):
    """A plain server that waits for a request line (never answers the ClientHello) and one that answers it with
    a plain-text 400: both get the hint."""
    with FrozenServer(answer) as srv:
        r = cli(
            "--base-url", f"https://127.0.0.1:{srv.port}", "-n", "1", "--timeout", "60", "--connect-timeout", "0.4",
            "--no-scrape", "--output-dir", str(tmp_path / "o"),
        )  # fmt: skip
    line = _one_line(r)
    assert "the server did not answer a TLS handshake: is it plain http?" in line, line
    if answer is None:
        assert "within 0.4 s, --connect-timeout" in line, line


def test_https_to_a_real_plain_http_server_gets_the_hint(tmp_path):
    with ThreadedServer(slow_stream(0.01, 2)) as srv:
        r = cli(
            "--base-url", f"https://127.0.0.1:{srv.port}", "-n", "1", "--connect-timeout", "0.5", "--no-scrape",
            "--output-dir", str(tmp_path / "o"),
        )  # fmt: skip
        assert not [a for a in srv.arrivals if a.path.endswith("/completions")]
    assert "is it plain http?" in _one_line(r)


def test_a_connect_that_hangs_is_given_up_after_the_connect_timeout(tmp_path):
    """A listening socket whose accept queue is full: the kernel drops further SYNs, the connect hangs."""
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(0)
        port = lsock.getsockname()[1]
        fillers = []
        for _ in range(4):  # fill the accept queue (never accepted)
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(s)
        try:
            r = cli(
                "--base-url", f"http://127.0.0.1:{port}", "-n", "1", "--timeout", "60", "--connect-timeout", "0.3",
                "--no-scrape", "--output-dir", str(tmp_path / "o"),
            )  # fmt: skip
        finally:
            for s in fillers:
                s.close()
    line = _one_line(r)
    assert "no connection within 0.3 s (--connect-timeout)" in line, line
