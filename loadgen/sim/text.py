"""The simulator's tokenizer and the text it "generates".

Tokenizer (deterministic, documented so tests can predict counts): a prompt is split by the regular expression
``\\w+|[^\\w\\s]``: every run of letters/digits/underscore is one token and every other non-space character is one
token; whitespace is free. Chat requests are first rendered with a ChatML-like template
(``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per message, then ``<|im_start|>assistant\\n``), and the template's
markers count as tokens like any other text (``<|im_start|>`` is 5 tokens).

Generated text is a rotation through a fixed word list, one word (with its leading space) per token. It means
nothing: this is a simulator of a server's timing and wire format, not a language model. When a request carries a
reference answer, the answer's last token is `` \\boxed{...}`` with either the reference or a wrong number.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")

_REASONING_WORDS = (
    "Okay", "let", "me", "think", "about", "this", "step", "by", "step", "first", "we", "need", "to", "check",
    "whether", "the", "value", "holds", "so", "if", "x", "equals", "then", "wait", "that", "is", "not", "right",
    "hmm", "consider", "case", "again", "which", "gives", "us", "a", "bound", "on", "sum", "and", "therefore",
)  # fmt: skip
_ANSWER_WORDS = (
    "The", "answer", "follows", "from", "the", "computation", "above", "so", "we", "get", "a", "final", "result",
    "that", "matches", "all", "conditions", "given", "in", "problem",
)  # fmt: skip

REASONING_VOCAB = tuple(" " + w for w in _REASONING_WORDS)
ANSWER_VOCAB = tuple(" " + w for w in _ANSWER_WORDS)
_STRIDE = 7  # coprime with both vocabulary sizes, so consecutive tokens differ


def tokenize(text: str) -> list[str]:
    """Split text into the simulator's tokens (see the module docstring)."""
    return _TOKEN_RE.findall(text)


def render_chat(messages: Iterable[Mapping[str, Any]]) -> str:
    """Render chat messages with the ChatML-like template whose tokens are counted as the prompt."""
    parts = []
    for m in messages:
        content = m.get("content", "")
        if isinstance(content, list):  # OpenAI content parts: keep the text ones
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
        parts.append(f"<|im_start|>{m.get('role', 'user')}\n{content}<|im_end|>\n")
    parts.append("<|im_start|>assistant\n")
    return "".join(parts)


def block_hashes(tokens: list[str], block_size: int, prev: bytes = b"") -> list[bytes]:
    """Chained hashes of the prompt's full blocks, like vLLM's: equal hash at position i means equal prefix
    (``prev``: the hash of the block before ``tokens``, to go on hashing a sequence)."""
    out: list[bytes] = []
    for start in range(0, len(tokens) - block_size + 1, block_size):
        h = hashlib.blake2b(prev, digest_size=16)
        h.update("\x00".join(tokens[start : start + block_size]).encode())
        prev = h.digest()
        out.append(prev)
    return out


def text_digest(text: str) -> int:
    """A 64-bit digest of text, stable across processes (unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def difficulty_of(digest: int) -> float:
    """A prompt's difficulty in [0, 1), uniform over prompts, fixed for a given prompt."""
    return (digest >> 11) / float(1 << 53)


def reasoning_text(offset: int, start: int, count: int) -> str:
    """Reasoning tokens ``start .. start+count`` of a request whose word rotation begins at ``offset``."""
    vocab = REASONING_VOCAB
    n = len(vocab)
    return "".join([vocab[(offset + i * _STRIDE) % n] for i in range(start, start + count)])


def answer_text(offset: int, start: int, count: int, total: int, final: str) -> str:
    """Answer tokens ``start .. start+count`` of ``total``; the last one is ``final``."""
    vocab = ANSWER_VOCAB
    n = len(vocab)
    end = start + count
    words = [vocab[(offset + i * _STRIDE) % n] for i in range(start, min(end, total - 1))]
    if end >= total:
        words.append(final)
    return "".join(words)


def raw_output(offset: int, reasoning: int, answer: int, answer_total: int, final: str, chat: bool) -> str:
    """The text a request generated as a history would resend it whole: on chat, the reasoning between
    ``<think>`` and ``</think>`` before the answer (what a client keeping the reasoning sends back; the
    completions text carries no markers)."""
    r = reasoning_text(offset, 0, reasoning) if reasoning else ""
    a = answer_text(offset, 0, answer, answer_total, final) if answer else ""
    return f"<think>{r}</think>{a}" if r and chat else r + a
