"""The only module on the network: one aiohttp session, request bodies, and the timestamped stream read.

The hot path does three things per response: send, read whatever bytes arrived, stamp them with
``perf_counter_ns()``. Parsing happens after the stream closes (``loadgen.stream``), so a slow parse can never
delay the timestamp of a later byte.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from time import perf_counter_ns
from typing import Any

import aiohttp
import orjson

from loadgen.config import EndpointConfig, SamplingConfig
from loadgen.errors import EndpointError, ErrorKind, kind_for_status
from loadgen.records import STATUS_CANCELLED, STATUS_ERROR, RequestRecord
from loadgen.stream import apply_json_body, apply_stream
from loadgen.workload.spec import RequestSpec

log = logging.getLogger(__name__)

_ERROR_BODY_LIMIT = 2000


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
    h = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    for k, v in endpoint.headers:
        h[k] = v
    if endpoint.api_key:
        h["Authorization"] = f"Bearer {endpoint.api_key}"
    return h


def _fail(rec: RequestRecord, kind: ErrorKind, message: str) -> None:
    rec.status = STATUS_ERROR
    rec.error_kind = kind.value
    rec.error_message = message[:500]


def _describe_exc(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


class StreamingClient:
    """Sends requests and fills :class:`RequestRecord` timestamps; never raises for a per-request failure."""

    def __init__(self, endpoint: EndpointConfig, sampling: SamplingConfig, t0_ns: int) -> None:
        self.endpoint = endpoint
        self.sampling = sampling
        self.t0_ns = t0_ns
        self.url = endpoint.request_url
        self.headers = _headers(endpoint)
        self.model: str = endpoint.model or ""
        self._session: aiohttp.ClientSession | None = None

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
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "StreamingClient.open() first"
        return self._session

    async def resolve_model(self) -> str:
        """Check the server answers and learn the model: the first id of /v1/models unless ``--model`` is set."""
        url = self.endpoint.api_root + "/models"
        try:
            async with self.session.get(
                url, headers=self.headers, timeout=aiohttp.ClientTimeout(total=30)
            ) as r:
                status = r.status
                raw = await r.read()
        except (aiohttp.ClientConnectorError, aiohttp.ClientOSError, ConnectionError) as exc:
            raise EndpointError(
                f"cannot reach the server at {self.endpoint.base_url}: {_describe_exc(exc)}"
            ) from None
        except TimeoutError:
            raise EndpointError(
                f"the server at {self.endpoint.base_url} did not answer within 30 s"
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

    def body_bytes(self, spec: RequestSpec) -> bytes:
        return orjson.dumps(build_body(spec, self.endpoint, self.sampling, self.model))

    async def execute(self, spec: RequestSpec, rec: RequestRecord, keep_text: bool = True) -> None:
        """Send one request and read its stream into ``rec``. Cancellation marks the record and re-raises."""
        t0 = self.t0_ns
        body = self.body_bytes(spec)
        reads: list[tuple[int, bytes]] = []
        append = reads.append
        streamed = False
        json_body: bytes | None = None
        rec.send_ns = perf_counter_ns() - t0
        try:
            async with self.session.post(self.url, data=body, headers=self.headers) as resp:
                rec.first_byte_ns = perf_counter_ns() - t0
                rec.http_status = resp.status
                rec.server_request_id = resp.headers.get("x-request-id")
                if resp.status != 200:
                    raw = await resp.content.read(_ERROR_BODY_LIMIT)
                    rec.end_ns = perf_counter_ns() - t0
                    _fail(rec, kind_for_status(resp.status), f"HTTP {resp.status}: {_error_message(raw)}")
                    return
                ctype = resp.headers.get("Content-Type", "")
                content = resp.content
                if "json" in ctype and "event-stream" not in ctype:
                    json_body = await content.read()
                    rec.end_ns = perf_counter_ns() - t0
                else:
                    streamed = True
                    while True:
                        data = await content.readany()
                        if not data:
                            break
                        append((perf_counter_ns() - t0, data))
                    rec.end_ns = perf_counter_ns() - t0
        except asyncio.CancelledError:
            rec.end_ns = perf_counter_ns() - t0
            rec.status = STATUS_CANCELLED
            rec.error_kind = ErrorKind.CANCELLED.value
            rec.error_message = "run interrupted while the request was in flight"
            apply_stream(rec, reads, keep_text)
            raise
        except TimeoutError:
            rec.end_ns = perf_counter_ns() - t0
            _fail(rec, ErrorKind.TIMEOUT, f"no complete response within {self.endpoint.timeout_s:g} s")
        except aiohttp.ClientPayloadError as exc:
            rec.end_ns = perf_counter_ns() - t0
            _fail(rec, ErrorKind.DISCONNECT, _describe_exc(exc))
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, ConnectionError) as exc:
            rec.end_ns = perf_counter_ns() - t0
            kind = ErrorKind.CONNECT if rec.first_byte_ns is None else ErrorKind.DISCONNECT
            _fail(rec, kind, _describe_exc(exc))
        except aiohttp.ClientResponseError as exc:
            rec.end_ns = perf_counter_ns() - t0
            _fail(rec, ErrorKind.MALFORMED, _describe_exc(exc))
        except aiohttp.ClientError as exc:
            rec.end_ns = perf_counter_ns() - t0
            _fail(
                rec,
                ErrorKind.CONNECT if rec.first_byte_ns is None else ErrorKind.DISCONNECT,
                _describe_exc(exc),
            )
        except Exception as exc:  # a bug in loadgen must not lose the record
            rec.end_ns = perf_counter_ns() - t0
            log.exception("unexpected client failure")
            _fail(rec, ErrorKind.CLIENT, _describe_exc(exc))
        if json_body is not None:
            apply_json_body(rec, json_body, rec.end_ns or 0)
        elif streamed or reads:
            apply_stream(rec, reads, keep_text)


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
