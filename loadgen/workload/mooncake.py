"""Mooncake traces replayed cache-faithfully: prompts rebuilt block for block from the trace's ``hash_ids``.

A Mooncake trace (FAST'25; JSONL) has one request a line: ``timestamp`` (ms since the trace began),
``input_length`` and ``output_length`` (tokens) and ``hash_ids``: one id per KV block of the prompt (512 tokens a
block in Mooncake's release). Two requests whose ``hash_ids`` begin alike share exactly that prefix of their
prompts. The session variant adds ``session_id`` (turns of one conversation, in file order) and ``delay``: ms
from the previous turn's answer to this turn (the first turn of a session keeps its ``timestamp``).

The original text is not in the trace, so each block id gets a deterministic text of ``block_size`` words (a
seeded draw of words that are one token each in the common BPE vocabularies and in the simulator's tokenizer),
and a prompt is its blocks' texts in order, the last block cut to what ``input_length`` leaves. Requests that
share block ids therefore share exactly those prompt prefixes and nothing else: the server's prefix cache sees
the trace's reuse. Each turn's prompt is given whole (the trace's ids already hold the conversation's history),
so a session's turns add no history of their own. On a real tokenizer the block boundaries move by a token or
two (a leading word may merge differently); the sharing itself is exact in text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from loadgen.errors import WorkloadError
from loadgen.workload.spec import RequestSpec
from loadgen.workload.text import WORDS

_TAGS = {"dataset": "mooncake"}


@dataclass(frozen=True, slots=True)
class MooncakeRow:
    timestamp_ms: float
    input_length: int
    output_length: int
    hash_ids: tuple[int, ...]
    session: str | None = None
    delay_ms: float | None = None


def looks_like_mooncake(path: str) -> bool:
    """Whether a trace file's first line is a Mooncake JSON object (``hash_ids``)."""
    try:
        with open(Path(path).expanduser(), "rb") as fh:
            first = fh.readline().strip()
    except OSError:
        return False
    return first.startswith(b"{") and b'"hash_ids"' in first


def trace_is_mooncake(trace_format: str, path: str | None) -> bool:
    """Whether ``--trace PATH`` (``--trace-format``, ``auto`` by default) is a Mooncake trace: sessions, not arrivals."""
    if trace_format == "mooncake":
        return True
    return trace_format == "auto" and bool(path) and looks_like_mooncake(str(path))


def read_mooncake(path: str) -> list[MooncakeRow]:
    """Every row of a Mooncake trace, in file order; a bad line is one clear error."""
    p = Path(path).expanduser()
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise WorkloadError(f"cannot read trace {p}: {exc.strerror or exc}") from None
    rows = []
    for lineno, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            o = orjson.loads(line)
            ids = tuple(int(h) for h in o.get("hash_ids") or ())
            sid = o.get("session_id")
            row = MooncakeRow(
                float(o.get("timestamp", 0) or 0), int(o["input_length"]), int(o.get("output_length") or 1),
                ids, None if sid is None else str(sid),
                None if o.get("delay") is None else float(o["delay"]),
            )  # fmt: skip
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise WorkloadError(
                f"{p}:{lineno}: not a mooncake row (timestamp, input_length, output_length, hash_ids): {exc}"
            ) from None
        if row.input_length < 1 or row.output_length < 1:
            raise WorkloadError(f"{p}:{lineno}: input_length and output_length must be >= 1")
        rows.append(row)
    if not rows:
        raise WorkloadError(f"trace {p} has no rows")
    return rows


class BlockText:
    """The text of each block id: ``block_size`` words drawn from a generator seeded by (seed, id)."""

    def __init__(self, block_size: int, seed: int = 0) -> None:
        self.block_size = block_size
        self.seed = seed
        self._cache: dict[int, list[str]] = {}

    def words(self, block: int) -> list[str]:
        w = self._cache.get(block)
        if w is None:
            rng = np.random.default_rng([self.seed, 0x3007, block & 0xFFFFFFFF, block >> 32])
            w = self._cache[block] = [WORDS[i] for i in rng.integers(0, len(WORDS), self.block_size).tolist()]
        return w

    def prompt(self, hash_ids: Iterable[int], input_length: int) -> str:
        """The prompt of ``input_length`` words made of these blocks (the last one cut; more blocks than the
        length needs are ignored, fewer are padded by repeating the last id's words)."""
        out: list[str] = []
        ids = list(hash_ids)
        left = input_length
        for h in ids:
            if left <= 0:
                break
            take = min(left, self.block_size)
            out += self.words(h)[:take]
            left -= take
        if left > 0 and ids:  # a row whose ids cover fewer tokens than its length: its own tail block
            tail = self.words(-1 - len(ids) - (ids[-1] << 20))
            while left > 0:
                out += tail[: min(left, self.block_size)]
                left -= self.block_size
        return " ".join(out)


def mooncake_specs(rows: list[MooncakeRow], block_size: int, seed: int = 0) -> list[RequestSpec]:
    """One spec per row: its prompt rebuilt from its blocks, its output length as the budget."""
    text = BlockText(block_size, seed)
    return [
        RequestSpec(
            prompt=text.prompt(r.hash_ids, r.input_length),
            max_tokens=r.output_length,
            tags=_TAGS,
            input_tokens_hint=r.input_length,
        )
        for r in rows
    ]


def mooncake_sessions(rows: list[MooncakeRow]) -> list[list[int]]:
    """Row numbers grouped into sessions (file order within each; a row without a session_id is its own),
    sessions ordered by their first row's timestamp."""
    groups: dict[str, list[int]] = {}
    order: list[list[int]] = []
    for i, r in enumerate(rows):
        if r.session is None:
            order.append([i])
            continue
        g = groups.get(r.session)
        if g is None:
            g = groups[r.session] = []
            order.append(g)
        g.append(i)
    order.sort(key=lambda g: rows[g[0]].timestamp_ms)
    return order
