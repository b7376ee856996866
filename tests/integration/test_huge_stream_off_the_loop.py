"""A very long stream's record is filled off the event loop, and equals the one filled on it (issue 18 item 5).

Filling the record of a 100k-chunk stream (token counts, reasoning tokens, the text) held the loop 10-20 ms in one
go while other streams' reads waited to be stamped; it runs on a worker thread now. The loop stays free meanwhile:
a callback scheduled while the fill runs is served before the fill returns. (The stall itself, in ms under load,
is measured in benchmarks/huge_body_stamps.py.)
"""

from __future__ import annotations

import asyncio
import threading

from loadgen.records.record import RequestRecord, record_dict
from loadgen.wire import stream
from tests.scripted_server import DONE, chat_chunk, usage_chunk

N = 30_000


def _reads() -> list[tuple[int, bytes]]:
    def cum(c: int) -> dict[str, int]:
        return {"prompt_tokens": 4, "completion_tokens": c, "total_tokens": 4 + c}

    body = chat_chunk(role=True, usage=cum(0))
    body += b"".join(chat_chunk(reasoning="r", usage=cum(i + 1)) for i in range(N // 2))
    body += b"".join(chat_chunk(content="c ", usage=cum(N // 2 + i + 1)) for i in range(N // 2))
    body += chat_chunk(finish="stop", usage=cum(N)) + usage_chunk(4, N) + DONE
    return [(i, body[j : j + 100_000]) for i, j in enumerate(range(0, len(body), 100_000))]


def test_a_huge_streams_record_is_filled_on_a_worker_thread_while_the_loop_serves_others(monkeypatch):
    reads = _reads()
    on_loop = RequestRecord(index=0)
    stream.apply_stream(on_loop, reads)
    assert on_loop.completion_tokens == N and len(on_loop.chunk_ns) == N > stream.FILL_ON_THREAD_CHUNKS

    fill = stream.fill_record
    seen: dict[str, object] = {}

    def watched_fill(rec, acc, keep_text):
        seen["thread"] = threading.current_thread()
        served = threading.Event()
        seen["loop"].call_soon_threadsafe(served.set)  # type: ignore[attr-defined]
        seen["served_while_filling"] = served.wait(30)  # the loop runs this callback while the fill is busy
        fill(rec, acc, keep_text)

    monkeypatch.setattr(stream, "fill_record", watched_fill)

    async def main() -> RequestRecord:
        seen["loop"] = asyncio.get_running_loop()
        rec = RequestRecord(index=0)
        await stream.apply_stream_async(rec, reads)
        return rec

    rec = asyncio.run(main())
    assert seen["thread"] is not threading.main_thread()
    assert seen["served_while_filling"] is True
    assert record_dict(rec) == record_dict(on_loop)
