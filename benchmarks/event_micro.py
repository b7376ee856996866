"""In-process cost of a one-token event, by phase: what loadgen's Python adds on top of the event loop and kernel.

Feeds ``http11.Conn`` the exact bytes ``fast_server.py --mode timed`` writes (a head, then one chunk-framed SSE
event per read, the tail in one read), interleaved over ``--streams`` connections as they arrive in the 360 req/s
scenario, then runs what a finished response costs: the last de-framing step, the SSE parse into the record
(``apply_stream``) and the record's JSON line. CPU time (``process_time``), the best of ``--repeats``; us per
token event. ``--src DIR`` measures another checkout's loadgen (e.g. main's, from ``git archive``).

    python benchmarks/event_micro.py [--streams 300] [--tokens 130] [--repeats 7] [--src DIR]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


class _NoPool:
    def forget(self, c: object) -> None:
        pass


def streams_bytes(n_streams: int, tokens: int) -> list[list[bytes]]:
    """Per stream, its reads as the timed fast server writes them (continuous usage, vLLM-shaped events)."""
    from fast_server import _STREAM_HEAD, ID_PLACEHOLDER, Templates

    tpl = Templates()
    out = []
    for rid in range(n_streams):
        cid = b"chatcmpl-%032x" % rid
        reads = [_STREAM_HEAD + str(rid).encode() + b"\r\n\r\n"]
        for k in range(1, tokens + 1):
            data = tpl.token(40, k, True)
            if k == tokens:
                data += tpl.tail(40, tokens)
            reads.append(data.replace(ID_PLACEHOLDER, cid))
        out.append(reads)
    return out


def run_once(streams: list[list[bytes]]) -> dict[str, float]:
    from loadgen.records.record import RequestRecord
    from loadgen.wire.http11 import Conn
    from loadgen.wire.stream import apply_stream

    conns = []
    for _ in streams:
        c = Conn(_NoPool())  # type: ignore[arg-type]
        conns.append(c)
    pt = time.process_time
    gc.disable()
    t = pt()
    n_reads = len(streams[0])
    for k in range(n_reads):  # every stream's k-th read, then the (k+1)-th: interleaved as on the wire
        for c, reads in zip(conns, streams, strict=True):
            c.data_received(reads[k])
    t_read = pt() - t
    t = pt()
    bodies = [c.body_reads() for c in conns]
    t_deframe = pt() - t
    recs = []
    t = pt()
    for b in bodies:
        rec = RequestRecord(index=0)
        apply_stream(rec, b)
        recs.append(rec)
    t_parse = pt() - t
    t = pt()
    for rec in recs:
        rec.to_json()
    t_json = pt() - t
    gc.enable()
    events = sum(len(r.chunk_ns) for r in recs)
    assert all(r.status == "ok" for r in recs), recs[0].error_message
    assert all(c.state == 2 for c in conns)
    return {
        "read": t_read,
        "deframe_end": t_deframe,
        "parse": t_parse,
        "record_json": t_json,
        "events": events,
    }


def main() -> None:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__)
    p.add_argument("--streams", type=int, default=300)
    p.add_argument("--tokens", type=int, default=130)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--src", type=Path, help="another checkout whose loadgen is measured")
    args = p.parse_args()
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str((args.src or HERE.parent).resolve()))
    streams = streams_bytes(args.streams, args.tokens)
    runs = [run_once(streams) for _ in range(args.repeats)]
    events = runs[0]["events"]
    best = {
        k: min(r[k] for r in runs) / events * 1e6 for k in ("read", "deframe_end", "parse", "record_json")
    }
    best["total"] = sum(best.values())
    import loadgen

    print(
        json.dumps(
            {"src": str(Path(loadgen.__file__).parent), "events": events}
            | {f"{k}_us_per_event": round(v, 3) for k, v in best.items()}
        )
    )


if __name__ == "__main__":
    main()
