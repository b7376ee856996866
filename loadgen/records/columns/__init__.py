"""A run's files as numpy columns: ``requests.jsonl`` and ``server_metrics.jsonl``, read in blocks.

This is the one reader of both files: everything that computes from them (the summary, the report, compare, sweep,
the server summary) goes through it, so a field is parsed one way everywhere. ``requests.jsonl``'s lines are parsed
by :class:`RecordLines` (``columns.records``) alone; a finished run parses them once: what needs whole records (the
answers' text for accuracy, llama.cpp's timings) is a *record reducer* fed in the same pass as the columns, and the
run's report reuses the columns. :func:`iter_records` yields records one at a time from the same parser (for
``RunResult.records`` and users). Modules: :mod:`~loadgen.records.columns.requests`,
:mod:`~loadgen.records.columns.server`, and their building blocks in :mod:`~loadgen.records.columns.arrays`.

``requests.jsonl`` becomes :class:`RequestColumns`: one row per record, in file order; times as float64 ns since
t0 (NaN where never reached: exact up to 2^53 ns, 104 days), token counts as float64 (NaN for None), strings as
:class:`Categorical` codes, workload tags as one categorical column per tag key. The per-chunk arrays (``chunk_ns``,
``chunk_tokens``: 90 % of a file's bytes) are never kept: they are handed, a bounded block at a time, to the
*reducers* the caller passes (``loadgen.analysis.metrics.ChunkStats``: ITL and tokens per chunk; the report's token bins),
so memory is the columns (~150 bytes a request) plus one block, whatever the file's size. Python objects exist only
for the lines of the current block (``BLOCK_ROWS`` rows, ``BLOCK_CHUNKS`` chunk values).

``server_metrics.jsonl`` becomes :class:`ServerColumns`: the successful scrapes in time order, and per series
(vocabulary name, label string) the sample indices and values; histograms as 2-D arrays of cumulative counts.
The aggregation semantics (gauges, reset-corrected counters, histogram deltas) live in
:mod:`loadgen.scrape.series`, built on these columns.

Torn lines (a run killed mid-write) and scrape error lines are skipped and counted (``skipped_lines``).
"""

from loadgen.records.columns.arrays import BLOCK_ROWS, Categorical
from loadgen.records.columns.records import RecordLines, iter_records, read_records
from loadgen.records.columns.requests import (
    BLOCK_CHUNKS,
    COUNT_FIELDS,
    TIME_FIELDS,
    ChunkBlock,
    ChunkReducer,
    RecordReducer,
    RequestColumns,
    from_records,
    read_requests,
)
from loadgen.records.columns.server import HistRows, ServerColumns, read_server

__all__ = [
    "iter_records",
    "read_records",
    "BLOCK_CHUNKS",
    "BLOCK_ROWS",
    "COUNT_FIELDS",
    "TIME_FIELDS",
    "Categorical",
    "ChunkBlock",
    "ChunkReducer",
    "HistRows",
    "RecordLines",
    "RecordReducer",
    "RequestColumns",
    "ServerColumns",
    "from_records",
    "read_requests",
    "read_server",
]
