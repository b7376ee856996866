"""HTTP/1.1 chunked transfer coding, undone after the bytes arrived, in batches of reads.

``http11.Conn`` only stamps and keeps each read; ``undo_chunking`` turns the kept reads into the body's payloads,
each stamped with the read that carried it, a batch at a time. A response streamed a token per write arrives as
one read per chunk (``1a3\r\ndata: {...}\n\n\r\n``): such a read is checked and sliced directly (its size
line is searched in its first 10 bytes only); a read of several whole chunks is checked with one ``split`` and a
few ``map`` passes (``whole_chunks``); anything else (a read cut inside a chunk, chunk extensions, trailers, a
payload holding CRLF, bytes after the last chunk) goes through the byte-level state machine, which accepts every
valid framing.
"""

from __future__ import annotations

from itertools import repeat

__all__ = ["undo_chunking", "whole_chunks"]

# dechunker states: reading a size line, inside chunk data, reading trailer lines
SIZE, DATA, TRAILER = 0, 1, 2
# what undo_chunking found: more to come, the terminating chunk (and trailers), or that and bytes after it
MORE, ENDED, ENDED_WITH_EXTRA = 0, 1, 2

_HEX = repeat(16)


def whole_chunks(data: bytes) -> tuple[bytes, bool] | None:
    """Fast path for a read that holds only whole chunks: (payload, ends with the last chunk) or None.

    One chunk (a token per write, the usual case) is sliced directly; several are checked with ``split`` and
    ``map`` so the per-chunk work stays in C. A size that does not match its payload's length (a payload holding
    CRLF, a read cut mid-chunk, chunk extensions, trailers) falls back to the state machine.
    """
    if data[-2:] != b"\r\n":
        return None
    j = data.find(b"\r\n", 0, 10)
    if j > 0:
        try:
            size = int(data[:j], 16)
        except ValueError:
            return None
        if j + size + 4 == len(data):
            return data[j + 2 : -2], size == 0
    parts = data[:-2].split(b"\r\n")
    if len(parts) & 1:
        return None
    sizes = parts[0::2]
    payloads = parts[1::2]
    try:
        lens = list(map(int, sizes, _HEX))
    except ValueError:
        return None
    if lens != list(map(len, payloads)):
        return None
    last = lens[-1] == 0
    if 0 in lens and (not last or lens.index(0) != len(lens) - 1):
        return None
    return b"".join(payloads), last


def _deframe(data: bytes, cs: int, need: int, line: bytes) -> tuple[list[bytes], int, int, bytes, int]:
    """One read that is not a run of whole chunks, byte by byte through the framing: its payload pieces, the new
    (state, bytes due, partial line) and whether the body ended in it (the slow path: a chunk cut across reads)."""
    pos, n = 0, len(data)
    pieces: list[bytes] = []
    end = MORE
    while pos < n:
        if cs == DATA:
            stop = pos + need
            if stop <= n:
                pieces.append(data[pos:stop])
                pos = stop
                need = 0
                cs = SIZE
            else:
                pieces.append(data[pos:])
                need -= n - pos
                pos = n
            continue
        j = data.find(b"\n", pos)
        if j < 0:
            line += data[pos:]
            break
        if line:
            text = (line + data[pos:j]).strip()
            line = b""
        else:
            text = data[pos:j].strip()
        pos = j + 1
        if cs == SIZE:
            if not text:
                continue  # the CRLF that closes a chunk's data
            size = int(text.split(b";", 1)[0], 16)
            if size:
                need = size
                cs = DATA
            else:
                cs = TRAILER
        elif not text:  # blank line after the trailers: the body is complete
            end = ENDED_WITH_EXTRA if pos < n else ENDED
            break
    return pieces, cs, need, line, end


def undo_chunking(
    read_ns: list[int],
    reads: list[bytes],
    di: int,
    state: tuple[int, int, bytes],
    out: list[tuple[int, bytes]],
) -> tuple[int, tuple[int, int, bytes], int]:
    """Undo the framing of ``reads[di:]`` onto ``out`` as (stamp, payload); returns (reads done, state, end).

    ``state`` is (dechunker state, bytes still due in the current chunk, a size or trailer line read so far);
    ``end`` is MORE, ENDED (the terminating chunk and any trailers were read) or ENDED_WITH_EXTRA (and bytes
    followed them in the same read). Raises ValueError on a malformed chunk size.
    """
    cs, need, line = state
    if di >= len(reads):
        return di, state, MORE
    append = out.append
    end = MORE
    for ts, data in zip(read_ns[di:], reads[di:], strict=True):
        di += 1
        if cs == SIZE and not line:
            # one whole chunk (a token per write): its size line, payload and CRLF, sliced here directly
            j = data.find(b"\r\n", 0, 10)
            if j > 0 and data.endswith(b"\r\n"):
                try:
                    size = int(data[:j], 16)
                except ValueError:
                    size = -1
                if j + size + 4 == len(data):
                    if size > 0:
                        append((ts, data[j + 2 : -2]))
                        continue
                    if size == 0:
                        end = ENDED
                        break
            fast = whole_chunks(data)
            if fast is not None:
                payload, last = fast
                if payload:
                    append((ts, payload))
                if last:
                    end = ENDED
                    break
                continue
        pieces, cs, need, line, end = _deframe(data, cs, need, line)
        if pieces:
            append((ts, pieces[0] if len(pieces) == 1 else b"".join(pieces)))
        if end:
            break
    return di, (cs, need, line), end
