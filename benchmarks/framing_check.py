"""Self-check of the client's HTTP/1.1 body reader on awkward framing (not a timing benchmark).

Feeds a streamed response to ``loadgen.wire.http11.Conn`` byte by byte and cut at random places, with chunk
extensions and trailers, and checks every variant completes and parses to the same tokens; a body without its
terminating chunk must not complete. Run before trusting benchmark numbers after a change to ``client.py``.

    python benchmarks/framing_check.py
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fast_server import Templates  # noqa: E402

from loadgen.records.record import RequestRecord  # noqa: E402
from loadgen.wire.http11 import DONE as _DONE  # noqa: E402
from loadgen.wire.http11 import Conn as _Conn  # noqa: E402
from loadgen.wire.stream import apply_stream  # noqa: E402

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
TOKENS = 40


class _NoPool:
    def forget(self, c: _Conn) -> None:
        pass


def feed(full: bytes, cuts: list[int]) -> _Conn:
    c = _Conn(_NoPool())
    pos = 0
    for cut in [*cuts, len(full)]:
        if cut > pos:
            c.data_received(full[pos:cut])
            pos = cut
    return c


def main() -> int:
    raw = Templates().burst(64, TOKENS, True)
    variants = {
        "plain": HEAD + raw,
        "chunk extensions": HEAD + raw.replace(b"\r\ndata", b";x=1\r\ndata", 3),
        "trailers": HEAD + raw[:-2] + b"X-T: 1\r\n\r\n",
    }
    rng = random.Random(1)
    checked = 0
    for name, full in variants.items():
        for trial in range(300):
            if trial == 0:
                cuts = list(range(1, len(full)))  # byte by byte
            else:
                cuts = sorted(rng.sample(range(1, len(full)), rng.choice([1, 2, 5, 30])))
            c = feed(full, cuts)
            assert c.state == _DONE, f"{name}: response not complete (trial {trial})"
            rec = RequestRecord(index=0)
            apply_stream(rec, c.body_reads())
            assert rec.status == "ok" and sum(rec.chunk_tokens) == TOKENS, (name, trial, rec.error_message)
            checked += 1
        c = feed(full[:-5], [len(HEAD) + 7])
        assert c.state != _DONE, f"{name}: completed without the terminating chunk"
    print(f"framing_check: {checked} framings ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
