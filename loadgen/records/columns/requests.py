"""``requests.jsonl`` as columns: one row per record, in file order, its chunk arrays handed to reducers a block at
a time, and each parsed record to the reducers that read whole records (see :mod:`loadgen.records.columns`)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from loadgen.records.columns.arrays import BLOCK_ROWS, Categorical, Codes, float_col
from loadgen.records.columns.records import RecordLines
from loadgen.records.record import record_dict

__all__ = [
    "BLOCK_CHUNKS",
    "COUNT_FIELDS",
    "ChunkBlock",
    "ChunkReducer",
    "RecordReducer",
    "RequestColumns",
    "TIME_FIELDS",
    "from_records",
    "read_requests",
]

BLOCK_CHUNKS = 1_000_000  # chunk values handed to the reducers at a time

TIME_FIELDS = (
    "intended_ns",
    "dispatched_ns",
    "slot_ns",
    "connect_ns",
    "send_ns",
    "first_byte_ns",
    "first_chunk_ns",
    "first_token_ns",
    "first_reasoning_ns",
    "first_content_ns",
    "last_token_ns",
    "end_ns",
)
COUNT_FIELDS = (
    "max_tokens",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "reasoning_tokens_stream",
    "http_status",
    "session_id",
    "turn",
    "cached_tokens",
)
_CATEGORICAL_FIELDS = (
    ("status", "ok"),
    ("finish_reason", None),
    ("error_kind", None),
    ("token_count_source", "usage"),
)


# --------------------------------------------------------------------------------------------- requests.jsonl
@dataclass
class ChunkBlock:
    """The chunk arrays of a block of requests, flattened: what a reducer sees (see the module docstring)."""

    rows: np.ndarray  # row of each request in the columns
    lens: np.ndarray  # its number of chunks
    t: np.ndarray  # int64 chunk times, request after request
    k: np.ndarray  # int64 tokens per chunk
    measured_ok: np.ndarray  # per request: a measured (not warm-up), successful request

    @property
    def starts(self) -> np.ndarray:
        return np.cumsum(self.lens) - self.lens

    def first_mask(self) -> np.ndarray:
        """True at each request's first chunk."""
        first = np.zeros(self.t.size, dtype=bool)
        first[self.starts[self.lens > 0]] = True
        return first

    def owner(self) -> np.ndarray:
        """Position (into ``rows``) of the request each chunk belongs to."""
        return np.repeat(np.arange(self.lens.size), self.lens)


class ChunkReducer(Protocol):
    def add(self, block: ChunkBlock) -> None: ...

    def finish(self, cols: RequestColumns) -> None: ...


class RecordReducer(Protocol):
    """A reducer of whole records (accuracy needs the answers' text, the engine cross-check each response's
    timings): handed each record as parsed, in file order, in the same pass as the columns. A reducer may be both
    kinds: it gets what it has a method for."""

    def add_record(self, d: dict[str, Any]) -> None: ...

    def finish(self, cols: RequestColumns) -> None: ...


@dataclass
class RequestColumns:
    """``requests.jsonl`` as columns (see the module docstring); rows in file order."""

    index: np.ndarray
    warmup: np.ndarray
    ok: np.ndarray  # status == "ok"
    t: dict[str, np.ndarray]
    n: dict[str, np.ndarray]  # COUNT_FIELDS
    retries: np.ndarray
    conn_reused: np.ndarray  # int8: 1 kept-alive, 0 new, -1 none obtained
    cat: dict[str, Categorical]  # status, finish_reason, error_kind, token_count_source
    tags: dict[str, Categorical]
    notes: tuple[np.ndarray, list[str]]  # (row, note) for every count note
    chunks_read: np.ndarray  # the row's chunk arrays were handed to the reducers
    reducers: tuple[Any, ...] = ()
    skipped_lines: int = 0
    chunk_stride: int = 1  # chunk arrays were read for every chunk_stride-th line only

    def __len__(self) -> int:
        return len(self.index)

    @classmethod
    def of_times(
        cls, t: dict[str, np.ndarray], n: dict[str, np.ndarray], conn_reused: np.ndarray | None = None
    ) -> RequestColumns:
        """Columns of successful measured requests from time and count arrays alone (e.g. a live window)."""
        size = len(next(iter(t.values())))
        empty = Categorical(np.full(size, -1, dtype=np.int32), [])
        return cls(
            index=np.arange(size), warmup=np.zeros(size, dtype=bool), ok=np.ones(size, dtype=bool),
            t={k: t.get(k, np.full(size, np.nan)) for k in TIME_FIELDS},
            n={k: n.get(k, np.full(size, np.nan)) for k in COUNT_FIELDS},
            retries=np.zeros(size, dtype=np.int64),
            conn_reused=conn_reused if conn_reused is not None else np.full(size, -1, dtype=np.int8),
            cat={name: empty for name, _ in _CATEGORICAL_FIELDS}, tags={},
            notes=(np.empty(0, dtype=np.int64), []), chunks_read=np.zeros(size, dtype=bool),
        )  # fmt: skip

    @property
    def measured(self) -> np.ndarray:
        return ~self.warmup

    @property
    def measured_ok(self) -> np.ndarray:
        return self.ok & ~self.warmup

    def ms(self, a: str, b: str) -> np.ndarray:
        """Time from field ``a`` to field ``b`` in ms for every row (NaN where either is missing)."""
        return (self.t[b] - self.t[a]) / 1e6

    @property
    def status(self) -> Categorical:
        return self.cat["status"]

    @property
    def finish(self) -> Categorical:
        return self.cat["finish_reason"]

    @property
    def error_kind(self) -> Categorical:
        return self.cat["error_kind"]

    def tags_of(self, i: int) -> dict[str, Any]:
        """The workload tags of row ``i``, as the record had them."""
        return {k: c.values[int(c.codes[i])] for k, c in self.tags.items() if c.codes[i] >= 0}

    def tag_values(self, key: str) -> list[Any]:
        """Per row: its value of tag ``key``, or None."""
        c = self.tags.get(key)
        if c is None:
            return [None] * len(self)
        return [None if x < 0 else c.values[x] for x in c.codes.tolist()]

    def int_or_none(self, name: str, i: int) -> int | None:
        """One row's time or count as the record's int (None where missing)."""
        col = self.t[name] if name in self.t else self.n[name]
        v = col[i]
        return None if math.isnan(v) else int(v)


class _RequestBuilder:
    """Turns record dicts into columns, a block at a time, and feeds their chunks to the reducers."""

    def __init__(self, reducers: Iterable[Any]) -> None:
        self.reducers = tuple(reducers)
        self.chunk_reducers = tuple(r for r in self.reducers if hasattr(r, "add"))
        self.record_reducers = tuple(r.add_record for r in self.reducers if hasattr(r, "add_record"))
        self.rows = 0
        self.parts: list[dict[str, np.ndarray]] = []
        self.cats = {name: Codes() for name, _ in _CATEGORICAL_FIELDS}
        self.tag_codes: dict[str, tuple[list[int], Codes]] = {}
        self.note_rows: list[int] = []
        self.note_text: list[str] = []
        self._new_block()
        self._new_chunks()

    def _new_block(self) -> None:
        self.b: dict[str, list[Any]] = {
            k: []
            for k in (*TIME_FIELDS, *COUNT_FIELDS, "index", "warmup", "retries", "conn_reused", "chunks_read")
        }
        self.bcat: dict[str, list[int]] = {name: [] for name, _ in _CATEGORICAL_FIELDS}

    def _new_chunks(self) -> None:
        self.c_rows: list[int] = []
        self.c_lens: list[int] = []
        self.c_t: list[int] = []
        self.c_k: list[int] = []
        self.c_ok: list[bool] = []

    def add(self, d: dict[str, Any]) -> None:
        b = self.b
        row = self.rows
        self.rows += 1
        get = d.get
        for add_record in self.record_reducers:
            add_record(d)
        for k in TIME_FIELDS:
            b[k].append(get(k))
        for k in COUNT_FIELDS:
            b[k].append(get(k))
        b["index"].append(get("index", -1))
        warm = bool(get("warmup"))
        b["warmup"].append(warm)
        b["retries"].append(get("retries") or 0)
        reused = get("conn_reused")
        b["conn_reused"].append(-1 if reused is None else int(bool(reused)))
        for name, default in _CATEGORICAL_FIELDS:
            self.bcat[name].append(self.cats[name].code(get(name, default)))
        tags = get("tags")
        if tags:
            for key, v in tags.items():
                slot = self.tag_codes.get(key)
                if slot is None:
                    slot = self.tag_codes[key] = ([], Codes())
                slot[0].append(row)
                slot[1].codes.append(slot[1].code(v))
        notes = get("count_notes")
        if notes:
            for note in notes:
                self.note_rows.append(row)
                self.note_text.append(note)
        if "chunk_ns" in d:
            b["chunks_read"].append(True)
            ts = d["chunk_ns"] or []
            ks = get("chunk_tokens") or []
            if ts and len(ts) == len(ks):
                self.c_rows.append(row)
                self.c_lens.append(len(ts))
                self.c_t.extend(ts)
                self.c_k.extend(ks)
                self.c_ok.append(get("status", "ok") == "ok" and not warm)
                if len(self.c_t) >= BLOCK_CHUNKS:
                    self._flush_chunks()
        else:
            b["chunks_read"].append(False)
        if len(b["index"]) >= BLOCK_ROWS:
            self._flush_rows()

    def _flush_chunks(self) -> None:
        if self.c_rows and self.chunk_reducers:
            block = ChunkBlock(
                rows=np.asarray(self.c_rows, dtype=np.int64),
                lens=np.asarray(self.c_lens, dtype=np.int64),
                t=np.asarray(self.c_t, dtype=np.int64),
                k=np.asarray(self.c_k, dtype=np.int64),
                measured_ok=np.asarray(self.c_ok, dtype=bool),
            )
            for r in self.chunk_reducers:
                r.add(block)
        self._new_chunks()

    def _flush_rows(self) -> None:
        b = self.b
        if not b["index"]:
            return
        part = {k: float_col(b[k]) for k in (*TIME_FIELDS, *COUNT_FIELDS)}
        part["index"] = np.asarray(b["index"], dtype=np.int64)
        part["warmup"] = np.asarray(b["warmup"], dtype=bool)
        part["retries"] = np.asarray(b["retries"], dtype=np.int64)
        part["conn_reused"] = np.asarray(b["conn_reused"], dtype=np.int8)
        part["chunks_read"] = np.asarray(b["chunks_read"], dtype=bool)
        for name, codes in self.bcat.items():
            part["cat:" + name] = np.asarray(codes, dtype=np.int32)
        self.parts.append(part)
        self._new_block()

    def finish(self, skipped: int = 0, stride: int = 1) -> RequestColumns:
        self._flush_rows()
        self._flush_chunks()
        n = self.rows

        def col(key: str, dtype: Any) -> np.ndarray:
            if not self.parts:
                return np.empty(0, dtype=dtype)
            return np.concatenate([p[key] for p in self.parts]).astype(dtype, copy=False)

        tags = {}
        for key, (rows, codes) in self.tag_codes.items():
            dense = np.full(n, -1, dtype=np.int32)
            dense[np.asarray(rows, dtype=np.int64)] = np.asarray(codes.codes, dtype=np.int32)
            tags[key] = Categorical(dense, codes.values)
        cols = RequestColumns(
            index=col("index", np.int64),
            warmup=col("warmup", bool),
            ok=np.zeros(0, dtype=bool),
            t={k: col(k, np.float64) for k in TIME_FIELDS},
            n={k: col(k, np.float64) for k in COUNT_FIELDS},
            retries=col("retries", np.int64),
            conn_reused=col("conn_reused", np.int8),
            cat={name: Categorical(col("cat:" + name, np.int32), c.values) for name, c in self.cats.items()},
            tags=tags,
            notes=(np.asarray(self.note_rows, dtype=np.int64), self.note_text),
            chunks_read=col("chunks_read", bool),
            reducers=self.reducers,
            skipped_lines=skipped,
            chunk_stride=stride,
        )
        cols.ok = cols.cat["status"].equals("ok")
        for r in self.reducers:
            r.finish(cols)
        return cols


def read_requests(
    path: str | os.PathLike[str],
    *,
    reducers: Iterable[Any] = (),
    chunks: bool = True,
    chunk_sample_bytes: int | None = None,
) -> RequestColumns:
    """``requests.jsonl`` as :class:`RequestColumns`, in one pass: its chunks handed to ``reducers`` block by block,
    each record to those that read records (:class:`RecordReducer`); every reducer finishes with the columns.

    ``chunks=False`` cuts every line's chunk arrays out before parsing (3-10x faster; for what needs no chunks).
    ``chunk_sample_bytes``: a file larger than that has its chunk arrays read for every ``stride``-th line only
    (``stride = ceil(size / chunk_sample_bytes)``, kept as ``chunk_stride``); the others are cut before parsing.
    """
    path = Path(path)
    stride = 1
    if not chunks:
        stride = 0
    elif chunk_sample_bytes is not None:
        stride = max(1, math.ceil(path.stat().st_size / max(chunk_sample_bytes, 1)))
    b = _RequestBuilder(reducers)
    lines = RecordLines(path, stride)
    for d in lines:
        b.add(d)
    return b.finish(lines.skipped, max(stride, 1) if chunks else 0)


def from_records(records: Iterable[Any], *, reducers: Iterable[Any] = ()) -> RequestColumns:
    """Columns of records already in memory (``RequestRecord`` objects), exactly as if read from their file."""
    b = _RequestBuilder(reducers)
    for r in records:
        b.add(record_dict(r))
    return b.finish()
