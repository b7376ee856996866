"""A real HTTP/1.1 server on loopback that plays scripted byte streams, for testing the client on the wire.

Each POST looks up a script by the request body's ``model`` (or the default script): a status, headers and a list
of (delay_s, bytes) writes. It can send chunked or close-delimited bodies, split SSE events anywhere, cut the
connection mid-stream, and it records when each request arrived (``perf_counter_ns``), so tests can compare the
client's timestamps with the server's. ``metrics_body`` (when set) is served at ``GET /metrics``.

``python -m tests.scripted_server SPEC.json`` runs one in a child process (see ``ServerProcess``): its clock and
its writes keep going while the test's own event loop is busy, so the client's stamps can be judged against it.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import orjson


@dataclass
class Script:
    writes: list[tuple[float, bytes]]
    status: int = 200
    content_type: str = "text/event-stream"
    chunked: bool = True
    cut: bool = False  # close the connection without finishing the body
    extra_headers: dict[str, str] = field(default_factory=dict)
    # replace the writes by one JSON error body that quotes the request's headers (a server echoing the key)
    echo_headers: bool = False


@dataclass
class Arrival:
    t_ns: int
    path: str
    body: dict
    headers: dict[str, str]
    first_write_ns: int | None = None
    last_write_ns: int | None = None
    writes_ns: list[int] = field(default_factory=list)


class ScriptedServer:
    def __init__(self, models: tuple[str, ...] = ("scripted",)) -> None:
        self.scripts: dict[str, Script] = {}
        self.default: Script | None = None
        self.models = models
        self.arrivals: list[Arrival] = []
        self.models_status = 200
        self.metrics_body: bytes | None = None
        # close a kept-alive connection idle this long (like most servers)
        self.idle_close_s: float | None = None
        # read a connection's 2nd and later requests, then close without answering
        self.hangup_on_reuse = False
        # on idle_close_s, answer 408 first and close only a second later (like Apache)
        self.idle_408 = False
        self.arrivals_path: Path | None = None  # when set, each finished POST is appended here as a JSON line
        self._server: asyncio.base_events.Server | None = None
        self._handlers: set[asyncio.Task] = set()
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, ssl: Any = None) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop listening and end every connection's handler (each closes its connection), so nothing is left
        for a closed event loop to find later (``Event loop is closed`` from a collected handler)."""
        if self._server is not None:
            self._server.close()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                if served and self.idle_close_s is not None:
                    try:
                        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.idle_close_s)
                    except TimeoutError:
                        if self.idle_408:
                            writer.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
                            await writer.drain()
                            await asyncio.sleep(1.0)
                        return
                else:
                    head = await reader.readuntil(b"\r\n\r\n")
                served += 1
                t = perf_counter_ns()
                lines = head.decode().split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                n = int(headers.get("content-length", "0"))
                body = await reader.readexactly(n) if n else b""
                obj = orjson.loads(body) if body else {}
                arrival = Arrival(t, path, obj, headers)
                self.arrivals.append(arrival)
                if method == "GET" and path.endswith("/models"):
                    payload = orjson.dumps(
                        {"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]}
                    )
                    await self._respond(writer, self.models_status, "application/json", payload)
                    continue
                if method == "GET" and path == "/metrics":
                    if self.metrics_body is None:
                        await self._respond(writer, 404, "text/plain", b"no metrics")
                    else:
                        await self._respond(writer, 200, "text/plain; version=0.0.4", self.metrics_body)
                    continue
                if self.hangup_on_reuse and served > 1:
                    if self.arrivals_path is not None:
                        with open(self.arrivals_path, "ab") as fh:
                            fh.write(orjson.dumps(asdict(arrival)) + b"\n")
                    return  # the request was read; the connection closes without an answer
                script = self.scripts.get(obj.get("model", ""), self.default)
                if script is None:
                    await self._respond(writer, 404, "application/json", b'{"error":{"message":"no script"}}')
                    continue
                try:
                    keep = await self._play(writer, script, arrival)
                finally:
                    if self.arrivals_path is not None:
                        with open(self.arrivals_path, "ab") as fh:
                            fh.write(orjson.dumps(asdict(arrival)) + b"\n")
                if not keep:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            # stop() (or the end of the loop) ends this connection: the handler returns, as a cancelled one would
            # make asyncio's stream callback print a CancelledError traceback for each connection still open
            writer.transport.abort()
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _respond(self, writer: asyncio.StreamWriter, status: int, ctype: str, payload: bytes) -> None:
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        await writer.drain()

    async def _play(self, writer: asyncio.StreamWriter, s: Script, arrival: Arrival) -> bool:
        hdr = [f"HTTP/1.1 {s.status} X", f"Content-Type: {s.content_type}", "x-request-id: req-1"]
        hdr += [f"{k}: {v}" for k, v in s.extra_headers.items()]
        if s.chunked:
            hdr.append("Transfer-Encoding: chunked")
        else:
            hdr.append("Connection: close")
        writer.write(("\r\n".join(hdr) + "\r\n\r\n").encode())
        await writer.drain()
        writes = s.writes
        if s.echo_headers:
            quoted = ", ".join(f"{k}: {v}" for k, v in arrival.headers.items())
            writes = [(0.0, orjson.dumps({"error": {"message": f"invalid credentials in {quoted}"}}))]
        for delay, data in writes:
            if delay:
                await asyncio.sleep(delay)
            if s.chunked:
                writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            else:
                writer.write(data)
            await writer.drain()
            now = perf_counter_ns()
            arrival.writes_ns.append(now)
            if arrival.first_write_ns is None:
                arrival.first_write_ns = now
            arrival.last_write_ns = now
        if s.cut:
            writer.transport.abort()
            return False
        if s.chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        return False


class ThreadedServer:
    """A :class:`ScriptedServer` on an event loop of its own in a background thread (for tests that run loadgen
    as a subprocess). On exit the server is stopped (every handler ends and closes its connection), then the loop
    is stopped and closed: no pending handler is left for the garbage collector to run on a closed loop."""

    def __init__(self, server: ScriptedServer, ssl: Any = None) -> None:
        self.server, self.ssl = server, ssl
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.start(self.ssl))
            self.ready.set()
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the scripted server did not start")
        return self.server

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def chat_chunk(
    content: str | None = None,
    reasoning: str | None = None,
    finish: str | None = None,
    usage: dict | None = None,
    role: bool = False,
    field: str = "reasoning",
) -> bytes:
    delta: dict = {}
    if role:
        delta["role"] = "assistant"
        delta["content"] = ""
    if content is not None:
        delta["content"] = content
    if reasoning is not None:
        delta[field] = reasoning
    obj: dict = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "scripted",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if usage is not None:
        obj["usage"] = usage
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def usage_chunk(prompt: int, completion: int, reasoning: int | None = None) -> bytes:
    usage: dict = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if reasoning is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    obj = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "scripted",
        "choices": [],
        "usage": usage,
    }
    return b"data: " + orjson.dumps(obj) + b"\n\n"


DONE = b"data: [DONE]\n\n"


# --- the same server in a child process -------------------------------------------------------------------


def _script_to_json(s: Script) -> dict:
    d = asdict(s)
    d["writes"] = [(delay, base64.b64encode(data).decode()) for delay, data in s.writes]
    return d


def _script_from_json(d: dict) -> Script:
    d = dict(d)
    d["writes"] = [(delay, base64.b64decode(data)) for delay, data in d["writes"]]
    return Script(**d)


class ServerProcess:
    """A :class:`ScriptedServer` in its own process: ``with ServerProcess(tmp, default=...) as srv: srv.base_url``.

    After the block, ``arrivals`` holds every POST it served (with its write times), in the order they finished.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        default: Script | None = None,
        scripts: dict[str, Script] | None = None,
        metrics_body: bytes | None = None,
        **options: object,
    ) -> None:
        """``options`` set the server's attributes of the same name (``idle_close_s``, ``hangup_on_reuse``)."""
        self.workdir = Path(workdir)
        self.spec = {
            "default": _script_to_json(default) if default else None,
            "scripts": {k: _script_to_json(v) for k, v in (scripts or {}).items()},
            "metrics_body": base64.b64encode(metrics_body).decode() if metrics_body is not None else None,
            "arrivals": str(self.workdir / "arrivals.jsonl"),
            "options": options,
        }
        self.port = 0
        self.arrivals: list[Arrival] = []
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        spec_path = self.workdir / "server_spec.json"
        spec_path.write_bytes(orjson.dumps(self.spec))
        root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.scripted_server", str(spec_path)],
            stdout=subprocess.PIPE,
            cwd=root,
            env=env,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            self._proc.wait()
            raise RuntimeError("scripted server process did not start")
        self.port = int(line)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGTERM)
        self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        path = Path(self.spec["arrivals"])
        if path.exists():
            self.arrivals = [Arrival(**orjson.loads(line)) for line in path.read_bytes().splitlines()]


async def _serve_spec(spec: dict) -> None:
    srv = ScriptedServer()
    if spec["default"]:
        srv.default = _script_from_json(spec["default"])
    srv.scripts = {k: _script_from_json(v) for k, v in spec["scripts"].items()}
    if spec["metrics_body"] is not None:
        srv.metrics_body = base64.b64decode(spec["metrics_body"])
    srv.arrivals_path = Path(spec["arrivals"])
    for name, value in spec["options"].items():
        setattr(srv, name, value)
    await srv.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(srv.port, flush=True)
    await stop.wait()
    await srv.stop()


if __name__ == "__main__":
    asyncio.run(_serve_spec(orjson.loads(Path(sys.argv[1]).read_bytes())))
