"""The SSE stream parser on recorded byte streams: every framing and payload shape real servers send."""

import orjson
import pytest

from loadgen.records.record import RequestRecord
from loadgen.wire.stream import apply_stream
from tests.scripted_server import DONE, chat_chunk, usage_chunk


def cum(p, c):
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def parse(reads):
    rec = RequestRecord(index=0)
    apply_stream(rec, reads)
    return rec


def reasoning_stream(field="reasoning", continuous=True):
    chunks = [chat_chunk(role=True, usage=cum(7, 0) if continuous else None)]
    n = 0
    for word in ("Let", " me", " think"):
        n += 1
        chunks.append(chat_chunk(reasoning=word, field=field, usage=cum(7, n) if continuous else None))
    for word in ("The", " answer", " is 4"):
        n += 2 if word == " is 4" else 1
        chunks.append(chat_chunk(content=word, usage=cum(7, n) if continuous else None))
    chunks.append(chat_chunk(finish="stop", usage=cum(7, n + 1) if continuous else None))
    chunks.append(usage_chunk(7, n + 1, 3))
    chunks.append(DONE)
    return chunks


def test_one_event_per_read_with_continuous_usage():
    chunks = reasoning_stream()
    rec = parse([(1000 * (i + 1), c) for i, c in enumerate(chunks)])
    # the finish chunk has no text but one more token (the EOS): kind 'x'
    assert rec.chunk_kind == "rrrcccx"
    assert rec.chunk_ns == [2000, 3000, 4000, 5000, 6000, 7000, 8000]
    assert rec.chunk_tokens == [1, 1, 1, 1, 1, 2, 1]
    assert rec.first_chunk_ns == 1000  # the role chunk carries no token
    assert rec.first_token_ns == rec.first_reasoning_ns == 2000
    assert rec.first_content_ns == 5000
    assert rec.last_token_ns == 8000
    assert (rec.prompt_tokens, rec.completion_tokens, rec.reasoning_tokens) == (7, 8, 3)
    assert rec.reasoning_tokens_stream == 3
    assert rec.token_count_source == "continuous_usage"
    assert rec.output_text == "The answer is 4"
    assert rec.finish_reason == "stop" and rec.status == "ok"


def test_many_events_in_one_read_share_its_timestamp():
    blob = b"".join(reasoning_stream())
    rec = parse([(42, blob)])
    assert rec.chunk_ns == [42] * 7 and rec.status == "ok"


@pytest.mark.parametrize("split_at", [1, 5, 6, 7, 30, 101])
def test_events_split_across_reads_at_any_byte(split_at):
    chunks = reasoning_stream()
    blob = b"".join(chunks)
    reads = [(i + 1, blob[j : j + split_at]) for i, j in enumerate(range(0, len(blob), split_at))]
    rec = parse(reads)
    assert rec.chunk_kind == "rrrcccx"
    assert rec.chunk_tokens == [1, 1, 1, 1, 1, 2, 1]
    # an event is stamped with the read that completed it
    ends, pos = [], 0
    for c in chunks:
        pos += len(c)
        ends.append((pos - 1) // split_at + 1)
    assert rec.chunk_ns == ends[1:8]


def test_crlf_framing_and_crlf_split_between_reads():
    blob = b"".join(reasoning_stream()).replace(b"\n", b"\r\n")
    cut = blob.index(b"\r\n\r\n") + 1  # split between \r and \n
    rec = parse([(1, blob[:cut]), (2, blob[cut:])])
    assert rec.chunk_kind == "rrrcccx" and rec.status == "ok"


def test_reasoning_content_field_is_understood():
    rec = parse([(1, b"".join(reasoning_stream(field="reasoning_content")))])
    assert rec.chunk_kind == "rrrcccx"
    assert rec.reasoning_tokens_stream == 3


def test_usage_only_at_the_end_one_token_per_chunk():
    chunks = reasoning_stream(continuous=False)
    chunks[-2] = usage_chunk(7, 6, 3)
    rec = parse([(i, c) for i, c in enumerate(chunks)])
    assert rec.chunk_tokens == [1] * 6 and rec.token_count_source == "usage"


def test_usage_only_at_the_end_more_tokens_than_chunks_is_estimated_by_chars():
    chunks = [
        chat_chunk(content="ab"),
        chat_chunk(content="abcdef"),
        chat_chunk(content="ab", finish="length"),
        usage_chunk(3, 10),
        DONE,
    ]
    rec = parse([(i, c) for i, c in enumerate(chunks)])
    assert sum(rec.chunk_tokens) == 10
    assert rec.chunk_tokens[1] > rec.chunk_tokens[0]
    assert rec.token_count_source == "estimated:chars_per_token"
    assert rec.finish_reason == "length"


def test_no_usage_at_all_says_tokens_are_estimated():
    chunks = [chat_chunk(content="a"), chat_chunk(content="b", finish="stop"), DONE]
    rec = parse([(1, b"".join(chunks))])
    assert rec.completion_tokens == 2
    assert rec.token_count_source == "estimated:one_token_per_chunk"
    assert rec.count_notes


def test_no_done_line_is_fine_when_finish_reason_arrived():
    chunks = [
        chat_chunk(content="a", usage=cum(1, 1)),
        chat_chunk(content="b", finish="stop", usage=cum(1, 2)),
    ]
    rec = parse([(1, b"".join(chunks))])
    assert rec.status == "ok" and rec.completion_tokens == 2


def test_stream_that_just_stops_is_a_disconnect():
    chunks = [chat_chunk(content="a", usage=cum(1, 1)), chat_chunk(content="b", usage=cum(1, 2))]
    rec = parse([(1, b"".join(chunks))])
    assert rec.status == "error" and rec.error_kind == "disconnect"
    assert rec.chunk_tokens == [1, 1]  # what did arrive is kept


def test_error_event_in_the_stream():
    err = (
        b'data: {"error": {"message": "KV cache exhausted", "type": "InternalServerError", "code": 500}}\n\n'
    )
    rec = parse([(1, chat_chunk(content="a", usage=cum(1, 1))), (2, err), (3, DONE)])
    assert rec.error_kind == "stream_error" and "KV cache exhausted" in rec.error_message
    sse_err = b'event: error\ndata: {"message": "overloaded"}\n\n'
    rec = parse([(1, sse_err)])
    assert rec.error_kind == "stream_error" and "overloaded" in rec.error_message


def test_malformed_json_is_reported():
    rec = parse([(1, chat_chunk(content="a")), (2, b"data: {not json\n\n"), (3, DONE)])
    assert rec.error_kind == "malformed"


def test_empty_stream_is_an_error():
    rec = parse([(1, chat_chunk(role=True) + chat_chunk(finish="stop") + DONE)])
    assert rec.error_kind == "empty"


def test_completions_text_stream():
    def c(text, fin=None, n=None):
        obj = {
            "id": "cmpl-1",
            "object": "text_completion",
            "choices": [{"index": 0, "text": text, "finish_reason": fin}],
        }
        if n is not None:
            obj["usage"] = cum(2, n)
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    rec = parse([(1, c("Hel", n=1)), (2, c("lo world", n=3)), (3, c("", "length", 3)), (4, DONE)])
    assert rec.chunk_tokens == [1, 2] and rec.chunk_kind == "cc"
    assert rec.output_text == "Hello world" and rec.finish_reason == "length"


def test_reasoning_disagreement_with_usage_is_flagged():
    chunks = reasoning_stream()
    chunks[-2] = usage_chunk(7, 8, 0)  # vLLM 0.32 reports reasoning_tokens 0
    rec = parse([(1, b"".join(chunks))])
    assert rec.reasoning_tokens == 0 and rec.reasoning_tokens_stream == 3
    assert any("reasoning_tokens=0" in n for n in rec.count_notes)


def test_comments_and_other_fields_are_ignored():
    blob = (
        b": keep-alive\n\nid: 1\nevent: message\n"
        + chat_chunk(content="x", finish="stop", usage=cum(1, 1))
        + DONE
    )
    rec = parse([(1, blob)])
    assert rec.chunk_kind == "c" and rec.status == "ok"


def test_tokens_without_text_still_count_and_keep_their_time():
    """vLLM's reasoning parser swallows `</think>`; half a UTF-8 character has no text yet: usage still grows."""
    chunks = [
        chat_chunk(role=True, usage=cum(5, 0)),
        chat_chunk(reasoning="hm", usage=cum(5, 1)),
        chat_chunk(content="", usage=cum(5, 2)),  # the </think> token
        chat_chunk(content="ok", usage=cum(5, 3)),
        chat_chunk(content="", finish="length", usage=cum(5, 4)),  # a last token with no text
        DONE,
    ]
    rec = parse([(10 * (i + 1), c) for i, c in enumerate(chunks)])
    assert rec.chunk_kind == "rxcx"
    assert rec.chunk_tokens == [1, 1, 1, 1] and sum(rec.chunk_tokens) == rec.completion_tokens == 4
    assert rec.first_content_ns == 40 and rec.first_reasoning_ns == 20 and rec.last_token_ns == 50
    assert rec.reasoning_tokens_stream == 2  # the </think> belongs to the reasoning phase
