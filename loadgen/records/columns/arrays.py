"""The building blocks of columns: categorical codes, and arrays that grow a block at a time (Python objects exist
only for the items of the current block)."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

__all__ = ["BLOCK_ROWS", "Categorical", "Codes", "Grow", "float_col"]

BLOCK_ROWS = 8192  # rows converted to numpy at a time


class Categorical:
    """Strings (or any JSON scalars) as int32 codes into ``values``; code -1 is None (or, for tags, absent)."""

    __slots__ = ("codes", "values")

    def __init__(self, codes: np.ndarray, values: list[Any]) -> None:
        self.codes = codes
        self.values = values

    def __len__(self) -> int:
        return len(self.codes)

    def value(self, i: int) -> Any:
        c = int(self.codes[i])
        return None if c < 0 else self.values[c]

    def equals(self, value: Any) -> np.ndarray:
        """Mask of the rows holding ``value``."""
        try:
            return self.codes == self.values.index(value)
        except ValueError:
            return np.zeros(len(self.codes), dtype=bool)

    def counts(self, mask: np.ndarray | None = None, none: Any = None) -> dict[Any, int]:
        """{value: count} over ``mask``, in order of first appearance; None values counted as ``none`` when given."""
        codes = self.codes if mask is None else self.codes[mask]
        if codes.size == 0:
            return {}
        uniq, first, cnt = np.unique(codes, return_index=True, return_counts=True)
        out: dict[Any, int] = {}
        for j in np.argsort(first, kind="stable"):
            c = int(uniq[j])
            if c < 0 and none is None:
                continue
            key = none if c < 0 else self.values[c]
            out[key] = out.get(key, 0) + int(cnt[j])
        return out

    def take(self, rows: np.ndarray) -> Categorical:
        return Categorical(self.codes[rows], self.values)


class Codes:
    """Builds one categorical column."""

    __slots__ = ("codes", "index", "values")

    def __init__(self) -> None:
        self.codes: list[int] = []
        self.index: dict[Any, int] = {}
        self.values: list[Any] = []

    def code(self, v: Any) -> int:
        if v is None:
            return -1
        key = v if isinstance(v, (str, int, float, bool)) else orjson.dumps(v, option=orjson.OPT_SORT_KEYS)
        c = self.index.get(key)
        if c is None:
            c = self.index[key] = len(self.values)
            self.values.append(v)
        return c


def float_col(values: list[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


class Grow:
    """A list that turns itself into numpy blocks every ``BLOCK_ROWS`` items."""

    __slots__ = ("dtype", "items", "parts")

    def __init__(self, dtype: Any) -> None:
        self.items: list[Any] = []
        self.parts: list[np.ndarray] = []
        self.dtype = dtype

    def append(self, v: Any) -> None:
        self.items.append(v)
        if len(self.items) >= BLOCK_ROWS:
            self.parts.append(np.asarray(self.items, dtype=self.dtype))
            self.items = []

    def array(self) -> np.ndarray:
        if self.items:
            self.parts.append(np.asarray(self.items, dtype=self.dtype))
            self.items = []
        if not self.parts:
            return np.empty(0, dtype=self.dtype)
        return np.concatenate(self.parts) if len(self.parts) > 1 else self.parts[0]
