"""Accuracy: final-answer extraction from the visible answer and answer equivalence (per-group tables:
:mod:`loadgen.analysis.accuracy_tables`).

Only ``output_text`` (the visible answer) is scored, never the reasoning. When a server without a reasoning parser
puts the reasoning inline, everything up to the last ``</think>`` is dropped, and text still inside an unclosed
``<think>`` (the budget ran out mid-reasoning) has no answer at all.

Extraction, by how a dataset is scored:

- ``math`` (MATH-500, AIME): the last ``\\boxed{...}`` (nested braces), else "the (final) answer is X", else ``#### X``.
- ``numeric`` (GSM8K): the same, then the last number in the text as a last resort (method ``last_number``).
- ``choice`` (GPQA): a letter A-D from ``\\boxed{C}``, "Answer: (C)", "**Answer:** C", "**C**", a last line "C",
  "option C".

Equivalence of maths answers uses the optional ``math-verify`` package when it is installed
(``pip install 'loadgen[accuracy]'``); the built-in checker is a fallback and says so in every method string
(``fallback:string``, ``fallback:numeric``, ``fallback:tuple``). It normalises LaTeX (``\\dfrac`` -> ``\\frac``,
``\\left``/``\\right``, ``\\text{}``, ``$``, ``^\\circ``, ``\\%``, thousands separators, a trailing period,
``x = ``) and compares numbers with a relative tolerance of 1e-6 after evaluating ``\\frac``, ``\\sqrt``, ``\\pi``
and ``a/b``; tuples and intervals element by element. An answer either checker accepts counts as correct.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loadgen.workload.datasets import ALIASES, DATASETS
from loadgen.workload.text import last_boxed

__all__ = [
    "Score",
    "checker_name",
    "extract_boxed",
    "extract_letter",
    "extract_math",
    "fallback_equal",
    "math_equal",
    "normalize_answer",
    "score",
    "scoring_kind",
    "to_number",
    "visible_answer",
]

FALLBACK_NAME = "built-in fallback (normalised LaTeX string + numeric, tolerance 1e-6)"
REL_TOL = 1e-6
ABS_TOL = 1e-9


@dataclass(frozen=True, slots=True)
class Score:
    """One scored answer. ``method`` is ``<extraction>/<checker>``, e.g. ``boxed/math_verify``."""

    correct: bool
    extracted: str | None
    method: str
    truncated: bool


# ---------------------------------------------------------------------------------------------------------------
# Extraction


def extract_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}``, nested braces kept whole; ``None`` if there is none."""
    return last_boxed(text)


def visible_answer(text: str | None) -> str:
    """The answer part of ``text``: after the last ``</think>``; empty while a ``<think>`` is still open."""
    if not text:
        return ""
    if "</think>" in text:
        return text.rsplit("</think>", 1)[1]
    if "<think>" in text:
        return ""  # reasoning never closed: no answer was written
    return text


_HASH = re.compile(r"####\s*([^\n]+)")
_ANSWER_IS = re.compile(
    r"(?:final\s+answer|the\s+answer|answer)\s*(?:is|:|=)\s*[:\s]*(.+?)\s*(?:$|\n|\.\s|\.$)",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def _clean_inline(s: str) -> str:
    s = s.strip().strip("*_").strip()
    if s.startswith("$") and s.endswith("$") and len(s) > 1:
        s = s.strip("$")
    boxed = last_boxed(s)
    return boxed if boxed is not None else s


def extract_math(text: str, *, last_number: bool = False) -> tuple[str | None, str]:
    """(answer, extraction method) from an answer text: boxed, 'the answer is', ``####``, last number."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed, "boxed"
    matches = _ANSWER_IS.findall(text)
    if matches:
        return _clean_inline(matches[-1]), "answer_is"
    hashes = _HASH.findall(text)
    if hashes:
        return _clean_inline(hashes[-1]), "hash"
    if last_number:
        numbers = _NUMBER.findall(text)
        if numbers:
            return numbers[-1], "last_number"
    return None, "none"


_LETTER_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "answer_letter",
        re.compile(
            r"(?i:answer)(?:\s+(?i:is))?\s*[:：]?[\s*_]*(?:\$?\\boxed\{)?(?:\\text(?:bf)?\{)?[\s(\[]*([A-D])"
            r"(?![A-Za-z0-9])"
        ),
    ),
    ("bold_letter", re.compile(r"\*\*\s*\(?([A-D])\)?[.:]?\s*\*\*")),
    ("option_letter", re.compile(r"(?i:option|choice)\s+\(?([A-D])\)?(?![A-Za-z0-9])")),
)
_LONE_LETTER = re.compile(r"^[\s*_]*[(\[]?([A-D])[)\].:]?[\s*_]*$")
_BOXED_LETTER = re.compile(r"^\(?(?:\\text(?:bf)?\{)?\(?([A-D])\)?\}?\)?$")


def extract_letter(text: str) -> tuple[str | None, str]:
    """(letter A-D, extraction method) from a multiple-choice answer."""
    boxed = last_boxed(text)
    if boxed is not None:
        m = _BOXED_LETTER.match(boxed.strip())
        if m:
            return m.group(1), "boxed"
    for method, pattern in _LETTER_PATTERNS:
        found = pattern.findall(text)
        if found:
            return found[-1], method
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if lines:
        m = _LONE_LETTER.match(lines[-1])
        if m:
            return m.group(1), "last_line"
    return None, "none"


# ---------------------------------------------------------------------------------------------------------------
# Normalisation and the built-in equivalence check


_TEXT_CMD = re.compile(
    r"\\(?:text|textbf|textrm|textit|mathrm|mathbf|mathit|mbox|operatorname)\s*\{([^{}]*)\}"
)
_SIZING = re.compile(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big|bigg|Bigg)(?![a-zA-Z])")


def normalize_answer(s: str) -> str:
    """A canonical string for a maths answer (see the module docstring for what is removed)."""
    s = s.strip()
    for a, b in (("\\(", ""), ("\\)", ""), ("\\[", ""), ("\\]", "")):
        s = s.replace(a, b)
    s = s.replace("\\$", "").replace("$", "")
    s = re.sub(r"\\[!,;: ]|~|\\quad|\\qquad", " ", s)
    s = _SIZING.sub("", s)
    s = s.replace("\\displaystyle", "")
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    previous = None
    while previous != s:
        previous = s
        s = _TEXT_CMD.sub(r"\1", s)
    s = re.sub(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|°|\\degree", "", s)
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace("{,}", "").replace("\\,", "")
    s = s.strip().rstrip(".").strip()
    m = re.fullmatch(r"[a-zA-Z](?:_\{?\w+\}?)?\s*=\s*([^=]+)", s)  # "x = 5" -> "5"
    if m:
        s = m.group(1).strip()
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)  # \frac12
    s = re.sub(r"\\frac\s*(\d)\s*\{", r"\\frac{\1}{", s)  # \frac1{2}
    s = re.sub(r"\\frac\s*(\{[^{}]*\})\s*(\d)", r"\\frac\1{\2}", s)  # \frac{1}2
    s = re.sub(r"\\sqrt\s*(\d+)", r"\\sqrt{\1}", s)  # \sqrt2
    s = re.sub(r"\s+", "", s)
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", s):  # 1,000 -> 1000 (a lone number only)
        s = s.replace(",", "")
    m = re.fullmatch(r"\(([A-Za-z])\)", s)  # (C) -> C
    if m:
        s = m.group(1)
    return s


def _brace_arg(s: str, i: int) -> tuple[str, int]:
    """The ``{...}`` group starting at ``s[i]`` (or a single character) and the index after it."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        raise ValueError("missing argument")
    if s[i] != "{":
        return s[i], i + 1
    depth = 0
    for j in range(i, len(s)):
        if s[j] == "{":
            depth += 1
        elif s[j] == "}":
            depth -= 1
            if depth == 0:
                return s[i + 1 : j], j + 1
    raise ValueError("unbalanced braces")


def _latex_to_expr(s: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(s):
        if s.startswith("\\frac", i):
            num, i = _brace_arg(s, i + 5)
            den, i = _brace_arg(s, i)
            out.append(f"(({_latex_to_expr(num)})/({_latex_to_expr(den)}))")
        elif s.startswith("\\sqrt", i):
            i += 5
            root = "2"
            if i < len(s) and s[i] == "[":
                j = s.index("]", i)
                root, i = s[i + 1 : j], j + 1
            arg, i = _brace_arg(s, i)
            out.append(f"(({_latex_to_expr(arg)})**(1/({_latex_to_expr(root)})))")
        elif s.startswith("\\pi", i):
            out.append("(pi)")
            i += 3
        elif s.startswith("\\cdot", i) or s.startswith("\\times", i):
            out.append("*")
            i += 5 if s.startswith("\\cdot", i) else 6
        elif s[i] == "{":
            arg, i = _brace_arg(s, i)
            out.append(f"({_latex_to_expr(arg)})")
        elif s[i] == "^":
            out.append("**")
            i += 1
        elif s[i] == "\\":
            raise ValueError("unsupported command")
        else:
            out.append(s[i])
            i += 1
    expr = re.sub(r"(?<![\d.])0+(?=\d)", "", "".join(out))  # 033 -> 33 (Python rejects leading zeros)
    # implicit multiplication: 2(…), )(, 2pi, )2
    expr = re.sub(r"(?<=[\d)])\s*(?=[(p])", "*", expr)
    expr = re.sub(r"(?<=\))\s*(?=\d)", "*", expr)
    return expr


_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _eval(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return float(node.value)
    if isinstance(node, ast.Name) and node.id == "pi":
        return math.pi
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        v = _eval(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            if abs(right) > 64 or abs(left) > 1e12:
                raise ValueError("power too large")
            return float(left**right)
        op = _BINOPS.get(type(node.op))
        if op is not None:
            return op(left, right)
    raise ValueError("not a number")


def to_number(s: str) -> float | None:
    """The value of a normalised numeric answer (``3``, ``-0.5``, ``\\frac{1}{2}``, ``2\\sqrt{3}``, ``3/4``)."""
    if not s or len(s) > 200:
        return None
    try:
        value = _eval(ast.parse(_latex_to_expr(s), mode="eval"))
    except (ValueError, SyntaxError, ZeroDivisionError, OverflowError, TypeError, RecursionError):
        return None
    if isinstance(value, complex) or math.isnan(value) or math.isinf(value):
        return None
    return value


def _split_top(s: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, c in enumerate(s):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(s[start:i])
            start = i + 1
    parts.append(s[start:])
    return parts


def _fallback_equal(a: str, b: str, depth: int = 0) -> tuple[bool, str]:
    if a == b:
        return True, "fallback:string"
    if a.lower() == b.lower() and not re.search(r"\\[a-zA-Z]", a):
        return True, "fallback:string"
    x, y = to_number(a), to_number(b)
    if x is not None and y is not None:
        return math.isclose(x, y, rel_tol=REL_TOL, abs_tol=ABS_TOL), "fallback:numeric"
    if depth < 2:
        ba, bb = _bracketed(a), _bracketed(b)
        if ba and bb and ba[0] == bb[0]:
            ea, eb = _split_top(ba[1]), _split_top(bb[1])
            if len(ea) == len(eb) and len(ea) > 1:
                ok = all(_fallback_equal(p, q, depth + 1)[0] for p, q in zip(ea, eb, strict=True))
                return ok, "fallback:tuple"
        elif "," in a and "," in b and not ba and not bb:  # a bare list: 1,2 vs 1, 2
            ea, eb = _split_top(a), _split_top(b)
            if len(ea) == len(eb):
                ok = all(_fallback_equal(p, q, depth + 1)[0] for p, q in zip(ea, eb, strict=True))
                return ok, "fallback:tuple"
    return False, "fallback:string"


def _bracketed(s: str) -> tuple[str, str] | None:
    """(bracket pair, inside) when the whole of ``s`` is one ( ) / [ ] / ( ] / [ ) group."""
    if len(s) < 2 or s[0] not in "([" or s[-1] not in ")]":
        return None
    depth = 0
    for i, c in enumerate(s):
        depth += c in "([{"
        depth -= c in ")]}"
        if depth == 0 and i < len(s) - 1:
            return None
    return s[0] + s[-1], s[1:-1]


def fallback_equal(pred: str, ref: str) -> tuple[bool, str]:
    """The built-in equivalence: normalised strings, then numbers, then tuples element by element."""
    return _fallback_equal(normalize_answer(pred), normalize_answer(ref))


_MATH_VERIFY: Any = None  # the module, False when missing, None before the first look


def _math_verify() -> Any:
    global _MATH_VERIFY
    if _MATH_VERIFY is None:
        try:
            import math_verify

            _MATH_VERIFY = math_verify
        except ImportError:
            _MATH_VERIFY = False
    return _MATH_VERIFY


def checker_name() -> str:
    """Which maths checker scores this run: math-verify (with the fallback beside it) or the fallback alone."""
    mv = _math_verify()
    if mv:
        try:
            from importlib.metadata import version as _version

            version = _version("math-verify")
        except Exception:
            version = getattr(mv, "__version__", "")
        return f"math-verify {version}".strip() + " (built-in fallback also accepts)"
    return FALLBACK_NAME + "; pip install 'loadgen[accuracy]' for math-verify"


def math_equal(pred: str, ref: str) -> tuple[bool, str]:
    """(equivalent?, checker) for two maths answers: math-verify when installed, else or then the fallback."""
    mv = _math_verify()
    judged = False  # whether math-verify gave a verdict (it raises on odd inputs, and on timeouts off the main thread)
    if mv:
        try:
            gold = mv.parse(f"${ref}$")
            answer = mv.parse(f"${pred}$")
            if gold and answer and mv.verify(gold, answer):
                return True, "math_verify"
            judged = True
        except Exception:
            judged = False
    ok, method = fallback_equal(pred, ref)
    if judged and not ok:
        return False, "math_verify"  # both said no; math-verify's is the verdict that counts
    return ok, method  # the fallback's verdict, labelled as the fallback's


# ---------------------------------------------------------------------------------------------------------------
# Scoring one answer


def scoring_kind(dataset: str | None, reference: str) -> str:
    """math | numeric | choice, from the dataset's definition, or guessed from the reference for plain files."""
    key = ALIASES.get((dataset or "").lower())
    kind = DATASETS[key].scoring if key else "auto"
    if kind in ("math", "numeric", "choice"):
        return kind
    ref = reference.strip()
    if re.fullmatch(r"\(?[A-Da-d]\)?", ref):
        return "choice"
    if re.fullmatch(r"-?[\d,]*\.?\d+", ref):
        return "numeric"
    return "math"


def _text_and_finish(record_like: Any) -> tuple[str | None, str | None]:
    if record_like is None or isinstance(record_like, str):
        return record_like, None
    if isinstance(record_like, Mapping):
        return record_like.get("output_text"), record_like.get("finish_reason")
    return getattr(record_like, "output_text", None), getattr(record_like, "finish_reason", None)


def score(record_like: Any, reference: str | None, dataset: str | None) -> Score:
    """Score one answer: ``record_like`` is a RequestRecord, a dict with ``output_text``/``finish_reason``, or
    the answer text itself. Only the visible answer is read."""
    text, finish = _text_and_finish(record_like)
    truncated = finish == "length"
    if reference is None:
        return Score(False, None, "no_reference", truncated)
    answer = visible_answer(text)
    if not answer.strip():
        return Score(False, None, "no_answer", truncated)
    kind = scoring_kind(dataset, reference)
    if kind == "choice":
        letter, how = extract_letter(answer)
        if letter is None:
            return Score(False, None, "none", truncated)
        ref_letter = reference.strip().strip("()").upper()
        return Score(letter.upper() == ref_letter, letter, f"{how}/exact", truncated)
    extracted, how = extract_math(answer, last_number=kind == "numeric")
    if extracted is None:
        return Score(False, None, "none", truncated)
    if kind == "numeric":
        x, y = to_number(normalize_answer(extracted)), to_number(normalize_answer(reference))
        if x is None:  # "18 dollars", "\\$18 per hour": the first number in the extracted answer
            numbers = _NUMBER.findall(extracted)
            x = to_number(normalize_answer(numbers[0])) if numbers else None
        if x is not None and y is not None:
            return Score(
                math.isclose(x, y, rel_tol=REL_TOL, abs_tol=ABS_TOL), extracted, f"{how}/numeric", truncated
            )
    ok, checker = math_equal(extracted, reference)
    return Score(ok, extracted, f"{how}/{checker}", truncated)
