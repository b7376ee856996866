"""``requests.jsonl`` as whole records, one at a time: the reader for what needs a record's text (accuracy, the
engine timings, ``RunResult.records``); numbers are read as columns (:mod:`loadgen.records.columns.requests`). Both cut a
line's chunk arrays the same way (:func:`without_chunks`) and skip a torn last line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import orjson

from loadgen.records.record import RequestRecord

__all__ = ["iter_records", "read_records", "without_chunks"]


def iter_records(path: str | os.PathLike[str], *, chunks: bool = True) -> Iterator[RequestRecord]:
    """The records of a ``requests.jsonl`` one at a time, in file order (for what needs whole records, e.g. the
    answers' text; numbers are read as columns by :mod:`loadgen.records.columns`); ``chunks=False`` leaves their chunk
    arrays empty (cut before parsing: most of a line). A torn last line (the run was killed mid-write) is skipped."""
    with open(path, "rb") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            if not chunks:
                line = without_chunks(line)
            try:
                yield RequestRecord.from_dict(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue


_CHUNK_START = b'"chunk_ns":['
_KIND = b'"chunk_kind":"'


def without_chunks(line: bytes) -> bytes:
    """The record line with its chunk arrays cut out (they are written together: chunk_ns, chunk_tokens, kind)."""
    a = line.find(_CHUNK_START)
    k = line.find(_KIND, a)
    if a < 0 or k < 0:
        return line
    q = line.find(b'"', k + len(_KIND))
    if q < 0 or line[q + 1 : q + 2] != b",":
        return line
    return line[:a] + line[q + 2 :]


def read_records(path: str | os.PathLike[str]) -> list[RequestRecord]:
    """Every record of a ``requests.jsonl`` in memory, in file order (see :func:`iter_records`)."""
    return list(iter_records(path))
