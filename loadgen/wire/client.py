"""The only module on the network: one aiohttp session, request bodies, and the timestamped stream read.

The hot path does three things per response: send, read whatever bytes arrived, stamp them with
``perf_counter_ns()``. Parsing happens after the stream closes (``loadgen.wire.stream``), in slices of ~64 KiB with the
event loop given back in between, so a long response's parse never delays another stream's stamps by more than
a millisecond or two.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
from collections.abc import Mapping
from time import perf_counter_ns
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from loadgen.config import EndpointConfig, SamplingConfig
from loadgen.errors import EndpointError, ErrorKind, kind_for_status
from loadgen.plan.clock import RunClock
from loadgen.records.record import STATUS_CANCELLED, STATUS_ERROR, RequestRecord
from loadgen.wire.http11 import ERROR_BODY_LIMIT, HEAD, Conn, H1Error, Pool, describe_exc
from loadgen.wire.stream import apply_json_body, apply_stream, apply_stream_async
from loadgen.workload.spec import RequestSpec

log = logging.getLogger(__name__)

# what OpenSSL says when the other end answered a ClientHello in plain text (an HTTP 400, say)
_PLAIN_HTTP_SIGNS = ("WRONG_VERSION_NUMBER", "wrong version number", "record layer failure", "packet length too long",
                     "http request", "unknown protocol")  # fmt: skip


def build_body(
    spec: RequestSpec, endpoint: EndpointConfig, sampling: SamplingConfig, model: str
) -> dict[str, Any]:
    """The JSON request body for one spec; run-wide ``--extra-body`` first, then the spec's own extras."""
    body: dict[str, Any] = {"model": model, "stream": True}
    if endpoint.api == "chat":
        body["messages"] = spec.chat_messages()
    else:
        body["prompt"] = spec.completion_prompt()
    max_tokens = spec.max_tokens if spec.max_tokens is not None else sampling.max_tokens
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    stream_options: dict[str, Any] = {"include_usage": True}
    if sampling.continuous_usage:
        stream_options["continuous_usage_stats"] = True
    body["stream_options"] = stream_options
    if sampling.ignore_eos:
        body["ignore_eos"] = True
    if sampling.temperature is not None:
        body["temperature"] = sampling.temperature
    if sampling.top_p is not None:
        body["top_p"] = sampling.top_p
    for key, value in sampling.extra_body:
        body[key] = value
    if spec.extra_body:
        body.update(spec.extra_body)
    return body


def _headers(endpoint: EndpointConfig) -> dict[str, str]:
    """The headers of every request. Authorization: ``--api-key`` (Bearer), else an ``Authorization`` ``--header``,
    else the URL's ``user:password`` (Basic); one of them, never two."""
    # identity: a compressed stream's chunks arrive when the compressor flushes, not when tokens do
    h = {"Content-Type": "application/json", "Accept": "text/event-stream", "Accept-Encoding": "identity"}
    for k, v in endpoint.headers:
        h[k] = v
    if endpoint.api_key:
        for k in [k for k in h if k.lower() == "authorization"]:
            del h[k]
        h["Authorization"] = f"Bearer {endpoint.api_key}"
    elif endpoint.basic_auth and not any(k.lower() == "authorization" for k in h):
        h["Authorization"] = "Basic " + base64.b64encode(endpoint.basic_auth.encode()).decode("ascii")
    return h


def _fail(rec: RequestRecord, kind: ErrorKind, message: str) -> None:
    rec.status = STATUS_ERROR
    rec.error_kind = kind.value
    rec.error_message = message[:500]


class StreamingClient:
    """Sends requests and fills :class:`RequestRecord` timestamps; never raises for a per-request failure."""

    def __init__(
        self,
        endpoint: EndpointConfig,
        sampling: SamplingConfig,
        t0_ns: int = 0,
        *,
        clock: RunClock | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.sampling = sampling
        self.clock = (
            clock if clock is not None else RunClock(t0_ns)
        )  # the run's; started before the first send
        self.url = endpoint.request_url
        self.headers = _headers(endpoint)
        self.model: str = endpoint.model or ""
        self._session: aiohttp.ClientSession | None = None
        u = urlsplit(self.url)
        self._https = u.scheme == "https"
        self._host = u.hostname or "127.0.0.1"
        self._port = u.port or (443 if self._https else 80)
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        head = [f"POST {path} HTTP/1.1", f"Host: {u.netloc}"]
        head += [f"{k}: {v}" for k, v in self.headers.items()]
        # the request head is built once; per request only Content-Length and the body are added
        self._req_head = ("\r\n".join(head) + "\r\nContent-Length: ").encode("latin-1")
        self._pool: Pool | None = None

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=None, keepalive_timeout=60)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.endpoint.timeout_s),
            auto_decompress=False,
            read_bufsize=2**16,
            skip_auto_headers=("User-Agent",),
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
            self._reuse_note = self._pool.reuse_note
            self._pool = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def t0_ns(self) -> int:
        return self.clock.t0_ns

    @property
    def connection_note(self) -> str | None:
        """Why connections stopped being reused, when the server closed kept-alive ones (for the summary)."""
        return self._pool.reuse_note if self._pool is not None else getattr(self, "_reuse_note", None)

    @property
    def stamp_source(self) -> str:
        """Where read times come from, for the summary: the kernel's receive stamp or the event loop's clock."""
        pool = self._pool or self._pool_for()
        return "kernel receive time (SO_TIMESTAMPNS)" if pool.kernel_stamps else "event loop (data_received)"

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "StreamingClient.open() first"
        return self._session

    async def _probe_tls(self) -> None:
        """For https: a TLS handshake within ``--connect-timeout``. A plain-HTTP port given as https:// either waits
        for a request line that never comes or answers the ClientHello in plain text; both get the hint."""
        ep = self.endpoint
        loop = asyncio.get_running_loop()
        pool = self._pool or self._pool_for()
        transport: asyncio.BaseTransport | None = None
        try:
            async with asyncio.timeout(ep.connect_timeout_s):
                transport, _ = await loop.create_connection(asyncio.Protocol, self._host, self._port)
        except TimeoutError:
            raise EndpointError(
                f"cannot reach the server at {ep.base_url}: no connection within {ep.connect_timeout_s:g} s "
                "(--connect-timeout)"
            ) from None
        except OSError as exc:
            raise EndpointError(f"cannot reach the server at {ep.base_url}: {describe_exc(exc)}") from None
        try:
            async with asyncio.timeout(ep.connect_timeout_s):
                transport = await loop.start_tls(
                    transport,  # type: ignore[arg-type]
                    transport.get_protocol(),
                    pool.ssl,
                    server_hostname=self._host,
                )
        except TimeoutError:
            raise EndpointError(
                f"the server did not answer a TLS handshake: is it plain http? ({ep.base_url}: no answer within "
                f"{ep.connect_timeout_s:g} s, --connect-timeout)"
            ) from None
        except (ssl.SSLError, ConnectionError) as exc:
            plain = isinstance(exc, ConnectionError) or any(w in str(exc) for w in _PLAIN_HTTP_SIGNS)
            raise EndpointError(
                f"the server did not answer a TLS handshake{': is it plain http?' if plain else ''} "
                f"({ep.base_url}: {describe_exc(exc)})"
            ) from None
        finally:
            if transport is not None:
                transport.abort()

    async def resolve_model(self) -> str:
        """Check the server answers and learn the model: the first id of /v1/models unless ``--model`` is set.

        Within the run's own limits: a connection (and TLS handshake) within ``--connect-timeout``, the answer
        within ``--timeout``."""
        ep = self.endpoint
        url = ep.api_root + "/models"
        if self._https:
            await self._probe_tls()
        limit = aiohttp.ClientTimeout(total=ep.timeout_s, sock_connect=ep.connect_timeout_s)
        try:
            async with self.session.get(url, headers=self.headers, timeout=limit) as r:
                status = r.status
                raw = await r.read()
        except aiohttp.ConnectionTimeoutError:
            raise EndpointError(
                f"cannot reach the server at {ep.base_url}: no connection within {ep.connect_timeout_s:g} s "
                "(--connect-timeout)"
            ) from None
        except (aiohttp.ClientConnectorError, aiohttp.ClientOSError, ConnectionError) as exc:
            raise EndpointError(f"cannot reach the server at {ep.base_url}: {describe_exc(exc)}") from None
        except TimeoutError:
            raise EndpointError(
                f"the server at {ep.base_url} did not answer GET {url} within {ep.timeout_s:g} s (--timeout)"
            ) from None
        if status in (401, 403):
            raise EndpointError(
                f"the server refused the request with HTTP {status}: check --api-key / OPENAI_API_KEY"
            )
        ids: list[str] = []
        if status == 200:
            try:
                ids = [m["id"] for m in orjson.loads(raw).get("data", []) if "id" in m]
            except (orjson.JSONDecodeError, AttributeError, TypeError):
                ids = []
        if self.endpoint.model:
            if ids and self.endpoint.model not in ids:
                raise EndpointError(
                    f"model {self.endpoint.model!r} is not served at {self.endpoint.base_url}; "
                    f"it serves: {', '.join(ids[:10])}"
                )
            self.model = self.endpoint.model
        elif ids:
            self.model = ids[0]
        elif status == 404:
            raise EndpointError(
                f"{url} answered 404: is {self.endpoint.base_url} an OpenAI-compatible API root? "
                "Pass --model if the server has no /v1/models"
            )
        else:
            raise EndpointError(f"{url} answered HTTP {status} without a model list; pass --model")
        return self.model

    async def warm(self) -> None:
        """Before the run's t0: the connection pool (and a TLS context) exists and the host is resolved."""
        pool = self._pool or self._pool_for()
        try:
            await pool.resolve()
        except OSError:
            pass  # connecting will fail per request, as data (resolve_model has already reached the server)

    def body_bytes(self, spec: RequestSpec) -> bytes:
        return orjson.dumps(build_body(spec, self.endpoint, self.sampling, self.model))

    def _pool_for(self) -> Pool:
        if self._pool is None:
            ssl_ctx: Any = None
            if self._https:
                ssl_ctx = ssl.create_default_context()
            self._pool = Pool(self._host, self._port, ssl_ctx)
        return self._pool

    async def execute(self, spec: RequestSpec, rec: RequestRecord, keep_text: bool | str = True) -> None:
        """Send one request and read its stream into ``rec``. Cancellation marks the record and re-raises.

        ``--timeout`` covers the whole request from now (its turn to be sent): connecting, writing, the response.
        A new connection must also be up within ``--connect-timeout``; a request whose connection is not up by its
        deadline is never written. Nothing is ever sent twice: a kept-alive connection the server has closed is
        found before the request is written to it (``retries`` counts those skipped), and a connection that closes
        after the write fails the request, since the server may have read it.
        """
        t0 = self.t0_ns
        ep = self.endpoint
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ep.timeout_s
        body = self.body_bytes(spec)
        request = b"%s%d\r\n\r\n%s" % (self._req_head, len(body), body)
        pool = self._pool or self._pool_for()
        conn: Conn | None = None
        reads = None
        timer = None
        try:
            rec.connect_ns = perf_counter_ns() - t0
            conn, reused, rec.retries = await pool.acquire(min(ep.connect_timeout_s, deadline - loop.time()))
            rec.conn_reused = reused
            conn.t0 = t0
            waiter = conn.waiter = loop.create_future()
            timer = loop.call_at(deadline, _expire, waiter)
            # stamped as the write begins: the server may read the bytes before write() returns
            rec.send_ns = perf_counter_ns() - t0
            conn.transport.write(request)  # type: ignore[union-attr]
            if ep.read_timeout_s is not None:
                conn.watch_idle(ep.read_timeout_s, rec.send_ns)
            await waiter
            timer.cancel()
            conn.stop_idle()
            rec.first_byte_ns = conn.first_byte_ns
            rec.end_ns = perf_counter_ns() - t0
            status = conn.status
            rec.http_status = status
            rec.server_request_id = conn.headers.get("x-request-id")
            reads = conn.body_reads()
            conn_headers = conn.headers
            ctype = conn_headers.get("content-type", "").lower()
            pool.release(conn)
            conn = None  # the pool may hand it to another request while this one is parsed
            await _read_response(rec, status, conn_headers, ctype, reads, keep_text)
            return
        except asyncio.CancelledError:
            _mark_cancelled(rec, conn, reads, keep_text, t0)
            raise
        except H1Error as exc:
            await _mark_failed(rec, exc, conn, ep.timeout_s, keep_text, t0)
        except Exception as exc:  # a bug in loadgen must not lose the record
            rec.end_ns = perf_counter_ns() - t0
            log.exception("unexpected client failure")
            _fail(rec, ErrorKind.CLIENT, describe_exc(exc))
            if conn is not None:
                conn.drop()
        finally:
            if timer is not None:
                timer.cancel()
            if conn is not None:
                conn.stop_idle()
                conn.waiter = None
            # A failed waiter holds its exception, whose traceback holds this frame, which holds the waiter: a
            # cycle that only the collector frees, and the dispatcher's periodic gc.freeze() would keep it (and
            # the connection, record and bytes it reaches) for the rest of the run. Dropping the frame's
            # reference lets reference counting free a failed request as promptly as a finished one.
            waiter = None  # noqa: F841


async def _read_response(
    rec: RequestRecord,
    status: int,
    headers: Mapping[str, str],
    ctype: str,
    reads: list[tuple[int, bytes]],
    keep_text: bool | str,
) -> None:
    """A complete response into its record, off the connection (already back in the pool): an error status, a
    compressed stream, an event stream, a JSON body, or something that is neither."""
    if status != 200:
        _fail_status(rec, status, headers, reads)
        return
    encoding = headers.get("content-encoding", "identity").lower()
    if encoding != "identity":
        # recorded, not decoded: the chunks' arrival times would be the compressor's flushes, not tokens'
        _fail(
            rec,
            ErrorKind.MALFORMED,
            f"compressed stream (Content-Encoding: {encoding}) although loadgen asked for identity: its "
            "arrival times would be the compressor's, not the tokens'",
        )
        return
    if "event-stream" in ctype or not ctype:
        await apply_stream_async(rec, reads, keep_text)
    elif "json" in ctype:
        apply_json_body(rec, b"".join(d for _, d in reads), rec.end_ns)
    else:  # an HTML error page from a proxy, a login portal: not a stream that broke off
        head = b"".join(d for _, d in reads[:4])[:80]
        _fail(
            rec,
            ErrorKind.MALFORMED,
            f"HTTP 200 with Content-Type {ctype!r}, not an event stream: {head!r}",
        )


async def _mark_failed(
    rec: RequestRecord, exc: H1Error, conn: Conn | None, timeout_s: float, keep_text: bool | str, t0: int
) -> None:
    """The request failed on the wire (connect, timeout, a broken stream): its error kind, and what had arrived."""
    rec.end_ns = perf_counter_ns() - t0
    kind = exc.kind
    if conn is None:
        rec.retries = exc.skipped
    if conn is not None and conn.state != HEAD and conn.status:
        rec.first_byte_ns = conn.first_byte_ns
        rec.http_status = conn.status or None
        rec.server_request_id = conn.headers.get("x-request-id")
    if kind is ErrorKind.TIMEOUT:
        _fail(rec, kind, f"no complete response within {timeout_s:g} s (--timeout)")
    else:
        _fail(rec, kind, str(exc))
    if conn is not None:
        conn.drop()
        if conn.status == 200:
            await apply_stream_async(rec, conn.body_reads(), keep_text)


def _mark_cancelled(
    rec: RequestRecord, conn: Conn | None, reads: Any, keep_text: bool | str, t0: int
) -> None:
    """The run was interrupted while the request was in flight: the record says so, with what had arrived."""
    if reads is not None:  # the response was complete: interrupted while it was being parsed
        apply_stream(rec, reads, keep_text)
    else:
        rec.end_ns = perf_counter_ns() - t0
    rec.status = STATUS_CANCELLED
    rec.error_kind = ErrorKind.CANCELLED.value
    rec.error_message = "run interrupted while the request was in flight"
    if conn is not None:
        if conn.status:
            rec.http_status = conn.status
            rec.first_byte_ns = conn.first_byte_ns
            rec.server_request_id = conn.headers.get("x-request-id")
        conn.drop()
        if conn.status == 200:
            apply_stream(rec, conn.body_reads(), keep_text)


def _fail_status(
    rec: RequestRecord, status: int, headers: Mapping[str, str], reads: list[tuple[int, bytes]]
) -> None:
    kind = kind_for_status(status)
    if kind is ErrorKind.REDIRECT:
        where = headers.get("location")
        _fail(
            rec,
            kind,
            f"HTTP {status} redirect to {where!r}, not followed (a POST is never resent): point --base-url at it"
            if where
            else f"HTTP {status} redirect without a Location, not followed",
        )
        return
    raw = b"".join(d for _, d in reads)[:ERROR_BODY_LIMIT]
    _fail(rec, kind, f"HTTP {status}: {_error_message(raw)}")


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(H1Error(ErrorKind.TIMEOUT, "timeout"))


def _error_message(raw: bytes) -> str:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode(errors="replace").strip()[:300] or "(empty body)"
    if isinstance(obj, Mapping):
        err = obj.get("error", obj)
        if isinstance(err, Mapping):
            return str(err.get("message") or err.get("detail") or err)[:300]
        if "message" in obj:
            return str(obj["message"])[:300]
        return str(err)[:300]
    return str(obj)[:300]
