"""One request's record and where records go: ``record`` (RequestRecord, the writer thread, secret scrubbing),
``files`` (the results folder's file names, the one reader of summary.json) and ``columns`` (the one reader of
requests.jsonl)."""

from loadgen.records.record import (
    COUNT_CONTINUOUS_USAGE,
    COUNT_ESTIMATED_CHARS,
    COUNT_ESTIMATED_CHUNKS,
    COUNT_USAGE,
    STATUS_CANCELLED,
    STATUS_ERROR,
    STATUS_OK,
    LineSink,
    RecordSink,
    RequestRecord,
    Scrubber,
    record_dict,
)

__all__ = [
    "COUNT_CONTINUOUS_USAGE",
    "COUNT_ESTIMATED_CHARS",
    "COUNT_ESTIMATED_CHUNKS",
    "COUNT_USAGE",
    "LineSink",
    "RecordSink",
    "RequestRecord",
    "STATUS_CANCELLED",
    "STATUS_ERROR",
    "STATUS_OK",
    "Scrubber",
    "record_dict",
]
