"""RequestRecord and the append-only JSONL sink: the one hand-off format between client and metrics.

Every time is integer nanoseconds on the run's monotonic clock: ``perf_counter_ns() - t0_ns`` where ``t0_ns`` is
taken once when the run starts (``summary.json`` keeps ``t0_ns`` together with the wall-clock anchor
``t0_unix_ns``). Server-metric samples (``server_metrics.jsonl``) are stamped on the same clock, so a request and the
server's state can be lined up without any conversion.

A record is written once, when its request finishes (successfully or not), and never rewritten: a run killed half-way
leaves every finished request on disk.
"""

from __future__ import annotations

import collections
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import orjson

STATUS_OK = "ok"
STATUS_ERROR = "error"
STATUS_CANCELLED = "cancelled"

# Where a record's token counts came from.
COUNT_USAGE = "usage"  # the server's final usage block
COUNT_CONTINUOUS_USAGE = "continuous_usage"  # per-chunk cumulative usage (continuous_usage_stats)
COUNT_ESTIMATED_CHUNKS = "estimated:one_token_per_chunk"
COUNT_ESTIMATED_CHARS = "estimated:chars_per_token"


@dataclass(slots=True)
class RequestRecord:
    """Everything measured about one request; times are ns since the run's t0, ``None`` when never reached."""

    index: int
    warmup: bool = False
    api: str = "chat"
    # tags copied from the workload (dataset name, domain, difficulty, token budget, ...), closed vocabulary.
    tags: dict[str, Any] = field(default_factory=dict)
    max_tokens: int | None = None

    # lifecycle, in order
    intended_ns: int = 0  # when the schedule wanted it sent
    dispatched_ns: int | None = None  # when the dispatcher handled it (send lag = dispatched - intended)
    # when a concurrency slot was granted after a wait (queue wait = slot - dispatched); at or before
    # dispatched_ns in a closed loop, where the dispatcher waited (queue wait = slot - intended): metrics.client_delays
    slot_ns: int | None = None
    connect_ns: int | None = None  # when the client began getting a connection (kept-alive or new)
    send_ns: int | None = None  # as the request's bytes were written to the (connected) connection
    first_byte_ns: int | None = None  # response status line and headers received
    first_chunk_ns: int | None = None  # first SSE data event of any kind (may carry no token: role chunk)
    first_token_ns: int | None = None  # first event carrying reasoning or answer text
    first_reasoning_ns: int | None = None  # first reasoning token
    first_content_ns: int | None = None  # first visible (answer) token: TTFVT's end point
    last_token_ns: int | None = None  # last event carrying a token
    end_ns: int | None = None  # stream closed / request finished

    # token-bearing chunks, in arrival order: time, tokens, kind ('r' reasoning, 'c' answer, 'x' no text)
    chunk_ns: list[int] = field(default_factory=list)
    chunk_tokens: list[int] = field(default_factory=list)
    chunk_kind: str = ""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None  # as the server's usage reported it
    reasoning_tokens_stream: int | None = None  # as counted from the stream
    token_count_source: str = COUNT_USAGE
    count_notes: list[str] = field(default_factory=list)  # e.g. usage and stream disagree

    status: str = STATUS_OK
    http_status: int | None = None
    finish_reason: str | None = None
    error_kind: str | None = None
    error_message: str | None = None
    server_request_id: str | None = None
    conn_reused: bool | None = None  # a kept-alive connection (True), a new one (False), none obtained (None)
    retries: int = 0  # kept-alive connections found closed before the request was written to them, skipped

    output_text: str | None = None  # the visible answer (kept for accuracy scoring)
    reasoning_chars: int = 0
    # the server's own account of this request where it sends one (llama.cpp's ``timings``: prompt_n, prompt_ms,
    # predicted_n, predicted_ms, cache_n, ...): a free cross-check of the client's timings
    server_timings: dict[str, Any] | None = None
    # conversations (loadgen.run.conversation): the session and its turn (0 first); None for a single request
    session_id: int | None = None
    turn: int | None = None
    # prompt tokens the server found in its prefix cache, as it reported them for this request (vLLM's
    # usage.prompt_tokens_details.cached_tokens, llama.cpp's timings.cache_n); None where it reported none
    cached_tokens: int | None = None
    # the reasoning text, kept only where the next turn of a session resends it (--history keep-reasoning)
    reasoning_text: str | None = None

    def to_json(self) -> bytes:
        return orjson.dumps(record_dict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestRecord:
        return cls(**{k: v for k, v in data.items() if k in _FIELD_SET})


_FIELD_NAMES = tuple(f.name for f in fields(RequestRecord))
_FIELD_SET = frozenset(_FIELD_NAMES)


# credentials in a URL (``http://user:password@host``, any scheme): everything between the scheme and the last "@"
# before the path, in any text (a command line, a URL given for /metrics, a mistyped --base-url, a server's echo)
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s]*@")


class Scrubber:
    """Masks secrets in text: configured values (the API key, ``--header`` values, a URL's password and the Basic
    credentials made of it) and, by their shape, credentials written into any http(s) URL (``//user:pw@``).

    The one masking function of the project: a command line recorded in run.json (``mask_secrets``), a URL written
    to server_metrics.jsonl and every record's text pass through :meth:`text`. A server may echo the request in an
    error body ("invalid key sk-..."); that text becomes ``error_message`` and would reach requests.jsonl, the
    summary and the report. The sink scrubs every record once, in place, before it is written or kept, so nothing
    downstream ever sees the value. Values shorter than ``MIN_LEN`` characters are left alone: they would match
    ordinary words and numbers, and are no secret.
    """

    MIN_LEN = 4
    FIELDS = ("error_message", "output_text", "server_request_id", "finish_reason")
    MASK = "***"

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        # longest first, so a value that contains another is masked whole
        self.secrets = sorted({s for s in secrets if s and len(s) >= self.MIN_LEN}, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def text(self, value: str) -> str:
        for s in self.secrets:
            if s in value:
                value = value.replace(s, self.MASK)
        if "@" in value:
            value = _URL_USERINFO.sub(r"\1" + self.MASK + "@", value)
        return value

    def record(self, rec: RequestRecord) -> None:
        for name in self.FIELDS:
            v = getattr(rec, name)
            if v:
                setattr(rec, name, self.text(v))


class LineSink:
    """Append-only writer of byte lines: the caller hands over finished lines, a thread writes them.

    A disk that stalls (another process loading gigabytes; 375 ms was seen here) must never block the event loop
    that timestamps streams, so the file write happens on a writer thread. The caller only appends a line to a
    deque (no lock, no wake-up: waking the thread for every record took 14.5 % of the event loop's samples at
    360 req/s); the thread wakes every ``FLUSH_S`` and writes what has gathered in one unbuffered write. A crash
    loses at most the lines of the last ``FLUSH_S``, Ctrl-C and errors lose none (``close`` drains what is left).
    A write error (disk full) is raised by the next ``write_line`` and by ``close``.
    """

    FLUSH_S = 0.05

    def __init__(self, path: str | os.PathLike[str], thread_name: str = "loadgen-sink") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "ab", buffering=0)  # noqa: SIM115 - lives as long as the run
        self.count = 0
        self._lines: collections.deque[bytes] = collections.deque()
        self._closing = threading.Event()
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._write_loop, name=thread_name, daemon=True)
        self._thread.start()
        self._closed = False

    def write_line(self, line: bytes) -> None:
        """Queue one line (ending in a newline) for writing."""
        if self._error is not None:
            raise self._error
        self._lines.append(line)
        self.count += 1

    def _write_loop(self) -> None:
        lines, closing = self._lines, self._closing
        while True:
            stop = closing.wait(self.FLUSH_S)
            n = len(lines)  # deque appends and pops are atomic: take what is there now
            if n:
                batch = memoryview(b"".join([lines.popleft() for _ in range(n)]))
                try:
                    while batch:  # an unbuffered write may take part of it
                        batch = batch[self._fh.write(batch) :]
                except OSError as exc:  # disk full: surfaced on the next write and at close()
                    self._error = exc
            if stop and not lines:
                return

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        self._thread.join()
        self._fh.close()
        if self._error is not None:
            raise self._error

    def __enter__(self) -> LineSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RecordSink(LineSink):
    """The run's ``requests.jsonl``: a record is serialised on the caller's thread (it is final once finished, and
    a later change must not leak into the file), the line is written on the sink's thread. Configured secrets are
    scrubbed from the record first (``Scrubber``), in place, so the caller's copy is clean too."""

    def __init__(self, path: str | os.PathLike[str], scrubber: Scrubber | None = None) -> None:
        super().__init__(path, thread_name="loadgen-records")
        self._scrubber = scrubber if scrubber else None

    def write(self, record: RequestRecord) -> None:
        if self._scrubber is not None:
            self._scrubber.record(record)
        self.write_line(record.to_json() + b"\n")


def record_dict(rec: RequestRecord) -> dict[str, Any]:
    """A record as the dict its ``requests.jsonl`` line holds."""
    return {f: getattr(rec, f) for f in _FIELD_NAMES}
