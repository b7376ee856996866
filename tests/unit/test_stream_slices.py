"""A stream parsed in slices gives exactly the record parsed whole (issue 11: parsing must not hold the loop)."""

import asyncio
import random
from dataclasses import asdict

import pytest

from loadgen.records.record import RequestRecord
from loadgen.wire import stream
from loadgen.wire.stream import apply_stream, apply_stream_async, slices
from tests.scripted_server import DONE, chat_chunk, usage_chunk


def cum(c):
    return {"prompt_tokens": 7, "completion_tokens": c, "total_tokens": 7 + c}


def events(n=60, continuous=True):
    out = [chat_chunk(role=True, usage=cum(0) if continuous else None)]
    for i in range(n):
        kw = {"reasoning": f"r{i}"} if i < n // 2 else {"content": f"c{i}"}
        out.append(chat_chunk(**kw, usage=cum(i + 1) if continuous else None))
    out.append(
        chat_chunk(finish="stop", usage=cum(n) if continuous else None) + usage_chunk(7, n + 3, n // 2)
    )
    return out + [DONE]


def framings():
    rng = random.Random(7)
    evs = events()
    blob = b"".join(evs)
    yield "one event per read", [(1000 * (i + 1), e) for i, e in enumerate(evs)]
    cuts = sorted(rng.sample(range(1, len(blob)), 40))
    yield (
        "cut anywhere",
        [
            (1000 * (i + 1), blob[a:b])
            for i, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(blob)], strict=True))
        ],
    )
    crlf = blob.replace(b"\n", b"\r\n")
    cuts = sorted(rng.sample(range(1, len(crlf)), 30))
    yield (
        "crlf, cut anywhere",
        [
            (10 * (i + 1), crlf[a:b])
            for i, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(crlf)], strict=True))
        ],
    )
    yield (
        "comments and event lines",
        [
            (1, b": keep-alive\n\n"),
            *[(2 + i, e) for i, e in enumerate(events(20, continuous=False))],
            (99, b'event: error\ndata: {"error":{"message":"late"}}\n\n'),
        ],
    )
    yield "one big read", [(5, blob)]


def record(reads, limit, monkeypatch):
    monkeypatch.setattr(stream, "SLICE_BYTES", limit)
    rec = RequestRecord(index=0)
    apply_stream(rec, reads)
    return asdict(rec)


@pytest.mark.parametrize("limit", [1, 64, 300, 1000])
@pytest.mark.parametrize(("name", "reads"), list(framings()))
def test_sliced_parse_equals_whole_parse(name, reads, limit, monkeypatch):
    whole = record(reads, 1 << 40, monkeypatch)
    assert whole["status"] in ("ok", "error") and whole["chunk_ns"]
    assert record(reads, limit, monkeypatch) == whole, name


def test_slices_end_on_event_boundaries_and_keep_every_byte_and_stamp():
    blob = b"".join(events(200))
    reads = [(i, blob[j : j + 700]) for i, j in enumerate(range(0, len(blob), 700))]
    runs = list(slices(reads, 2000))
    assert len(runs) > 5
    assert b"".join(d for run in runs for _, d in run) == blob
    assert all(b"".join(d for _, d in run).endswith(b"\n\n") for run in runs)
    # a cut read keeps its time on both sides
    stamps = [ts for run in runs for ts, _ in run]
    assert sorted(set(stamps)) == [ts for ts, _ in reads]


def test_async_parse_yields_to_the_loop_between_slices(monkeypatch):
    """Another task runs between the slices of a long stream's parse, and the record is the same."""
    monkeypatch.setattr(stream, "SLICE_BYTES", 2048)
    reads = [(i, e) for i, e in enumerate(events(400))]
    ticks = 0

    async def main():
        nonlocal ticks
        done = False

        async def ticker():
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0)

        t = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        rec = RequestRecord(index=0)
        start = ticks
        await apply_stream_async(rec, reads)
        during = ticks - start
        done = True
        await t
        return rec, during

    rec, during = asyncio.run(main())
    whole = RequestRecord(index=0)
    apply_stream(whole, reads)
    assert asdict(rec) == asdict(whole)
    n_slices = len(list(slices(reads, 2048)))
    assert n_slices > 20 and during >= n_slices - 1
