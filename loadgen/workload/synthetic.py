"""Synthetic requests: prompt and output lengths drawn (seeded) from simple distributions."""

from __future__ import annotations

import numpy as np

from loadgen.config import LengthDist
from loadgen.workload.spec import RequestSpec
from loadgen.workload.text import synthetic_prompt


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
) -> list[RequestSpec]:
    """``n`` specs with prompts of ≈ the drawn token counts; a shared prefix of ``prefix_len`` tokens if asked.

    Each prompt starts with its own index so no two requests share a prefix by accident (prefix caching would
    otherwise flatter the server).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1A7]))
    in_lens = draw_lengths(input_len, n, rng)
    out_lens = draw_lengths(output_len, n, rng) if output_len is not None else None
    prefix = synthetic_prompt(prefix_len, np.random.default_rng([seed, 0xBEEF])) + " " if prefix_len else ""
    specs = []
    for i in range(n):
        body_len = max(int(in_lens[i]) - prefix_len - 2, 1)
        text = f"{prefix}{i}: {synthetic_prompt(body_len, rng)}"
        specs.append(
            RequestSpec(
                prompt=text,
                max_tokens=int(out_lens[i]) if out_lens is not None else None,
                tags={"dataset": "synthetic"},
                input_tokens_hint=int(in_lens[i]),
            )
        )
    return specs
