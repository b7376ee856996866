"""The specs of a plan, as a table that costs a few bytes a request: a spec is made when it is sent.

A run of a day at 50 req/s plans 4.3 M requests. Held as objects (a spec, its prompt, its tags: ~600 bytes each),
the plan alone was 2.6 GB before the first request; memory grew with the run's length even though nothing was
kept while it ran. A :class:`SpecTable` is a *source* that can make the spec of any row, and the rows of the plan
(an int64 array): a synthetic workload keeps its drawn lengths (two int32 per request) and one pool of words per
seed, and cuts each prompt from that pool when asked (a few microseconds); a finite workload (prompts file,
dataset, trace lengths) keeps its own specs once, and the plan refers to them by row (a file of 100 prompts sent
a million times is 100 specs). Shards and merges only move rows: every sender makes the same spec for a request
as a one-process run would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np

from loadgen.workload.spec import RequestSpec
from loadgen.workload.text import WORDS

__all__ = ["FixedSource", "SpecSource", "SpecTable", "SyntheticSource", "synthetic_table"]

_MASK64 = (1 << 64) - 1
_POOL_MIN = 1 << 16  # words in a synthetic pool (at least twice the longest prompt)


class SpecSource(Protocol):
    def spec(self, row: int) -> RequestSpec: ...

    def max_tokens(self, rows: np.ndarray) -> np.ndarray:
        """Each row's ``max_tokens`` as float64 (NaN: none, the server's default)."""
        ...

    @property
    def has_references(self) -> bool: ...


def _frozen(a: Any, dtype: Any = np.int64) -> np.ndarray:
    out = np.array(a, dtype=dtype)
    out.flags.writeable = False
    return out


@dataclass(frozen=True, eq=False)
class FixedSource:
    """Specs given one by one (a prompts file, a dataset, a trace's lengths, specs passed in): row ``r`` is
    ``specs[r]``."""

    specs: tuple[RequestSpec, ...]

    def spec(self, row: int) -> RequestSpec:
        return self.specs[row]

    def max_tokens(self, rows: np.ndarray) -> np.ndarray:
        own = np.array(
            [np.nan if s.max_tokens is None else s.max_tokens for s in self.specs], dtype=np.float64
        )
        return own[rows] if len(own) else np.full(len(rows), np.nan)

    @property
    def has_references(self) -> bool:
        return any(s.reference is not None for s in self.specs)


_SYNTHETIC_TAGS = MappingProxyType({"dataset": "synthetic"})


@dataclass(frozen=True, eq=False)
class SyntheticSource:
    """Prompts of ≈ ``in_lens[r]`` tokens and budgets ``out_lens[r]`` (else ``default_max_tokens``), with an optional
    shared prefix; each prompt starts with its own row number, so no two share a prefix by accident (prefix
    caching would otherwise flatter the server), and its words are a window of the seed's pool that starts at a
    hash of the row."""

    in_lens: np.ndarray  # int32
    out_lens: np.ndarray | None  # int32
    seed: int
    prefix: str
    prefix_len: int
    default_max_tokens: int | None

    def __post_init__(self) -> None:
        longest = int(self.in_lens.max()) if len(self.in_lens) else 1
        n = max(_POOL_MIN, 2 * longest + 1)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x9001]))
        words = [WORDS[i] for i in rng.integers(0, len(WORDS), size=n).tolist()]
        starts = np.zeros(n + 1, dtype=np.int64)
        np.cumsum([len(w) + 1 for w in words], out=starts[1:])
        object.__setattr__(self, "_text", " ".join(words) + " ")
        object.__setattr__(self, "_starts", starts)

    def __getstate__(self) -> dict[str, Any]:  # the pool is made again where the source is unpickled
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def spec(self, row: int) -> RequestSpec:
        n_in = int(self.in_lens[row])
        body = max(n_in - self.prefix_len - 2, 1)
        starts = self._starts  # type: ignore[attr-defined]
        first = ((row * 0x9E3779B97F4A7C15 + self.seed) & _MASK64) % (len(starts) - 1 - body)
        words = self._text[int(starts[first]) : int(starts[first + body]) - 1]  # type: ignore[attr-defined]
        out = self.out_lens
        return RequestSpec(
            prompt=f"{self.prefix}{row}: {words}",
            max_tokens=int(out[row]) if out is not None else self.default_max_tokens,
            tags=_SYNTHETIC_TAGS,
            input_tokens_hint=n_in,
        )

    def max_tokens(self, rows: np.ndarray) -> np.ndarray:
        if self.out_lens is not None:
            return self.out_lens[rows].astype(np.float64)
        fill = np.nan if self.default_max_tokens is None else float(self.default_max_tokens)
        return np.full(len(rows), fill)

    @property
    def has_references(self) -> bool:
        return False


@dataclass(frozen=True, eq=False)
class SpecTable(Sequence[RequestSpec]):
    """Request ``j`` of a plan is ``source.spec(rows[j])``."""

    source: Any  # a SpecSource
    rows: np.ndarray  # int64, read-only

    @classmethod
    def of(cls, specs: Sequence[RequestSpec]) -> SpecTable:
        """Specs given one by one."""
        if isinstance(specs, SpecTable):
            return specs
        return cls(FixedSource(tuple(specs)), _frozen(np.arange(len(specs))))

    @classmethod
    def cycled(cls, specs: Sequence[RequestSpec], n: int) -> SpecTable:
        """``n`` requests going round ``specs`` (a prompts file shorter than the run)."""
        return cls(FixedSource(tuple(specs)), _frozen(np.arange(n) % max(len(specs), 1)))

    def __len__(self) -> int:
        return len(self.rows)

    def __eq__(self, other: object) -> bool:
        """The same specs in the same order (made and compared one by one)."""
        if not isinstance(other, Sequence) or len(other) != len(self):
            return NotImplemented if not isinstance(other, Sequence) else False
        return all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __getitem__(self, j: Any) -> Any:
        if isinstance(j, slice):
            return SpecTable(self.source, _frozen(self.rows[j]))
        return self.source.spec(int(self.rows[j]))

    def __iter__(self) -> Iterator[RequestSpec]:
        spec, rows = self.source.spec, self.rows
        for j in range(len(rows)):
            yield spec(int(rows[j]))

    def take(self, positions: np.ndarray) -> SpecTable:
        """The specs at ``positions`` (a shard of the plan)."""
        return SpecTable(self.source, _frozen(self.rows[np.asarray(positions, dtype=np.int64)]))

    def max_tokens(self) -> np.ndarray:
        """Every request's ``max_tokens`` (float64, NaN: none), without making the specs."""
        return self.source.max_tokens(self.rows)

    @property
    def has_references(self) -> bool:
        return bool(self.source.has_references)

    def final(self, max_tokens: int | None, transform: Any = None) -> SpecTable:
        """The specs as they are sent: their own budget, else ``max_tokens``; then ``transform`` (a function of
        a list of specs, e.g. the simulator's hints) on a finite source."""
        src = self.source
        if isinstance(src, SyntheticSource):
            if max_tokens is not None and src.default_max_tokens is None:
                src = replace(src, default_max_tokens=max_tokens)
            return SpecTable(src, self.rows)
        specs = list(src.specs)
        if max_tokens is not None:
            specs = [s if s.max_tokens is not None else replace(s, max_tokens=max_tokens) for s in specs]
        if transform is not None:
            specs = transform(specs)
        return SpecTable(FixedSource(tuple(specs)), self.rows)


def synthetic_table(n: int, source: SyntheticSource) -> SpecTable:
    return SpecTable(source, _frozen(np.arange(n)))
