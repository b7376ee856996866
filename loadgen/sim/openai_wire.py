"""vLLM 0.32's OpenAI wire format, both ways: a generation request checked as vLLM checks it, and the bytes of
every answer (SSE chunks, the full response, usage blocks, the model list, error bodies).

Pure functions of a request's state (``sim.server.Stream``), its engine request and the config: no sockets, no
clock. Key order, nulls and event sequence follow the real captures in ``tests/data/vllm/``
(``tests/integration/test_sim_wire.py`` compares them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from loadgen.sim.config import SimConfig
from loadgen.sim.engine import SimRequest
from loadgen.sim.http11 import frame
from loadgen.sim.text import answer_text, reasoning_text, render_chat, tokenize

if TYPE_CHECKING:
    from loadgen.sim.server import Stream

FINGERPRINT = "vllm-0.32.0-loadgen.sim"
_FINGERPRINT = orjson.dumps(FINGERPRINT)
DONE = frame(b"data: [DONE]\n\n")


def error_body(message: str, err_type: str, code: int, param: str | None = None) -> bytes:
    """vLLM's ErrorResponse: ``{"error": {"message", "type", "param", "code"}}``."""
    return orjson.dumps({"error": {"message": message, "type": err_type, "param": param, "code": code}})


class BadRequest(Exception):
    """A request vLLM would refuse; answered with ``status`` and :func:`error_body`."""

    def __init__(
        self, message: str, status: int = 400, err_type: str = "BadRequestError", param: str | None = None
    ):
        super().__init__(message)
        self.status = status
        self.err_type = err_type
        self.param = param


# ------------------------------------------------------------------------------------------------ requests
@dataclass(frozen=True, slots=True)
class Generate:
    """A checked ``/v1/chat/completions`` or ``/v1/completions`` body."""

    prompt_text: str
    tokens: list[int]
    max_tokens: int  # the request's, or what the context leaves
    stream: bool
    stream_options: dict[str, Any]
    ignore_eos: bool
    sim: dict[str, Any] | None  # the simulator's own per-request overrides (``"sim": {...}``)


def parse_generate(raw: bytes, chat: bool, cfg: SimConfig) -> Generate:
    """The body as vLLM 0.32 reads it, or ``BadRequest`` with vLLM's message (model, messages/prompt, max_tokens,
    context length, stream_options without stream)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"Invalid JSON body: {e}") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object")
    model = body.get("model")
    if model is not None and model != cfg.model_name:
        raise BadRequest(
            f"The model `{model}` does not exist. Valid aliases: {cfg.model_name}.",
            404,
            "NotFoundError",
            "model",
        )
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise BadRequest("'messages' must be a non-empty list of objects", param="messages")
        prompt_text = render_chat(messages)
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise BadRequest("'prompt' must be a string", param="prompt")
        prompt_text = prompt
    tokens = tokenize(prompt_text)
    n_prompt = len(tokens)
    max_tokens = body.get("max_completion_tokens") if chat else None
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is not None and (
        not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
    ):
        raise BadRequest(
            f"max_tokens must be at least 1, got {max_tokens}. (parameter=max_tokens, value={max_tokens})",
            param="max_tokens",
        )
    if n_prompt >= cfg.max_model_len:
        raise BadRequest(
            f"This model's maximum context length is {cfg.max_model_len} tokens. However, your prompt contains at "
            f"least {n_prompt} input tokens, which exceeds this limit even without any output tokens. Please "
            f"reduce the length of the input prompt. (parameter=input_tokens, value={n_prompt})",
            param="input_tokens",
        )
    if max_tokens is not None and n_prompt + max_tokens > cfg.max_model_len:
        raise BadRequest(
            f"This model's maximum context length is {cfg.max_model_len} tokens. However, you requested "
            f"{max_tokens} output tokens and your prompt contains {n_prompt} input tokens, for a total of "
            f"{n_prompt + max_tokens} tokens. Please reduce the length of the input prompt or the number of "
            f"requested output tokens. (parameter=max_tokens, value={max_tokens})",
            param="max_tokens",
        )
    if max_tokens is None:
        max_tokens = cfg.max_model_len - n_prompt
    sim = body.get("sim") if isinstance(body.get("sim"), dict) else None
    stream = bool(body.get("stream", False))
    opts = body.get("stream_options") or {}
    if opts and not stream:
        raise BadRequest("Stream options can only be defined when `stream=True`.", param="stream_options")
    return Generate(prompt_text, tokens, max_tokens, stream, opts, bool(body.get("ignore_eos", False)), sim)


# ------------------------------------------------------------------------------------------------ answers
def stream_prefix(server_id: str, chat: bool, created: int, model_name: str) -> bytes:
    """``data: {"id":...,"object":...,"created":...,"model":...,`` : the head every SSE event of a request shares."""
    rid = ("chatcmpl-" if chat else "cmpl-") + server_id
    obj = "chat.completion.chunk" if chat else "text_completion"
    return (
        b'data: {"id":"'
        + rid.encode()
        + b'","object":"'
        + obj.encode()
        + b'","created":%d,"model":' % created
        + orjson.dumps(model_name)
        + b","
    )


def usage(
    req: SimRequest, chat: bool, cached: bool = False, final: bool = False, details: bool = False
) -> dict[str, Any]:
    """vLLM 0.32's usage block: chat adds ``completion_tokens_details.reasoning_tokens`` (vLLM itself reports 0
    there; the simulator reports the true count); with ``details`` the final one (``final``) carries the prompt
    tokens found in the prefix cache as ``prompt_tokens_details.cached_tokens``, as vLLM does with
    ``--enable-prompt-tokens-details`` (and only when there were some)."""
    c = req.output_tokens
    u: dict[str, Any] = {"prompt_tokens": req.prompt_tokens, "total_tokens": req.prompt_tokens + c,
                         "completion_tokens": c}  # fmt: skip
    if final and details and req.cached_tokens:  # vLLM's --enable-prompt-tokens-details: only when some were
        u["prompt_tokens_details"] = {"cached_tokens": req.cached_tokens}
    elif cached:
        u["prompt_tokens_details"] = None
    if chat:
        u["completion_tokens_details"] = {"reasoning_tokens": req.reasoning_emitted}
    elif cached:
        u["completion_tokens_details"] = None
    return u


def completion_text(req: SimRequest, start: int, n: int) -> str:
    """Tokens ``start`` .. ``start + n`` as one text (``/v1/completions`` has no reasoning field)."""
    r, a = req.split(start, n)
    text = reasoning_text(req.offset, start, r) if r else ""
    if a:
        text += answer_text(
            req.offset, max(0, start - req.reasoning_tokens), a, req.answer_tokens, req.final_token
        )
    return text


def chunk_frames(
    st: Stream, req: SimRequest, start: int, n: int, is_last: bool, reasoning_field: str
) -> bytes:
    """All frames one engine step produces for one request, in vLLM 0.32's key order."""
    r, a = req.split(start, n)
    fr = b'"' + req.stop_reason.encode() + b'","stop_reason":null' if is_last else b"null"
    if st.chat:
        parts = []
        if r:
            parts.append(
                b'"' + reasoning_field.encode() + b'":' + orjson.dumps(reasoning_text(req.offset, start, r))
            )
        if a:
            a_start = max(0, start - req.reasoning_tokens)
            text = answer_text(req.offset, a_start, a, req.answer_tokens, req.final_token)
            parts.append(b'"content":' + orjson.dumps(text))
        body = (
            b'"choices":[{"index":0,"delta":{' + b",".join(parts) + b'},"logprobs":null,"finish_reason":' + fr
        )
        body += b',"token_ids":null}]'
    else:
        body = b'"choices":[{"index":0,"text":' + orjson.dumps(completion_text(req, start, n))
        body += b',"logprobs":null,"finish_reason":' + fr
        body += (
            b',"prompt_token_ids":null,"token_ids":null}]'
            if is_last
            else (b',"stop_reason":null,"prompt_token_ids":null,"token_ids":null}]')
        )
    if st.continuous:
        body += b',"usage":' + orjson.dumps(usage(req, st.chat))
    out = frame(st.prefix + body + b"}\n\n")
    if start == 0 and st.chat:
        role = b'"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]'
        if st.continuous:
            u = {"prompt_tokens": req.prompt_tokens, "total_tokens": req.prompt_tokens, "completion_tokens": 0,
                 "completion_tokens_details": {"reasoning_tokens": 0}}  # fmt: skip
            role += b',"usage":' + orjson.dumps(u)
        role += b',"prompt_token_ids":null,"prompt_text":null'
        out = frame(st.prefix + role + b"}\n\n") + out
    if is_last:
        if st.include_usage:
            tail = b'"choices":[],"usage":' + orjson.dumps(
                usage(req, st.chat, final=True, details=st.details)
            )
            out += frame(st.prefix + tail + b',"system_fingerprint":' + _FINGERPRINT + b"}\n\n")
        out += DONE
    return out


def full_response(st: Stream, req: SimRequest, cfg: SimConfig) -> bytes:
    """The non-streamed answer's JSON body."""
    fr = req.stop_reason
    r = req.reasoning_emitted
    if st.chat:
        content = None
        if req.output_tokens > r:
            content = answer_text(req.offset, 0, req.output_tokens - r, req.answer_tokens, req.final_token)
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None, "annotations": None,
                                   "audio": None, "function_call": None}  # fmt: skip
        message[cfg.reasoning_field] = reasoning_text(req.offset, 0, r) if r else None
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": fr,
            "stop_reason": None,
            "token_ids": None,
            "routed_experts": None,
        }
        obj = "chat.completion"
        rid = "chatcmpl-" + st.server_id
    else:
        choice = {"index": 0, "text": completion_text(req, 0, req.output_tokens), "logprobs": None,
                  "finish_reason": fr, "stop_reason": None, "token_ids": None, "prompt_logprobs": None,
                  "prompt_token_ids": None, "routed_experts": None}  # fmt: skip
        obj = "text_completion"
        rid = "cmpl-" + st.server_id
    body: dict[str, Any] = {"id": rid, "object": obj, "created": st.created, "model": cfg.model_name,
                            "choices": [choice], "service_tier": None,
                            "system_fingerprint": FINGERPRINT, "usage": usage(req, st.chat, cached=True, final=True, details=cfg.enable_prompt_tokens_details)}  # fmt: skip
    if st.chat:
        body.update(prompt_logprobs=None, prompt_token_ids=None, prompt_text=None)
    body.update(kv_transfer_params=None, ec_transfer_params=None, metrics=None)
    return orjson.dumps(body)


def response_head(server_id: str, length: int) -> bytes:
    """A 200 head with Content-Length, written by hand where the body is then cut short (the ``cut`` fault)."""
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-request-id: "
        + server_id.encode()
        + b"\r\ncontent-length: %d\r\n\r\n" % length
    )


def models_body(cfg: SimConfig, created: int, nonce: str) -> bytes:
    """``GET /v1/models``: the one served model, with vLLM's card fields."""
    m = cfg.model_name
    card = {"id": m, "object": "model", "created": created, "owned_by": "vllm", "root": m, "parent": None,
            "max_model_len": cfg.max_model_len,
            "permission": [{"id": "modelperm-" + nonce, "object": "model_permission",
                            "created": created, "allow_create_engine": False, "allow_sampling": True,
                            "allow_logprobs": True, "allow_search_indices": False, "allow_view": True,
                            "allow_fine_tuning": False, "organization": "*", "group": None,
                            "is_blocking": False}]}  # fmt: skip
    return orjson.dumps({"object": "list", "data": [card]})
