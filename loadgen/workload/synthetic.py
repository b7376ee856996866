"""Synthetic requests: prompt and output lengths drawn (seeded) from simple distributions."""

from __future__ import annotations

import numpy as np

from loadgen.config import LengthDist
from loadgen.workload.table import SpecTable, SyntheticSource, synthetic_table
from loadgen.workload.text import synthetic_prompt

__all__ = ["draw_lengths", "synthetic_specs"]


def draw_lengths(dist: LengthDist, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` integer lengths >= 1 from ``dist`` (clipped to its maximum)."""
    if dist.kind == "fixed":
        out = np.full(n, dist.a)
    elif dist.kind == "uniform":
        out = rng.integers(int(dist.a), int(dist.b) + 1, size=n)
    elif dist.kind == "normal":
        out = rng.normal(dist.a, dist.b, size=n)
    elif dist.kind == "lognormal":
        out = rng.lognormal(np.log(dist.a), dist.b, size=n)
    else:  # validated in config
        raise ValueError(dist.kind)
    return np.clip(np.rint(out), 1, dist.max_value).astype(np.int64)


def synthetic_specs(
    n: int,
    input_len: LengthDist,
    output_len: LengthDist | None,
    seed: int,
    prefix_len: int = 0,
) -> SpecTable:
    """``n`` specs with prompts of ≈ the drawn token counts; a shared prefix of ``prefix_len`` tokens if asked.

    The lengths are drawn here (seeded); each prompt is made when its request is sent
    (:class:`~loadgen.workload.table.SyntheticSource`), so a plan of millions of requests stays small.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1A7]))
    in_lens = draw_lengths(input_len, n, rng).astype(np.int32)
    out_lens = draw_lengths(output_len, n, rng).astype(np.int32) if output_len is not None else None
    prefix = synthetic_prompt(prefix_len, np.random.default_rng([seed, 0xBEEF])) + " " if prefix_len else ""
    for a in (in_lens, out_lens):
        if a is not None:
            a.flags.writeable = False
    source = SyntheticSource(in_lens, out_lens, seed, prefix, prefix_len, None)
    return synthetic_table(n, source)
