"""The error tree.

Setup problems are exceptions, caught once in ``__main__`` and printed as one line with exit code 2::

    LoadgenError
    ├── ConfigError        a bad flag value or an inconsistent combination
    ├── WorkloadError      an unreadable dataset or a malformed line in it
    └── EndpointError      the server is unreachable, refuses the key (401/403), or lacks the model (404)

Per-request failures are never exceptions that escape: they become data, an :class:`ErrorKind` and a message on
the request's record. A run whose requests failed still writes its results, and then exits with
``EXIT_REQUESTS_FAILED``.

Exit codes of ``python -m loadgen``: 0 measured; 2 setup error (the tree above); 3 the requests failed (every
measured request failed, the first ones were all refused with 401/403, or the failed share passed
``--max-error-share``); 130 interrupted.
"""

from __future__ import annotations

from enum import StrEnum

EXIT_REQUESTS_FAILED = 3


class LoadgenError(Exception):
    """A setup problem the user can fix; its message is one line."""

    exit_code = 2


class ConfigError(LoadgenError):
    pass


class WorkloadError(LoadgenError):
    pass


class EndpointError(LoadgenError):
    pass


class ErrorKind(StrEnum):
    """Why one request failed; a closed set so statistics keys never come from messages or URLs."""

    CONNECT = "connect"  # no connection (refused, reset, unreachable): the request was never sent
    CONNECT_TIMEOUT = "connect_timeout"  # no connection within --connect-timeout (or --timeout): never sent
    TIMEOUT = "timeout"  # the whole request passed --timeout (counted from its turn to be sent)
    READ_TIMEOUT = "read_timeout"  # no byte from the server for --read-timeout while waiting for the response
    REDIRECT = "redirect"  # a 3xx answer: never followed (a POST is not resent), its Location in the message
    HTTP_429 = "http_429"  # rate limited
    HTTP_4XX = "http_4xx"  # other client errors (400, 401, 403, 404, 413, ...)
    HTTP_5XX = "http_5xx"  # server errors (500, 502, 503, ...)
    STREAM_ERROR = "stream_error"  # the server sent an error event inside the stream
    DISCONNECT = "disconnect"  # the connection closed after the request was sent, before the response ended
    MALFORMED = "malformed"  # the response was not the SSE/JSON it should be
    EMPTY = "empty"  # the stream finished without producing a single token
    CANCELLED = "cancelled"  # the run was interrupted (Ctrl-C) while the request was in flight
    SESSION_ABORTED = (
        "session_aborted"  # a conversation's turn never sent: an earlier turn of its session failed
    )
    WORKER_LOST = "worker_lost"  # its sender (worker process, Ray actor, its node) died before reporting it
    CLIENT = "client"  # an unexpected failure inside loadgen itself (a bug: please report)


def kind_for_status(status: int) -> ErrorKind:
    if 300 <= status < 400:
        return ErrorKind.REDIRECT
    if status == 429:
        return ErrorKind.HTTP_429
    if 400 <= status < 500:
        return ErrorKind.HTTP_4XX
    return ErrorKind.HTTP_5XX
