"""Synthetic prompt text of a chosen length in tokens, and a rough token estimate for text we did not tokenize.

``synthetic_prompt`` draws common short English words. Each word, written with its leading space, is a single
token in the BPE vocabularies of the common model families (GPT-2/cl100k/o200k, Llama 3, Qwen 2/2.5/3, Mistral's
Tekken), so ``n`` words make ≈ ``n`` tokens; the first word has no leading space and may be one token more on
some vocabularies. The chat template adds its own tokens on top: prompt tokens reported by the server are the
ground truth, this is only how we aim.
"""

from __future__ import annotations

import random
import re

import numpy as np

__all__ = ["WORDS", "approx_tokens", "last_boxed", "synthetic_prompt"]

# Frequent, short, lower-case words; each " word" is one token in the vocabularies named above.
WORDS: tuple[str, ...] = (
    "the", "of", "and", "to", "in", "is", "you", "that", "it", "he", "was", "for", "on", "are", "as", "with",
    "his", "they", "at", "be", "this", "have", "from", "or", "one", "had", "by", "but", "not", "what", "all",
    "were", "we", "when", "your", "can", "said", "there", "use", "an", "each", "which", "she", "do", "how",
    "their", "if", "will", "up", "other", "about", "out", "many", "then", "them", "these", "so", "some", "her",
    "would", "make", "like", "him", "into", "time", "has", "look", "two", "more", "go", "see", "no", "way",
    "could", "my", "than", "first", "water", "been", "call", "who", "its", "now", "find", "long", "down",
    "day", "did", "get", "come", "made", "may", "part", "over", "new", "work", "take", "just", "good", "old",
    "very", "after", "back", "most", "only", "year", "also", "well", "place", "live", "great", "where",
    "help", "through", "much", "before", "line", "right", "too", "mean", "same", "tell", "boy", "follow",
    "came", "want", "show", "around", "small", "three", "put", "end", "does", "another", "home", "hand",
    "big", "high", "such", "turn", "here", "why", "ask", "men", "went", "read", "need", "land", "different",
)  # fmt: skip

_WORDS_ARRAY = np.array(WORDS, dtype=object)


def synthetic_prompt(n_tokens: int, rng: np.random.Generator | random.Random) -> str:
    """Text of ≈ ``n_tokens`` BPE tokens: ``n_tokens`` common words drawn with ``rng`` (a seeded generator).

    Accepts a numpy ``Generator`` or a ``random.Random``; the same seed gives the same text.
    """
    n = int(n_tokens)
    if n <= 0:
        return ""
    if isinstance(rng, random.Random):
        idx = [rng.randrange(len(WORDS)) for _ in range(n)]
        return " ".join(WORDS[i] for i in idx)
    idx = rng.integers(0, len(WORDS), size=n)
    return " ".join(_WORDS_ARRAY[idx].tolist())


CHARS_PER_TOKEN = 4.0  # English prose under the common BPE vocabularies; code and maths run denser


def approx_tokens(text: str) -> int:
    """A rough token count (characters / 4) for a prompt hint or a default budget, never for measurement."""
    if not text:
        return 0
    return max(1, round(len(text) / CHARS_PER_TOKEN))


_BOXED = re.compile(r"\\(?:boxed|fbox)\s*(\{)?")


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, nested braces kept whole.

    ``\\boxed 5`` (no braces) gives ``5``; an unclosed last box (a truncated answer) gives ``None``.
    """
    if not text:
        return None
    matches = list(_BOXED.finditer(text))
    for m in reversed(matches):
        if m.group(1) is None:  # \boxed 5
            tail = re.match(r"\s*([^\s$]+)", text[m.end() :])
            if tail:
                return tail.group(1).rstrip(".")
            continue
        depth, start = 1, m.end()
        i = start
        while i < len(text):
            c = text[i]
            if c == "\\" and i + 1 < len(text):
                i += 2  # an escaped brace \{ does not open or close
                continue
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i].strip()
            i += 1
    return None
