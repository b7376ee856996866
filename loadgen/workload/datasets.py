"""Benchmark datasets -> :class:`RequestSpec` lists: the study's reasoning sets, ShareGPT and plain files.

Each dataset is read from a local file or folder in the hub dataset's own field layout (``--dataset-path``), or,
when no path is given and the optional ``datasets`` package is installed, from the hub itself. Every item becomes a
``RequestSpec`` whose chat message carries the dataset's customary instruction, whose ``reference`` is the answer
that :mod:`loadgen.analysis.accuracy` scores against, whose ``tags`` say ``dataset``, ``domain`` (math / knowledge / chat),
``difficulty`` (easy / medium / hard) and ``item`` (a stable id, so repeats of one item can be grouped), and whose
``max_tokens`` is the dataset's default budget unless the caller sets one. This module owns the definitions and
the converters; reading the rows (files, folders, the hub) is ``loadgen.workload.dataset_sources``'.

Layouts (the hub datasets' columns; extra columns are ignored):

=============  =================================  ==========================================================
name           hub id (config / split)            fields used
=============  =================================  ==========================================================
gsm8k          openai/gsm8k (main / test)         question, answer (worked solution ending ``#### N``)
math500        HuggingFaceH4/MATH-500 (test)      problem, answer, subject, level, unique_id
aime2024       HuggingFaceH4/aime_2024 (train)    id, problem, answer  (solution, url, year unused)
gpqa_diamond   Idavidrein/gpqa (gpqa_diamond /    Question, Correct Answer, Incorrect Answer 1..3,
               train), gated; gpqa_diamond.csv    Record ID, High-level domain
sharegpt       ShareGPT_V3_unfiltered_cleaned_    id, conversations: [{from: human|gpt, value}]
               split.json
file           (none: a local JSONL/JSON/CSV/     prompt | question | problem | messages, and optional
               Parquet file)                      reference | answer, max_tokens, domain, difficulty, dataset
=============  =================================  ==========================================================
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from loadgen.errors import WorkloadError
from loadgen.workload.dataset_sources import rows_from_hub, rows_from_path
from loadgen.workload.spec import RequestSpec
from loadgen.workload.text import approx_tokens, last_boxed

__all__ = [
    "ALIASES",
    "DATASETS",
    "DatasetDef",
    "MATH_INSTRUCTION",
    "describe_datasets",
    "gpqa_choices",
    "gsm8k_reference",
    "load_dataset",
    "resolve_name",
    "specs_from_rows",
]

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
GPQA_INSTRUCTION = (
    "Answer the following multiple-choice question. Think step by step, then write your final answer on the last "
    "line in the form 'Answer: X', where X is one of A, B, C or D."
)
LETTERS = "ABCD"

Row = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class DatasetDef:
    """How one named dataset is found and turned into requests."""

    name: str
    domain: str  # math | knowledge | chat | (file: from the rows)
    difficulty: str | None  # easy | medium | hard
    default_max_tokens: int | None
    to_spec: Callable[[Row, int, DatasetDef, int], RequestSpec | None]  # (row, index, definition, seed)
    hub_id: str | None = None
    hub_config: str | None = None
    hub_split: str = "test"
    gated: bool = False
    path_hints: tuple[str, ...] = ()  # file/folder names that identify this dataset inside a shared folder
    scoring: str = "none"  # math | numeric | choice | none: how loadgen.analysis.accuracy compares answers
    note: str = ""


# ---------------------------------------------------------------------------------------------------------------
# Per-dataset item converters


def _field(row: Row, *names: str) -> Any:
    """The first present, non-empty field among ``names``, matched exactly and then case-insensitively."""
    for name in names:
        value = row.get(name)
        if value is not None and value != "":
            return value
    lowered = {str(k).lower(): v for k, v in row.items()}
    for name in names:
        value = lowered.get(name.lower())
        if value is not None and value != "":
            return value
    return None


def _required(row: Row, index: int, defn: DatasetDef, *names: str) -> Any:
    value = _field(row, *names)
    if value is None:
        keys = ", ".join(sorted(map(str, row.keys()))[:12])
        raise WorkloadError(
            f"{defn.name} item {index}: no {' / '.join(names)!s} field (has: {keys}); "
            f"is this file in the {defn.hub_id or defn.name} layout?"
        )
    return value


def _tags(defn: DatasetDef, item: str, **extra: Any) -> dict[str, Any]:
    tags: dict[str, Any] = {"dataset": defn.name, "domain": defn.domain}
    if defn.difficulty:
        tags["difficulty"] = defn.difficulty
    tags.update({k: v for k, v in extra.items() if v is not None})
    tags["item"] = item
    return tags


def _user_spec(
    text: str, *, reference: str | None, tags: dict[str, Any], max_tokens: int | None
) -> RequestSpec:
    return RequestSpec(
        prompt=text,
        messages=({"role": "user", "content": text},),
        max_tokens=max_tokens,
        reference=reference,
        tags=tags,
        input_tokens_hint=approx_tokens(text),
    )


def gsm8k_reference(answer: str) -> str:
    """The number after the last ``####`` of a GSM8K solution, thousands separators removed."""
    tail = answer.rsplit("####", 1)[-1] if "####" in answer else answer
    return tail.strip().replace(",", "").rstrip(".")


def _gsm8k(row: Row, index: int, defn: DatasetDef, seed: int) -> RequestSpec:
    question = str(_required(row, index, defn, "question")).strip()
    answer = str(_required(row, index, defn, "answer"))
    item = str(_field(row, "id") or index)
    return _user_spec(
        f"{question}\n\n{MATH_INSTRUCTION}",
        reference=gsm8k_reference(answer),
        tags=_tags(defn, f"gsm8k/{item}"),
        max_tokens=defn.default_max_tokens,
    )


def _math500(row: Row, index: int, defn: DatasetDef, seed: int) -> RequestSpec:
    problem = str(_required(row, index, defn, "problem")).strip()
    answer = _field(row, "answer")
    if answer is None:  # the original MATH layout has only the solution: its last \boxed{} is the answer
        answer = last_boxed(str(_required(row, index, defn, "solution")))
    level = _field(row, "level")
    if isinstance(level, str):  # original MATH: "Level 5"
        m = re.search(r"\d+", level)
        level = int(m.group()) if m else None
    subject = _field(row, "subject", "type")
    item = str(_field(row, "unique_id") or index)
    return _user_spec(
        f"{problem}\n\n{MATH_INSTRUCTION}",
        reference=None if answer is None else str(answer).strip(),
        tags=_tags(
            defn,
            f"math500/{item}",
            level=int(level) if level is not None else None,
            subject=str(subject).lower().replace(" ", "_") if subject else None,
        ),
        max_tokens=defn.default_max_tokens,
    )


def _aime(row: Row, index: int, defn: DatasetDef, seed: int) -> RequestSpec:
    problem = str(_required(row, index, defn, "problem")).strip()
    answer = _required(row, index, defn, "answer")
    item = str(_field(row, "id") or index)
    return _user_spec(
        f"{problem}\n\n{MATH_INSTRUCTION}",
        reference=str(answer).strip(),
        tags=_tags(defn, f"aime2024/{item}"),
        max_tokens=defn.default_max_tokens,
    )


def gpqa_choices(correct: str, incorrect: Sequence[str], key: str) -> tuple[list[str], str]:
    """The four options in a seeded order (seeded by ``key``, stable per item) and the correct letter."""
    options = [correct.strip(), *(s.strip() for s in incorrect)]
    order = list(range(len(options)))
    random.Random(key).shuffle(order)
    shuffled = [options[i] for i in order]
    return shuffled, LETTERS[order.index(0)]


def _gpqa(row: Row, index: int, defn: DatasetDef, seed: int) -> RequestSpec:
    question = str(_required(row, index, defn, "Question")).strip()
    correct = str(_required(row, index, defn, "Correct Answer"))
    wrong = [str(_required(row, index, defn, f"Incorrect Answer {i}")) for i in (1, 2, 3)]
    item = str(_field(row, "Record ID") or index)
    options, letter = gpqa_choices(correct, wrong, f"{seed}:{item}")
    body = "\n".join(f"{LETTERS[i]}) {text}" for i, text in enumerate(options))
    domain = _field(row, "High-level domain")
    return _user_spec(
        f"{GPQA_INSTRUCTION}\n\n{question}\n\n{body}",
        reference=letter,
        tags=_tags(defn, f"gpqa_diamond/{item}", subject=str(domain).strip().lower() if domain else None),
        max_tokens=defn.default_max_tokens,
    )


_HUMAN = frozenset({"human", "user"})
_ASSISTANT = frozenset({"gpt", "chatgpt", "assistant", "bard", "bing", "model"})


def _sharegpt(row: Row, index: int, defn: DatasetDef, seed: int) -> RequestSpec | None:
    """First human turn as the prompt; the first reply's length (≈ chars/4) as the output budget (vLLM's usage)."""
    turns = row.get("conversations") or row.get("conversation") or []
    if not isinstance(turns, list) or len(turns) < 2:
        return None
    first, second = turns[0], turns[1]
    if not (isinstance(first, Mapping) and isinstance(second, Mapping)):
        return None
    if str(first.get("from", first.get("role", ""))).lower() not in _HUMAN:
        return None
    if str(second.get("from", second.get("role", ""))).lower() not in _ASSISTANT:
        return None
    prompt = str(first.get("value", first.get("content", "")) or "")
    reply = str(second.get("value", second.get("content", "")) or "")
    if not prompt.strip() or not reply.strip():
        return None
    item = str(row.get("id") or index)
    return _user_spec(
        prompt, reference=None, tags=_tags(defn, f"sharegpt/{item}"), max_tokens=approx_tokens(reply)
    )


def _file(row: Row, index: int, defn: DatasetDef, seed: int) -> RequestSpec:
    """A plain row: ``prompt`` (or question/problem/input) or ``messages``, plus optional labels."""
    messages = row.get("messages")
    if isinstance(messages, str) and messages.strip().startswith("["):  # a CSV cell holding JSON
        try:
            messages = orjson.loads(messages)
        except orjson.JSONDecodeError:
            messages = None
    if isinstance(messages, list) and messages:
        msgs = tuple({"role": str(m.get("role", "user")), "content": m.get("content", "")} for m in messages)
        prompt = "\n\n".join(str(m["content"]) for m in msgs)
    else:
        text = _field(row, "prompt", "question", "problem", "input", "text")
        if text is None:
            keys = ", ".join(sorted(map(str, row.keys()))[:12])
            raise WorkloadError(
                f"row {index}: no prompt, question, problem, input, text or messages field (has: {keys})"
            )
        prompt = str(text)
        msgs = ({"role": "user", "content": prompt},)
    reference = _field(row, "reference", "answer", "target")
    if isinstance(reference, str) and "####" in reference:
        reference = gsm8k_reference(reference)
    max_tokens = _field(row, "max_tokens", "output_tokens", "output_len")
    dataset = str(_field(row, "dataset") or defn.name)
    tags: dict[str, Any] = {"dataset": dataset}
    for key in ("domain", "difficulty", "level", "subject"):
        value = _field(row, key)
        if value is not None:
            tags[key] = value
    tags["item"] = f"{dataset}/{_field(row, 'id', 'unique_id') or index}"
    return RequestSpec(
        prompt=prompt,
        messages=msgs,
        max_tokens=int(max_tokens) if max_tokens is not None else defn.default_max_tokens,
        reference=None if reference is None else str(reference).strip(),
        tags=tags,
        input_tokens_hint=approx_tokens(prompt),
    )


# ---------------------------------------------------------------------------------------------------------------
# The registry: a plain dict, name -> definition.

DATASETS: dict[str, DatasetDef] = {
    d.name: d
    for d in (
        DatasetDef(
            "gsm8k", "math", "easy", 4096, _gsm8k, "openai/gsm8k", "main", "test",
            path_hints=("gsm8k",), scoring="numeric",
        ),
        DatasetDef(
            "math500", "math", "medium", 8192, _math500, "HuggingFaceH4/MATH-500", None, "test",
            path_hints=("math-500", "math500", "math_500"), scoring="math",
        ),
        DatasetDef(
            "aime2024", "math", "hard", 16384, _aime, "HuggingFaceH4/aime_2024", None, "train",
            path_hints=("aime",), scoring="math",
        ),
        DatasetDef(
            "gpqa_diamond", "knowledge", "hard", 8192, _gpqa, "Idavidrein/gpqa", "gpqa_diamond", "train",
            gated=True, path_hints=("gpqa_diamond", "gpqa"), scoring="choice",
        ),
        DatasetDef(
            "sharegpt", "chat", None, None, _sharegpt, None, None, "train",
            path_hints=("sharegpt",), note="ShareGPT_V3_unfiltered_cleaned_split.json (anon8231489123/ShareGPT_Vicuna_unfiltered)",
        ),
        DatasetDef("file", "", None, None, _file, None, None, "", scoring="auto"),
    )
}  # fmt: skip

ALIASES: dict[str, str] = {
    "gsm8k": "gsm8k",
    "math500": "math500",
    "math-500": "math500",
    "math_500": "math500",
    "aime2024": "aime2024",
    "aime24": "aime2024",
    "aime_2024": "aime2024",
    "aime-2024": "aime2024",
    "gpqa": "gpqa_diamond",
    "gpqa_diamond": "gpqa_diamond",
    "gpqa-diamond": "gpqa_diamond",
    "sharegpt": "sharegpt",
    "file": "file",
    "jsonl": "file",
    "json": "file",
    "csv": "file",
    "parquet": "file",
    "custom": "file",
}


def resolve_name(name: str) -> DatasetDef:
    """The definition for a dataset name or alias (case-insensitive); a clear error listing the known names."""
    key = ALIASES.get(name.strip().lower())
    if key is None:
        known = ", ".join(sorted(DATASETS))
        raise WorkloadError(f"unknown dataset {name!r}; known: {known} (or 'file' with --dataset-path)")
    return DATASETS[key]


def specs_from_rows(
    rows: Iterable[Row], defn: DatasetDef, *, seed: int = 0, max_tokens: int | None = None
) -> list[RequestSpec]:
    """Convert rows; rows a dataset skips (ShareGPT without a human/gpt pair) are dropped."""
    out: list[RequestSpec] = []
    for index, row in enumerate(rows):
        spec = defn.to_spec(row, index, defn, seed)
        if spec is None:
            continue
        if max_tokens is not None:
            spec = _with_max_tokens(spec, max_tokens)
        out.append(spec)
    return out


def _with_max_tokens(spec: RequestSpec, max_tokens: int) -> RequestSpec:
    return replace(spec, max_tokens=max_tokens)


def load_dataset(
    name: str,
    path: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    max_tokens: int | None = None,
) -> list[RequestSpec]:
    """All items of dataset ``name`` as RequestSpecs, from ``path`` (file or folder) or else the hub.

    ``seed`` fixes GPQA's option order (per item, independent of sampling); ``max_tokens`` overrides every
    item's budget (otherwise the dataset default, or ShareGPT's per-item reply length).
    """
    defn = resolve_name(name)
    if path is None:
        if defn.name == "file":
            raise WorkloadError("--dataset file needs --dataset-path FILE (JSONL, JSON, CSV or Parquet)")
        rows = rows_from_hub(defn)
        where = defn.hub_id
    else:
        rows = rows_from_path(path, defn)
        where = str(path)
    specs = specs_from_rows(rows, defn, seed=seed, max_tokens=max_tokens)
    if not specs:
        raise WorkloadError(f"dataset {defn.name!r} from {where}: no usable items in {len(rows)} rows")
    return specs


def describe_datasets() -> str:
    """One line per known dataset, for ``--dataset list`` / help text."""
    lines = []
    for d in DATASETS.values():
        hub = (
            f"{d.hub_id}" + (f" ({d.hub_config})" if d.hub_config else "") if d.hub_id else "local file only"
        )
        budget = d.default_max_tokens if d.default_max_tokens else "per item"
        gated = ", gated" if d.gated else ""
        lines.append(
            f"{d.name:13} {d.domain or '-':9} {d.difficulty or '-':6} max_tokens={budget!s:8} {hub}{gated}"
        )
    return "\n".join(lines)
