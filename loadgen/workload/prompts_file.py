"""A JSONL file of prompts or chat messages, one request per line.

Each line is an object with ``prompt`` (a string) or ``messages`` (chat messages), and optionally ``max_tokens``,
``reference`` and ``tags``; a bare JSON string is a prompt.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from loadgen.errors import WorkloadError
from loadgen.workload.spec import RequestSpec

__all__ = ["json_lines", "load_prompts_file"]


def load_prompts_file(path: str | Path) -> list[RequestSpec]:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise WorkloadError(f"cannot read prompts file {p}: {exc.strerror or exc}") from None
    specs = [_spec(obj, p, lineno) for lineno, obj in json_lines(p, raw)]
    if not specs:
        raise WorkloadError(f"prompts file {p} has no requests")
    return specs


def json_lines(p: Path, raw: bytes, invalid: str = "not valid JSON") -> Iterator[tuple[int, Any]]:
    """Each non-blank line of ``raw`` (the file ``p``) parsed, with its line number; a line that is not JSON is a
    WorkloadError ``p:LINE: {invalid} (why)``."""
    for lineno, line in enumerate(raw.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise WorkloadError(f"{p}:{lineno}: {invalid} ({exc})") from None
        yield lineno, obj


def _spec(obj: object, p: Path, lineno: int) -> RequestSpec:
    where = f"{p}:{lineno}"
    if isinstance(obj, str):
        return RequestSpec(prompt=obj, tags={"dataset": "file"})
    if not isinstance(obj, dict):
        raise WorkloadError(f"{where}: expected an object with 'prompt' or 'messages'")
    max_tokens = obj.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise WorkloadError(f"{where}: max_tokens must be a positive integer")
    tags = obj.get("tags") or {}
    if not isinstance(tags, dict):
        raise WorkloadError(f"{where}: tags must be an object")
    tags = {"dataset": "file", **tags}
    reference = obj.get("reference")
    if "messages" in obj:
        msgs = obj["messages"]
        if (
            not isinstance(msgs, list)
            or not msgs
            or not all(isinstance(m, dict) and "role" in m and "content" in m for m in msgs)
        ):
            raise WorkloadError(f"{where}: messages must be a non-empty list of {{role, content}} objects")
        prompt = "\n\n".join(str(m["content"]) for m in msgs)
        return RequestSpec(
            prompt=prompt, messages=tuple(msgs), max_tokens=max_tokens, reference=reference, tags=tags
        )
    if "prompt" in obj:
        if not isinstance(obj["prompt"], str) or not obj["prompt"]:
            raise WorkloadError(f"{where}: prompt must be a non-empty string")
        return RequestSpec(prompt=obj["prompt"], max_tokens=max_tokens, reference=reference, tags=tags)
    raise WorkloadError(f"{where}: expected 'prompt' or 'messages'")
