"""A parsed stream onto its record: token counts per chunk, reasoning tokens, and the stream's verdict.

``loadgen.wire.stream`` turns a response's reads into an accumulator (chunk stamps, kinds, text lengths, the usage the
server reported); this fills the record from it. Tokens per chunk are exact where every token chunk carried a
cumulative usage (vLLM's ``continuous_usage_stats``); otherwise they are estimated from the final usage (spread by
text length, one unsent ``</think>`` placed where reasoning turns into the answer) or one per chunk, and the record
says which (``token_count_source``, ``count_notes``).
"""

from __future__ import annotations

from itertools import compress, repeat
from operator import eq, sub
from typing import Any, Protocol

from loadgen.errors import ErrorKind
from loadgen.records.record import (
    COUNT_CONTINUOUS_USAGE,
    COUNT_ESTIMATED_CHARS,
    COUNT_ESTIMATED_CHUNKS,
    COUNT_USAGE,
    STATUS_ERROR,
    STATUS_OK,
    RequestRecord,
)

__all__ = ["Accumulated", "fail_record", "fill_record"]


class Accumulated(Protocol):
    """What a response's reads became (``loadgen.wire.stream`` accumulates it): what counting tokens needs of it."""

    chunk_ns: Any
    kind_parts: Any
    content_parts: Any
    chars: Any
    reasoning_chars: int
    cum_tokens: Any
    continuous: bool
    usage: dict[str, Any] | None
    timings: dict[str, Any] | None
    finish_reason: str | None
    first_chunk_ns: int | None
    malformed: str | None
    error: str | None
    done: bool


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
    chunks' text length.

    In numpy (a long stream may have 100k chunks; this runs on the event loop).
    """
    n = len(chars)
    extra = total - n
    if extra <= 0:
        return [1] * n
    import numpy as np

    c = np.asarray(chars, dtype=np.float64)
    base = np.ones(n, dtype=np.int64)
    if boundary is not None:
        base[boundary] += 1
        extra -= 1
        if not extra:
            return base.tolist()
    weight = float(c.sum())
    shares = extra * np.where(c > 0, c, 1.0) / weight if weight else np.full(n, extra / n)
    floors = shares.astype(np.int64)
    out = base + floors
    left = extra - int(floors.sum())
    # largest remainders first; ties in chunk order
    order = np.argsort(-(shares - floors), kind="stable").tolist()
    for i in order[:left]:
        out[i] += 1
    return out.tolist()


def cached_tokens(usage: dict[str, Any], timings: dict[str, Any] | None) -> int | None:
    """Prompt tokens served from the prefix cache, as the server reported them for this request: vLLM/SGLang's
    ``usage.prompt_tokens_details.cached_tokens``, else llama.cpp's ``timings.cache_n``; None when neither."""
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
        return int(details["cached_tokens"])
    if isinstance(timings, dict) and isinstance(timings.get("cache_n"), int):
        return int(timings["cache_n"])
    return None


def _chunk_tokens(rec: RequestRecord, acc: Accumulated, n_chunks: int) -> bool:
    """Tokens per chunk: exact from cumulative per-chunk usage; otherwise estimated, and the record says how.
    True when a token the stream never sent (``</think>``) was counted before the first answer chunk."""
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

    return unsent_think


def _reasoning_tokens(rec: RequestRecord, unsent_think: bool) -> None:
    """Reasoning tokens as the stream carried them: its reasoning chunks, textless tokens inside the reasoning
    phase (``</think>`` itself), and the unsent ``</think>``; a note where usage says otherwise."""
    # textless tokens inside the reasoning phase (e.g. `</think>` itself) count as reasoning
    kinds, toks = rec.chunk_kind, rec.chunk_tokens
    r = sum(compress(toks, map(eq, kinds, repeat("r"))))
    first_r = kinds.find("r")
    if first_r >= 0 and "x" in kinds:
        first_c = kinds.find("c")
        end = first_c if first_c >= 0 else len(kinds)
        r += sum(compress(toks[first_r + 1 : end], map(eq, kinds[first_r + 1 : end], repeat("x"))))
    if unsent_think:
        r += 1  # that token ends the reasoning: it is reasoning, as vLLM's textless chunk is
    rec.reasoning_tokens_stream = r
    if rec.reasoning_tokens is not None and rec.reasoning_tokens != r and r > 0:
        rec.count_notes.append(
            f"usage reasoning_tokens={rec.reasoning_tokens} but the stream carried {r} reasoning tokens"
        )


def fill_record(rec: RequestRecord, acc: Accumulated, keep_text: bool | str) -> None:
    """The record's fields from a parsed stream (its slices compacted); C-level passes only (a stream may have
    100k chunks)."""
    rec.first_chunk_ns = acc.first_chunk_ns
    rec.chunk_ns = acc.chunk_ns
    rec.chunk_kind = "".join(acc.kind_parts)
    rec.finish_reason = acc.finish_reason
    rec.reasoning_chars = acc.reasoning_chars
    if keep_text:
        rec.output_text = "".join(acc.content_parts)
    if acc.reasoning is not None:
        rec.reasoning_text = "".join(acc.reasoning)
    n_chunks = len(acc.chunk_ns)
    if n_chunks:
        rec.first_token_ns = acc.chunk_ns[0]
        rec.last_token_ns = acc.chunk_ns[-1]
        first_r, first_c = rec.chunk_kind.find("r"), rec.chunk_kind.find("c")
        if first_r >= 0 and rec.first_reasoning_ns is None:
            rec.first_reasoning_ns = acc.chunk_ns[first_r]
        if first_c >= 0:
            rec.first_content_ns = acc.chunk_ns[first_c]

    rec.server_timings = acc.timings
    usage = acc.usage or {}
    if usage:
        rec.prompt_tokens = usage.get("prompt_tokens")
        rec.completion_tokens = usage.get("completion_tokens")
        details = usage.get("completion_tokens_details") or {}
        rt = details.get("reasoning_tokens") if isinstance(details, dict) else None
        rec.reasoning_tokens = rt if rt is not None else usage.get("reasoning_tokens")
        rec.cached_tokens = cached_tokens(usage, acc.timings)

    unsent_think = _chunk_tokens(rec, acc, n_chunks)
    if rec.chunk_tokens:
        _reasoning_tokens(rec, unsent_think)

    if rec.status != STATUS_OK:
        return
    if acc.error is not None:
        fail_record(rec, ErrorKind.STREAM_ERROR, acc.error)
    elif acc.malformed is not None:
        fail_record(rec, ErrorKind.MALFORMED, acc.malformed)
    elif acc.finish_reason is None and not acc.done:
        fail_record(rec, ErrorKind.DISCONNECT, "stream ended without finish_reason or [DONE]")
    elif not n_chunks:
        fail_record(rec, ErrorKind.EMPTY, "stream finished without a single token")


def fail_record(rec: RequestRecord, kind: ErrorKind, message: str) -> None:
    rec.status = STATUS_ERROR
    rec.error_kind = kind.value
    rec.error_message = message[:500]
