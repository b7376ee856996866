"""``requests.jsonl``'s line format, parsed in one place: :class:`RecordLines` turns each line into a dict, and
everything that reads the file goes through it: the columns (:mod:`loadgen.records.columns.requests`, with their
chunk and record reducers: the summary's numbers, accuracy, the engine timings, the report) and the records one at a
time (:func:`iter_records`, ``RunResult.records``). A torn last line is skipped; chunk arrays can be cut out of a
line before it is parsed (:func:`without_chunks`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from loadgen.records.record import RequestRecord

__all__ = ["RecordLines", "iter_records", "read_records", "without_chunks"]


class RecordLines:
    """The lines of a ``requests.jsonl`` as dicts, in file order: the one parser of the file.

    ``chunk_stride``: 1 parses every line whole; 0 cuts every line's chunk arrays out before parsing (3-10x faster,
    for what needs no chunks); k > 1 keeps them on every k-th line only. Lines that are not JSON (a torn last line,
    the run was killed mid-write) are left out and counted in ``skipped`` (blank lines are not counted).
    """

    def __init__(self, path: str | os.PathLike[str], chunk_stride: int = 1) -> None:
        self.path = Path(path)
        self.chunk_stride = chunk_stride
        self.skipped = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        stride = self.chunk_stride
        loads = orjson.loads
        with open(self.path, "rb") as fh:
            for n_line, line in enumerate(fh):
                if stride != 1 and (stride == 0 or n_line % stride != 0):
                    line = without_chunks(line)
                try:
                    d = loads(line)
                except orjson.JSONDecodeError:
                    self.skipped += line.strip() != b""
                    continue
                yield d


def iter_records(path: str | os.PathLike[str], *, chunks: bool = True) -> Iterator[RequestRecord]:
    """The records of a ``requests.jsonl`` one at a time, in file order (for what needs whole records; numbers are
    read as columns by :mod:`loadgen.records.columns`); ``chunks=False`` leaves their chunk arrays empty (cut
    before parsing: most of a line). A torn last line (the run was killed mid-write) is skipped."""
    for d in RecordLines(path, 1 if chunks else 0):
        yield RequestRecord.from_dict(d)


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
