"""Micro-benchmark of the post-hoc path for one 256-token burst response: de-chunk + SSE parse + record fill.

python benchmarks/parse_micro.py
"""

from __future__ import annotations

import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fast_server import Templates  # noqa: E402

from loadgen.records.record import RequestRecord  # noqa: E402
from loadgen.wire.http11 import Conn as _Conn  # noqa: E402
from loadgen.wire.stream import apply_stream  # noqa: E402


class _NoPool:
    def forget(self, c):
        pass


def raw_response(tokens: int = 256) -> bytes:
    return Templates().burst(64, tokens, True)


def one(raw: bytes, read_size: int) -> RequestRecord:
    c = _Conn(_NoPool())
    c.state = 1
    c.framing = 0
    for i in range(0, len(raw), read_size):
        c._body(1000 + i, raw[i : i + read_size])
    rec = RequestRecord(index=0)
    apply_stream(rec, c.body_reads())
    return rec


def main() -> None:
    raw = raw_response()
    rec = one(raw, 65536)
    assert rec.status == "ok" and sum(rec.chunk_tokens) == 256, (rec.status, rec.error_message)
    for rs in (len(raw), 16384):
        n = 400
        t = (
            min(timeit.repeat(lambda rs=rs: one(raw, rs), number=20, repeat=n // 20, timer=time.process_time))
            / 20
        )
        print(f"read size {rs}: {t * 1e6:.0f} us per response, {t / 256 * 1e6:.3f} us per token")


if __name__ == "__main__":
    main()
