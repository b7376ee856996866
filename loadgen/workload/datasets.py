"""Benchmark datasets -> :class:`RequestSpec` lists: the study's reasoning sets, ShareGPT and plain files.

Each dataset is read from a local file or folder in the hub dataset's own field layout (``--dataset-path``), or,
when no path is given and the optional ``datasets`` package is installed, from the hub itself. Every item becomes a
``RequestSpec`` whose chat message carries the dataset's customary instruction, whose ``reference`` is the answer
that :mod:`loadgen.accuracy` scores against, whose ``tags`` say ``dataset``, ``domain`` (math / knowledge / chat),
``difficulty`` (easy / medium / hard) and ``item`` (a stable id, so repeats of one item can be grouped), and whose
``max_tokens`` is the dataset's default budget unless the caller sets one.

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

import csv
import os
import random
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from loadgen.errors import WorkloadError
from loadgen.workload.spec import RequestSpec
from loadgen.workload.text import approx_tokens, last_boxed

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
    scoring: str = "none"  # math | numeric | choice | none: how loadgen.accuracy compares answers
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


# ---------------------------------------------------------------------------------------------------------------
# Reading rows from local files

SUPPORTED_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".tsv")


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a JSONL, JSON (a list, or an object holding one list), CSV/TSV or Parquet file."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        return _read_parquet(p)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise WorkloadError(f"cannot read dataset file {p}: {exc.strerror or exc}") from None
    if suffix in (".csv", ".tsv"):
        return _read_csv(p, raw, "\t" if suffix == ".tsv" else ",")
    if suffix == ".json":
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _read_jsonl(p, raw)  # JSON lines under a .json name (common)
        if isinstance(data, dict):
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(lists) != 1:
                raise WorkloadError(f"{p}: a JSON object, but not one holding a single list of rows")
            data = lists[0]
        if not isinstance(data, list):
            raise WorkloadError(f"{p}: expected a JSON list of objects")
        return [r for r in data if isinstance(r, dict)]
    return _read_jsonl(p, raw)


def _read_jsonl(p: Path, raw: bytes) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for lineno, line in enumerate(raw.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise WorkloadError(f"{p}:{lineno}: not a JSON object ({exc})") from None
        if not isinstance(row, dict):
            raise WorkloadError(f"{p}:{lineno}: expected a JSON object per line")
        rows.append(row)
    return rows


def _read_csv(p: Path, raw: bytes, delimiter: str) -> list[dict[str, Any]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    text = raw.decode("utf-8-sig", errors="replace")
    reader = csv.DictReader(text.splitlines(keepends=True), delimiter=delimiter)
    if not reader.fieldnames:
        raise WorkloadError(f"{p}: an empty CSV file (no header row)")
    return [dict(r) for r in reader]


def _read_parquet(p: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        pq = None
    if pq is not None:
        try:
            return pq.read_table(p).to_pylist()
        except OSError as exc:
            raise WorkloadError(f"cannot read Parquet file {p}: {exc}") from None
    try:
        import pandas as pd
    except ImportError:
        raise WorkloadError(
            f"{p} is Parquet, which needs pyarrow: pip install 'loadgen[datasets]' (or pip install pyarrow), "
            "or convert the file to JSONL"
        ) from None
    try:
        return pd.read_parquet(p).to_dict("records")
    except (ImportError, ValueError) as exc:
        raise WorkloadError(f"cannot read Parquet file {p} ({exc}); pip install pyarrow") from None


def _files_for(folder: Path, defn: DatasetDef) -> list[Path]:
    """The files of ``defn`` inside ``folder``: name hints first, then the split's files, one format only."""
    files = sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in SUPPORTED_SUFFIXES)
    if not files:
        raise WorkloadError(f"{folder}: no {', '.join(SUPPORTED_SUFFIXES)} files in this folder")

    def rel(f: Path) -> str:
        return str(f.relative_to(folder)).lower()

    hinted = [f for f in files if any(h in rel(f) for h in defn.path_hints)]
    if hinted:
        files = hinted
    if defn.hub_split:
        split = [f for f in files if re.search(rf"(^|[/_.-]){re.escape(defn.hub_split)}([/_.-]|$)", rel(f))]
        if split:
            files = split
    for suffix in SUPPORTED_SUFFIXES:  # one format: a folder may hold test.jsonl and test.parquet
        same = [f for f in files if f.suffix.lower() == suffix]
        if same:
            return same
    return files


def rows_from_path(path: str | os.PathLike[str], defn: DatasetDef | None = None) -> list[dict[str, Any]]:
    """Rows from a file, or from the dataset's files inside a folder (shards are concatenated in name order)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise WorkloadError(f"dataset path {p} does not exist")
    if p.is_dir():
        rows: list[dict[str, Any]] = []
        for f in _files_for(p, defn or DATASETS["file"]):
            rows.extend(read_rows(f))
        return rows
    return read_rows(p)


def rows_from_hub(defn: DatasetDef) -> list[dict[str, Any]]:
    """Rows through the optional ``datasets`` package; every way this fails says how to go on without it."""
    local = f"download it and pass --dataset {defn.name} --dataset-path FILE_OR_FOLDER"
    if defn.hub_id is None:
        raise WorkloadError(f"dataset {defn.name!r} has no hub copy loadgen knows of: {local} ({defn.note})")
    no_extra = WorkloadError(
        f"dataset {defn.name!r} needs a local copy or the hub extra: {local} "
        f"(the {defn.hub_id} files, same fields), or pip install 'loadgen[datasets]'"
    )
    if not _have_datasets_package():
        raise no_extra
    offline = hub_offline_reason()
    if offline and not _env_offline():
        # datasets reads these when imported: a cached copy still loads, and nothing retries the network
        os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    try:
        import datasets as hf_datasets
    except ImportError:
        raise no_extra from None
    try:
        ds = hf_datasets.load_dataset(defn.hub_id, defn.hub_config, split=defn.hub_split)
    except Exception as exc:  # the hub raises many types: gated, offline, not found
        text = f"{type(exc).__name__}: {exc}"
        if offline:
            raise WorkloadError(
                f"{defn.hub_id} is not in the local hub cache and the hub cannot be reached ({offline}): "
                f"download it elsewhere and pass --dataset {defn.name} --dataset-path FILE_OR_FOLDER"
            ) from None
        if defn.gated or "gated" in text.lower() or "401" in text or "403" in text:
            raise WorkloadError(
                f"{defn.hub_id} is gated: accept its terms on the dataset's hub page, log in (huggingface-cli "
                f"login, or HF_TOKEN), then retry; or {local} ({text[:160]})"
            ) from None
        raise WorkloadError(f"cannot load {defn.hub_id} from the hub ({text[:200]}); or {local}") from None
    return [dict(r) for r in ds]


_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
HUB_PROBE_TIMEOUT_S = 2.0


def _env_offline() -> str | None:
    for name in _OFFLINE_VARS:
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return name
    return None


def _have_datasets_package() -> bool:
    """Whether ``import datasets`` can work, without importing it (slow) yet."""
    if "datasets" in sys.modules:
        return sys.modules["datasets"] is not None
    import importlib.util

    return importlib.util.find_spec("datasets") is not None


def hub_offline_reason() -> str | None:
    """Why the hub is out of reach, or None when it may be reached. ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE``
    say so outright; otherwise one TCP connection to the hub (``HF_ENDPOINT``; through the HTTPS proxy when one is
    set) must open within HUB_PROBE_TIMEOUT_S. Without this, an offline ``load_dataset`` retries for about 30 s
    and prints every warning twice before failing."""
    name = _env_offline()
    if name:
        return f"{name}=1"
    import socket
    import threading
    from urllib.parse import urlsplit

    via = next(
        (
            os.environ[v]
            for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
            if os.environ.get(v)
        ),
        None,
    )
    url = urlsplit(via or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    result: list[BaseException | None] = []

    def probe() -> None:  # getaddrinfo has no timeout of its own: the thread bounds the whole attempt
        try:
            socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT_S).close()
            result.append(None)
        except OSError as exc:
            result.append(exc)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(HUB_PROBE_TIMEOUT_S)
    where = f"{host}:{port}" + (" (proxy)" if via else "")
    if not result:
        return f"no answer from {where} within {HUB_PROBE_TIMEOUT_S:g} s"
    if result[0] is not None:
        return f"cannot connect to {where}: {result[0].strerror or result[0]}"
    return None


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
