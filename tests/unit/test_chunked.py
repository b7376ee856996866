"""The chunked de-framing (loadgen.wire.chunked) and the SSE fast split's stamps, on awkward reads."""

from __future__ import annotations

import random

import pytest

from loadgen.records.record import RequestRecord
from loadgen.wire.chunked import ENDED, ENDED_WITH_EXTRA, MORE, SIZE, undo_chunking, whole_chunks
from loadgen.wire.stream import apply_stream

START = (SIZE, 0, b"")


def chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def event(i: int, n: int = 0) -> bytes:
    return (
        b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
        b'"delta":{"content":"t%d"},"finish_reason":null}],"usage":{"prompt_tokens":3,"completion_tokens":%d}}\n\n'
        % (i, n or i)
    )


TAIL = (
    b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
    b'"delta":{"content":""},"finish_reason":"length"}]}\n\n'
)


def dechunk_all(reads: list[bytes], step: int = 0) -> tuple[list[tuple[int, bytes]], int]:
    """Undo the framing of ``reads`` (stamped 0, 1, ...), in batches of ``step`` reads (0: all at once)."""
    stamps = list(range(len(reads)))
    out: list[tuple[int, bytes]] = []
    di, state, end = 0, START, MORE
    for upto in range(step or len(reads), len(reads) + (step or len(reads)), step or len(reads)):
        di, state, end = undo_chunking(stamps[:upto], reads[:upto], di, state, out)
        if end:
            break
    return out, end


def test_one_chunk_per_read_keeps_each_read_stamp() -> None:
    payloads = [event(i) for i in range(1, 40)]
    reads = [chunk(p) for p in payloads] + [b"0\r\n\r\n"]
    out, end = dechunk_all(reads, step=7)
    assert end == ENDED
    assert [d for _, d in out] == payloads
    assert [t for t, _ in out] == list(range(len(payloads)))


@pytest.mark.parametrize("seed", range(20))
def test_any_cut_gives_the_same_body(seed: int) -> None:
    rng = random.Random(seed)
    body = b"".join(chunk(event(i)) for i in range(1, 30)) + chunk(TAIL) + b"0\r\n\r\n"
    cuts = sorted(rng.sample(range(1, len(body)), rng.choice([1, 3, 17, 80])))
    reads = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    out, end = dechunk_all(reads, step=rng.choice([0, 1, 5]))
    assert end == ENDED
    assert b"".join(d for _, d in out) == b"".join(event(i) for i in range(1, 30)) + TAIL
    stamps = [t for t, _ in out]
    assert stamps == sorted(stamps)


def test_extensions_trailers_and_bytes_after_the_end() -> None:
    body = b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n"
    out, end = dechunk_all([body])
    assert (b"".join(d for _, d in out), end) == (b"hello", ENDED)
    out, end = dechunk_all([chunk(b"hello") + b"0\r\n\r\nHTTP/1.1"])
    assert (b"".join(d for _, d in out), end) == (b"hello", ENDED_WITH_EXTRA)
    out, end = dechunk_all([chunk(b"hello"), b"0\r\n"])
    assert end == MORE


def test_bad_size_raises() -> None:
    with pytest.raises(ValueError):
        dechunk_all([b"zz\r\nhello\r\n", b"0\r\n\r\n", b"x"])


def test_whole_chunks() -> None:
    assert whole_chunks(chunk(b"abc")) == (b"abc", False)
    assert whole_chunks(chunk(b"ab") + chunk(b"cd") + b"0\r\n\r\n") == (b"abcd", True)
    assert whole_chunks(chunk(b"a\r\nb")) == (b"a\r\nb", False)  # one chunk: its size says where it ends
    assert (
        whole_chunks(chunk(b"a\r\nb") + chunk(b"c")) is None
    )  # several: a CRLF in a payload is not split on
    assert whole_chunks(b"3\r\nabc") is None  # cut before its CRLF
    assert whole_chunks(chunk(b"ab") + b"0\r\n\r\n" + chunk(b"cd")) is None  # the last chunk in the middle


def _stream_record(reads: list[tuple[int, bytes]]) -> RequestRecord:
    rec = RequestRecord(index=0)
    apply_stream(rec, reads)
    return rec


def test_fast_split_stamps_one_event_per_read_and_a_tail_of_several() -> None:
    n = 20
    reads = [(100 + i, event(i)) for i in range(1, n + 1)]
    reads.append(
        (999, TAIL + b'data: {"choices":[],"usage":{"completion_tokens":%d}}\n\ndata: [DONE]\n\n' % n)
    )
    rec = _stream_record(reads)
    assert rec.status == "ok", rec.error_message
    assert rec.chunk_ns == [100 + i for i in range(1, n + 1)]
    assert rec.chunk_tokens == [1] * n


def test_fast_split_stamps_a_read_of_two_events_in_the_middle() -> None:
    reads = [(10, event(1)), (20, event(2) + event(3)), (30, event(4))]
    reads += [(40 + i, event(i)) for i in range(5, 15)]
    reads.append((99, TAIL + b"data: [DONE]\n\n"))
    rec = _stream_record(reads)
    assert rec.status == "ok", rec.error_message
    assert rec.chunk_ns[:4] == [10, 20, 20, 30]
    assert rec.chunk_ns[4:] == [40 + i for i in range(5, 15)]
    assert rec.output_text == "".join(f"t{i}" for i in range(1, 15))
