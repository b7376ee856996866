"""Turn the timestamped raw reads of one streamed response into token events on its record.

The client only timestamps bytes as they arrive; this runs once the stream is over, so no JSON is decoded while
a response is still being read. It copes with what real servers send: several SSE events in one read and one event
split across reads, CRLF or LF framing, several tokens in one chunk (speculative decoding, a server under load),
reasoning in ``delta.reasoning_content`` (DeepSeek, SGLang, older vLLM) or ``delta.reasoning`` (vLLM >= 0.10),
usage only on the final chunk or on every chunk (vLLM's ``continuous_usage_stats``), no ``[DONE]`` line
(transformers serve), error events, and a stream that simply stops.
"""

from __future__ import annotations

from itertools import chain, repeat
from operator import itemgetter, sub
from typing import Any

import orjson

from loadgen.errors import ErrorKind
from loadgen.records import (
    COUNT_CONTINUOUS_USAGE,
    COUNT_ESTIMATED_CHARS,
    COUNT_ESTIMATED_CHUNKS,
    COUNT_USAGE,
    STATUS_ERROR,
    STATUS_OK,
    RequestRecord,
)

Reads = list[tuple[int, bytes]]


class _Acc:
    """Per-stream accumulator; plain attributes beat dict lookups in the per-event loop."""

    __slots__ = (
        "chunk_ns",
        "kinds",
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
    )

    def __init__(self) -> None:
        self.chunk_ns: list[int] = []
        self.kinds: list[str] = []
        self.cum_tokens: list[int | None] = []  # cumulative completion tokens reported with each chunk
        self.chars: list[int] = []
        self.content: list[str] = []
        self.reasoning_chars = 0
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.done = False
        self.error: str | None = None
        self.first_chunk_ns: int | None = None
        self.continuous = True  # every token chunk carried a cumulative usage
        self.malformed: str | None = None
        self.timings: dict[str, Any] | None = None  # llama.cpp's per-response server timings


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
        counts = list(map(bytes.count, datas, repeat(b"\n\n")))
        pts = list(chain.from_iterable(map(repeat, map(_first, reads), counts)))
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
    prefix = _repeated_prefix(segs[0]) if segs else b""
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


def _answer_start(kinds: str) -> int | None:
    """Index of the first answer chunk when reasoning came before it with no textless chunk between: a stream
    whose usage counts the ``</think>`` token that it never sent (llama.cpp), which then sits in that gap."""
    c = kinds.find("c")
    if c <= 0 or "r" not in kinds[:c] or "x" in kinds[kinds.rfind("r", 0, c) : c]:
        return None
    return c


def _distribute(total: int, chars: list[int], boundary: int | None = None) -> list[int]:
    """Share ``total`` tokens over chunks: one each at least; one more on the ``boundary`` chunk (the unsent
    ``</think>``, generated just before it) when there are more tokens than chunks; the rest in proportion to the
    chunks' text length."""
    n = len(chars)
    extra = total - n
    out = [1] * n
    if extra <= 0:
        return out
    if boundary is not None:
        out[boundary] += 1
        extra -= 1
        if not extra:
            return out
    weight = sum(chars) or n
    shares = [extra * (c or 1) / weight for c in chars] if sum(chars) else [extra / n] * n
    floors = [int(s) for s in shares]
    for i in range(n):
        out[i] += floors[i]
    left = extra - sum(floors)
    order = sorted(range(n), key=lambda i: shares[i] - floors[i], reverse=True)
    for i in order[:left]:
        out[i] += 1
    return out


def apply_stream(rec: RequestRecord, reads: Reads, keep_text: bool = True) -> None:
    """Fill ``rec``'s token fields, counts, finish reason and (unless already failed) its status from ``reads``."""
    acc = _Acc()
    split_events(reads, acc)
    rec.first_chunk_ns = acc.first_chunk_ns
    rec.chunk_ns = acc.chunk_ns
    rec.chunk_kind = "".join(acc.kinds)
    rec.finish_reason = acc.finish_reason
    rec.reasoning_chars = acc.reasoning_chars
    if keep_text:
        rec.output_text = "".join(acc.content)
    n_chunks = len(acc.chunk_ns)
    if n_chunks:
        rec.first_token_ns = acc.chunk_ns[0]
        rec.last_token_ns = acc.chunk_ns[-1]
        for kind, ts in zip(acc.kinds, acc.chunk_ns, strict=True):
            if kind == "r" and rec.first_reasoning_ns is None:
                rec.first_reasoning_ns = ts
            elif kind == "c":
                rec.first_content_ns = ts
                break
        if rec.first_reasoning_ns is None and "r" in rec.chunk_kind:
            rec.first_reasoning_ns = acc.chunk_ns[rec.chunk_kind.index("r")]

    rec.server_timings = acc.timings
    usage = acc.usage or {}
    if usage:
        rec.prompt_tokens = usage.get("prompt_tokens")
        rec.completion_tokens = usage.get("completion_tokens")
        details = usage.get("completion_tokens_details") or {}
        rt = details.get("reasoning_tokens") if isinstance(details, dict) else None
        rec.reasoning_tokens = rt if rt is not None else usage.get("reasoning_tokens")

    # Tokens per chunk: exact from cumulative per-chunk usage; otherwise estimated, and the record says how.
    unsent_think = False
    if n_chunks and acc.continuous:
        prev = 0
        cum = acc.cum_tokens
        tokens = list(map(sub, cum, [0, *cum[:-1]]))  # type: ignore[arg-type]
        if min(tokens) >= 0:
            prev = cum[-1]  # type: ignore[assignment]
        else:  # a count that went backwards: never negative, never below the highest seen
            tokens = []
            for c in cum:
                assert c is not None
                tokens.append(max(c - prev, 0))
                prev = max(prev, c)
        rec.chunk_tokens = tokens
        rec.token_count_source = COUNT_CONTINUOUS_USAGE
        if rec.completion_tokens is None:
            rec.completion_tokens = prev
    elif n_chunks:
        total = rec.completion_tokens
        if total is None:
            rec.chunk_tokens = [1] * n_chunks
            rec.completion_tokens = n_chunks
            rec.token_count_source = COUNT_ESTIMATED_CHUNKS
            rec.count_notes.append("server sent no usage: one token per chunk assumed")
        elif total == n_chunks:
            rec.chunk_tokens = [1] * n_chunks
            rec.token_count_source = COUNT_USAGE
        else:
            boundary = _answer_start(rec.chunk_kind) if total > n_chunks else None
            rec.chunk_tokens = _distribute(total, acc.chars, boundary)
            rec.token_count_source = COUNT_ESTIMATED_CHARS
            unsent_think = boundary is not None
            if unsent_think:
                rec.count_notes.append(
                    "one unsent token (</think>) counted just before the first answer chunk"
                )
            if total < n_chunks:
                rec.count_notes.append(
                    f"usage says {total} tokens but the stream had {n_chunks} token chunks"
                )
    else:
        rec.chunk_tokens = []

    if rec.chunk_tokens:
        # textless tokens inside the reasoning phase (e.g. `</think>` itself) count as reasoning
        first_c = rec.chunk_kind.find("c")
        first_r = rec.chunk_kind.find("r")
        r = sum(
            t
            for i, (t, k) in enumerate(zip(rec.chunk_tokens, rec.chunk_kind, strict=True))
            if k == "r" or (k == "x" and 0 <= first_r < i and (first_c < 0 or i < first_c))
        )
        if unsent_think:
            r += 1  # that token ends the reasoning: it is reasoning, as vLLM's textless chunk is
        rec.reasoning_tokens_stream = r
        if rec.reasoning_tokens is not None and rec.reasoning_tokens != r and r > 0:
            rec.count_notes.append(
                f"usage reasoning_tokens={rec.reasoning_tokens} but the stream carried {r} reasoning tokens"
            )

    if rec.status != STATUS_OK:
        return
    if acc.error is not None:
        _fail(rec, ErrorKind.STREAM_ERROR, acc.error)
    elif acc.malformed is not None:
        _fail(rec, ErrorKind.MALFORMED, acc.malformed)
    elif acc.finish_reason is None and not acc.done:
        _fail(rec, ErrorKind.DISCONNECT, "stream ended without finish_reason or [DONE]")
    elif not n_chunks:
        _fail(rec, ErrorKind.EMPTY, "stream finished without a single token")


def _fail(rec: RequestRecord, kind: ErrorKind, message: str) -> None:
    rec.status = STATUS_ERROR
    rec.error_kind = kind.value
    rec.error_message = message[:500]


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
