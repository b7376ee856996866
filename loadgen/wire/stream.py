"""Turn the timestamped raw reads of one streamed response into token events on its record.

The client only timestamps bytes as they arrive; this runs once the stream is over, so no JSON is decoded while
a response is still being read. A stream is parsed in slices of ~64 KiB cut at SSE event boundaries
(``slices``); ``apply_stream_async`` gives the event loop back between slices, so even a 100k-token response
holds the loop for only a millisecond or two at a time and every other stream's reads are stamped when they
arrive. It copes with what real servers send: several SSE events in one read and one event split across reads, CRLF or LF framing, several tokens in one chunk (speculative decoding, a server under load),
reasoning in ``delta.reasoning_content`` (DeepSeek, SGLang, older vLLM) or ``delta.reasoning`` (vLLM >= 0.10),
usage only on the final chunk or on every chunk (vLLM's ``continuous_usage_stats``), no ``[DONE]`` line
(transformers serve), error events, and a stream that simply stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

import orjson

from loadgen.errors import ErrorKind
from loadgen.records.record import RequestRecord
from loadgen.wire.token_counts import fail_record as _fail
from loadgen.wire.token_counts import fill_record

Reads = list[tuple[int, bytes]]

# parsed in one go: ~1.3 ms on a quiet core (13-30 us/KB; several times that on a busy one). A response below
# 1.5 x this (a 256-token one is ~64-80 KB) is one slice, as before; each further slice costs ~20 us of set-up.
SLICE_BYTES = 64 * 1024
# a stream with more token chunks than this has its record filled on a worker thread (~1 ms of work at this size)
FILL_ON_THREAD_CHUNKS = 8192


def slices(reads: Reads, limit: int = SLICE_BYTES) -> Iterator[Reads]:
    """The reads in runs of about ``limit`` bytes, each ending on an SSE event boundary (a blank line).

    Once a run reaches ``limit``, the read that takes it there is cut just after its next blank line; both parts
    keep the read's time. An event is stamped with the read that completes it, so the cut changes no stamp, and
    each run can be parsed on its own. A run grows past ``limit`` while no blank line comes, and takes in the
    rest of the stream when less than ``limit / 2`` would be left (so a stream below 1.5 x ``limit`` is one run).
    """
    total = sum(len(d) for _, d in reads)
    if total < limit + limit // 2:
        if reads:
            yield reads
        return
    run: Reads = []
    size = 0
    left = total  # bytes not yet in a run
    for ts, data in reads:
        while size + len(data) >= limit:
            cut = _boundary_after(data, limit - size)
            if cut < 0 or left - cut < limit // 2:
                break
            run.append((ts, data[:cut]))
            yield run
            left -= cut
            run, size = [], 0
            data = data[cut:]
        if data:
            run.append((ts, data))
            size += len(data)
            left -= len(data)
    if run:
        yield run


def _boundary_after(data: bytes, pos: int) -> int:
    """Index just past the first blank line (LF or CRLF framing) that ends at or after ``pos``; -1 if none."""
    start = max(pos - 4, 0)
    lf = data.find(b"\n\n", start)
    # a CRLF blank line that ends later than the LF one cannot be the first: don't scan the rest of a long read for
    # one (an LF-framed stream has none, and that scan was most of the cost of cutting a 20 MB body)
    crlf = data.find(b"\r\n\r\n", start, lf + 4 if lf >= 0 and lf + 2 >= pos else len(data))
    ends = [i + n for i, n in ((lf, 2), (crlf, 4)) if i >= 0 and i + n >= pos]
    return min(ends) if ends else -1


class _Acc:
    """Per-stream accumulator; plain attributes beat dict lookups in the per-event loop."""

    __slots__ = (
        "chunk_ns",
        "kinds",
        "kind_parts",
        "content_parts",
        "cum_tokens",
        "chars",
        "content",
        "reasoning_chars",
        "usage",
        "finish_reason",
        "done",
        "error",
        "first_chunk_ns",
        "continuous",
        "malformed",
        "timings",
        "prefix",
        "reasoning",
    )

    def __init__(self) -> None:
        self.chunk_ns: list[int] = []
        self.kinds: list[str] = []
        self.cum_tokens: list[int | None] = []  # cumulative completion tokens reported with each chunk
        self.chars: list[int] = []
        self.content: list[str] = []
        # kinds and content of the slices parsed so far, one string per slice: the final join stays cheap
        self.kind_parts: list[str] = []
        self.content_parts: list[str] = []
        self.reasoning_chars = 0
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.done = False
        self.error: str | None = None
        self.first_chunk_ns: int | None = None
        self.continuous = True  # every token chunk carried a cumulative usage
        self.malformed: str | None = None
        self.timings: dict[str, Any] | None = None  # llama.cpp's per-response server timings
        self.prefix = b""  # the repeated event prefix found in an earlier slice
        self.reasoning: list[str] | None = None  # reasoning text, kept only when asked (KEEP_REASONING)


def _error_text(obj: Any) -> str:
    err = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(err, dict):
        msg = err.get("message") or err.get("msg") or orjson.dumps(err).decode()
        code = err.get("code") or err.get("type")
        return f"{code}: {msg}" if code else str(msg)
    if isinstance(err, str):
        return err
    if isinstance(obj, dict) and obj.get("object") == "error":
        return str(obj.get("message", "error"))
    return str(obj)[:300]


def _handle_data(acc: _Acc, data: bytes, ts: int) -> None:
    """One SSE data payload on the general (per-event) path: decode it, then the shared per-object logic."""
    if data == b"[DONE]":
        acc.done = True
        return
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        if acc.malformed is None:
            acc.malformed = f"invalid JSON in SSE data: {data[:80]!r}"
        return
    _handle_objects(acc, [obj], [ts])


def _textless_tokens(acc: _Acc, usage: dict[str, Any], ts: int) -> None:
    """A chunk with no text whose per-chunk usage still grew: a `</think>` the reasoning parser swallowed, half
    a UTF-8 character. It is kept as a token chunk of kind 'x' so token counts and gaps stay exact."""
    ct = usage.get("completion_tokens")
    if ct is None:
        return
    last = acc.cum_tokens[-1] if acc.cum_tokens else 0
    if last is not None and int(ct) > last:
        acc.chunk_ns.append(ts)
        acc.kinds.append("x")
        acc.chars.append(0)
        acc.cum_tokens.append(int(ct))


def _handle_event(acc: _Acc, event: bytes, ts: int) -> None:
    """One SSE event (lines up to a blank line): join its data lines; note `event: error`."""
    if event.startswith(b"data:") and b"\n" not in event:
        data = event[5:]
        _handle_data(acc, data[1:] if data[:1] == b" " else data, ts)
        return
    data_lines: list[bytes] = []
    event_type = b""
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            v = line[5:]
            data_lines.append(v[1:] if v[:1] == b" " else v)
        elif line.startswith(b"event:"):
            event_type = line[6:].strip()
    if not data_lines:
        return
    data = b"\n".join(data_lines)
    if event_type == b"error":
        try:
            acc.error = _error_text(orjson.loads(data))
        except orjson.JSONDecodeError:
            acc.error = data[:300].decode(errors="replace")
        return
    _handle_data(acc, data, ts)


def split_events(reads: Reads, acc: _Acc) -> None:
    """Split reads into SSE events; each event is stamped with the read that completed it."""
    if not _split_simple(reads, acc):
        _split_general(reads, acc)


def _split_simple(reads: Reads, acc: _Acc) -> bool:
    """The shape nearly every server sends: only ``data: {json}`` events, LF framing, ``[DONE]`` last or absent.

    C-level ``bytes.split``/``join`` turn the stream's events into one JSON array, decoded by a single
    ``orjson.loads``. When every event repeats the same leading members before ``"choices"`` (``id``,
    ``object``, ``created``, ``model``), holding nothing this parser reads, they are cut before decoding: that was
    a third of the decoding work. Returns False, having changed nothing, for any other shape (CR framing,
    comments, ``event:`` lines, multi-line data, an empty event, invalid JSON): a newline left in any payload
    after the split means an event was not a single ``data:`` line.
    """
    segs: list[bytes] = []
    pts: list[int] = []
    pending = b""
    datas = list(map(_second, reads)) if len(reads) > 8 else None
    if datas and all(map(bytes.endswith, datas, repeat(b"\n\n"))):
        # many reads, none ending inside an event (a token per write): one join and one split for the whole
        # stream; an event is stamped with its read, found from each read's count of event ends
        joined = b"".join(datas)
        if b"\r" in joined or joined[:6] != b"data: ":
            return False
        segs = joined[6:-2].split(b"\n\ndata: ")
        # each read ends an event, so holds one or more; once no payload holds a newline (checked below), the
        # events are exactly the reads' blank lines: as many events as reads means one each, and as many more
        # as the last read's extra blank lines means one each but the last (the finish, usage and [DONE]
        # events of a stream's tail in one write). Counting every read's blank lines costs a pass over its bytes.
        pts = list(map(_first, reads))
        extra = len(segs) - len(pts)
        if extra and datas[-1].count(b"\n\n") == extra + 1:
            pts.extend(repeat(pts[-1], extra))
        elif extra:
            counts = list(map(bytes.count, datas, repeat(b"\n\n")))
            pts = list(chain.from_iterable(map(repeat, pts, counts)))
        if len(pts) != len(segs):
            return False
    else:
        for ts, data in reads:
            if b"\r" in data:
                return False
            buf = pending + data if pending else data
            cut = buf.rfind(b"\n\n")
            if cut < 0:
                pending = buf
                continue
            pending = buf[cut + 2 :]
            if buf[:6] != b"data: ":
                return False
            parts = buf[6:cut].split(b"\n\ndata: ")
            segs += parts
            pts += [ts] * len(parts)
    if not segs or pending.strip():
        return False
    done = False
    if segs[-1] == b"[DONE]":
        segs.pop()
        pts.pop()
        done = True
    prefix = acc.prefix  # the previous slice's: cutting it is safe wherever it starts an event
    if not (prefix and segs and segs[0].startswith(prefix)):
        prefix = acc.prefix = _repeated_prefix(segs[0]) if segs else b""
    if prefix and all(map(bytes.startswith, segs, repeat(prefix))):
        joined = b"{" + b",{".join(map(itemgetter(slice(len(prefix), None)), segs))
    else:
        joined = b",".join(segs)
    if b"\n" in joined:
        return False
    try:
        objs = orjson.loads(b"[" + joined + b"]")
    except orjson.JSONDecodeError:
        return False
    if len(objs) != len(pts):  # a payload held a top-level comma: not one JSON value per event
        return False
    acc.done = acc.done or done
    _handle_objects(acc, objs, pts)
    return True


_first = itemgetter(0)
_second = itemgetter(1)
_IGNORED_OBJECTS = frozenset({"chat.completion.chunk", "text_completion", "chat.completion"})


def _repeated_prefix(first: bytes) -> bytes:
    """``{"id":..,"object":..,"created":..,"model":..,`` of the first event if this parser may drop it.

    Only members it never reads qualify: the cut text must be a complete JSON object once closed, with no
    ``choices``, ``usage`` or ``error`` and an ``object`` that is not ``error``. It is cut only if every event
    starts with exactly these bytes.
    """
    i = first.find(b'"choices":')
    if i < 2 or first[:2] != b'{"' or first[i - 1 : i] != b",":
        return b""
    prefix = first[:i]
    try:
        head = orjson.loads(prefix[:-1] + b"}")
    except orjson.JSONDecodeError:
        return b""
    if (
        type(head) is not dict
        or "choices" in head
        or "usage" in head
        or "error" in head
        or head.get("object", "chat.completion.chunk") not in _IGNORED_OBJECTS
    ):
        return b""
    return prefix


def _split_general(reads: Reads, acc: _Acc) -> None:
    """Every SSE shape, event by event.

    The common shape (``data: {json}`` events, LF framing) is gathered with C-level ``bytes.split`` and decoded with
    one ``orjson.loads`` call per stream (the payloads joined into a JSON array); anything else (multi-line
    events, ``event:`` fields, comments, a payload that is not valid JSON) takes the general per-event path.
    """
    pending = b""
    last_ts = 0
    payloads: list[bytes] = []
    pts: list[int] = []
    # (index into payloads at which an out-of-band event happened, event, ts), replayed in stream order
    others: list[tuple[int, bytes, int]] = []
    for ts, data in reads:
        last_ts = ts
        buf = pending + data if pending else data
        if b"\r" in data or pending[-1:] == b"\r":
            tail_cr = buf.endswith(b"\r")
            body = (buf[:-1] if tail_cr else buf).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            buf = body + b"\r" if tail_cr else body
        parts = buf.split(b"\n\n")
        pending = parts.pop()
        for ev in parts:
            if ev[:6] == b"data: " and b"\n" not in ev:
                payloads.append(ev[6:])
                pts.append(ts)
            elif ev:
                others.append((len(payloads), ev, ts))
    rest = pending.strip()
    if rest:
        others.append((len(payloads), rest, last_ts))
    objs = None
    if payloads and not others:
        if payloads[-1] == b"[DONE]":
            payloads.pop()
            pts.pop()
            acc.done = True
        try:
            objs = orjson.loads(b"[" + b",".join(payloads) + b"]")
        except orjson.JSONDecodeError:
            objs = None
        if objs is not None and len(objs) != len(payloads):  # a payload held a top-level comma
            objs = None
        if objs is None and acc.done:
            payloads.append(b"[DONE]")
            pts.append(last_ts)
            acc.done = False
    if objs is not None:
        _handle_objects(acc, objs, pts)
        return
    # general path, in stream order
    j = 0
    for at, ev, ts in others:
        while j < at:
            _handle_data(acc, payloads[j], pts[j])
            j += 1
        _handle_event(acc, ev, ts)
    while j < len(payloads):
        _handle_data(acc, payloads[j], pts[j])
        j += 1


def _handle_objects(acc: _Acc, objs: list[Any], pts: list[int]) -> None:
    """``_handle_data`` for already-decoded events, inlined: this loop runs once per token."""
    chunk_ns = acc.chunk_ns
    kinds = acc.kinds
    cum_tokens = acc.cum_tokens
    chars = acc.chars
    content_out = acc.content
    first_chunk_ns = acc.first_chunk_ns
    reasoning_chars = acc.reasoning_chars
    continuous = acc.continuous
    reasoning_out = acc.reasoning
    for obj, ts in zip(objs, pts, strict=True):
        if type(obj) is not dict:
            if acc.malformed is None:
                acc.malformed = f"SSE data is not a JSON object: {orjson.dumps(obj)[:80]!r}"
            continue
        if "error" in obj or obj.get("object") == "error":
            acc.error = _error_text(obj)
            continue
        if first_chunk_ns is None:
            first_chunk_ns = ts
        usage = obj.get("usage")
        if usage:
            acc.usage = usage
            if "timings" in obj:
                acc.timings = obj["timings"]
        choices = obj.get("choices")
        if not choices:
            continue
        choice = choices[0]
        delta = choice.get("delta")
        reasoning = None
        if delta is not None:
            content = delta.get("content")
            # a delta of content alone (nearly every event) skips the two reasoning lookups
            if not content or len(delta) > 1:
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        else:
            content = choice.get("text")
        fr = choice.get("finish_reason")
        if fr:
            acc.finish_reason = fr
        if not content and not reasoning:
            if usage:
                _textless_tokens(acc, usage, ts)
            continue
        chunk_ns.append(ts)
        if reasoning and reasoning_out is not None:
            reasoning_out.append(reasoning)
        if content:
            content_out.append(content)
            kinds.append("c")
            if reasoning:
                chars.append(len(content) + len(reasoning))
                reasoning_chars += len(reasoning)
            else:
                chars.append(len(content))
        else:
            kinds.append("r")
            chars.append(len(reasoning))
            reasoning_chars += len(reasoning)
        ct = usage.get("completion_tokens") if usage else None
        if ct is not None:
            cum_tokens.append(int(ct))
        else:
            cum_tokens.append(None)
            continuous = False
    acc.first_chunk_ns = first_chunk_ns
    acc.reasoning_chars = reasoning_chars
    acc.continuous = continuous


# keep_text: the answer and the reasoning text (a session's next turn resends it)
KEEP_REASONING = "reasoning"


def _new_acc(keep_text: bool | str) -> _Acc:
    acc = _Acc()
    if keep_text == KEEP_REASONING:
        acc.reasoning = []
    return acc


def apply_stream(rec: RequestRecord, reads: Reads, keep_text: bool | str = True) -> None:
    """Fill ``rec``'s token fields, counts, finish reason and (unless already failed) its status from ``reads``."""
    acc = _new_acc(keep_text)
    for run in slices(reads, SLICE_BYTES):
        split_events(run, acc)
        _compact(acc)
    fill_record(rec, acc, keep_text)


async def apply_stream_async(rec: RequestRecord, reads: Reads, keep_text: bool | str = True) -> None:
    """``apply_stream`` on the event loop, one slice per pass: other streams' reads are stamped in between.

    The record of a very long stream is filled on a worker thread: its per-chunk passes (token counts, reasoning
    tokens, the text) over 100k chunks held the loop 10-20 ms in one go; on a thread the loop takes the GIL back
    within the interpreter's switch interval (5 ms) whenever a read is waiting.
    """
    acc = _new_acc(keep_text)
    for i, run in enumerate(slices(reads, SLICE_BYTES)):
        if i:
            await asyncio.sleep(0)
        split_events(run, acc)
        _compact(acc)
    if len(acc.chunk_ns) > FILL_ON_THREAD_CHUNKS:
        await asyncio.to_thread(fill_record, rec, acc, keep_text)
    else:
        fill_record(rec, acc, keep_text)


def _compact(acc: _Acc) -> None:
    if acc.kinds:
        acc.kind_parts.append("".join(acc.kinds))
        acc.kinds.clear()
    if acc.content:
        acc.content_parts.append("".join(acc.content))
        acc.content.clear()


def apply_json_body(rec: RequestRecord, body: bytes, end_ns: int) -> None:
    """A non-streamed response (a server that ignored ``stream: true``): one chunk holding every token."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        _fail(rec, ErrorKind.MALFORMED, f"response is neither SSE nor JSON: {body[:80]!r}")
        return
    if not isinstance(obj, dict) or "error" in obj or obj.get("object") == "error":
        _fail(rec, ErrorKind.STREAM_ERROR, _error_text(obj))
        return
    choice = (obj.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    text = msg.get("content") if msg else choice.get("text")
    usage = obj.get("usage") or {}
    rec.prompt_tokens = usage.get("prompt_tokens")
    rec.completion_tokens = usage.get("completion_tokens")
    rec.finish_reason = choice.get("finish_reason")
    rec.output_text = text or ""
    rec.first_chunk_ns = rec.first_token_ns = rec.last_token_ns = end_ns
    if text:
        rec.first_content_ns = end_ns
    rec.chunk_ns = [end_ns]
    rec.chunk_tokens = [rec.completion_tokens or 1]
    rec.chunk_kind = "c"
    rec.count_notes.append("server did not stream: TTFT equals end-to-end latency")
