"""Drawing requests from datasets: seeded samples, weighted mixes, repeats per item and token-budget sweeps.

Everything here is a pure function of its inputs and the seed: the same arguments give the same list in the same
order. The order of the final list is the send order; budgets and datasets are interleaved (shuffled with the
seed) so that no budget or dataset is confounded with a phase of the run.

Counting: ``num_items`` items are drawn (split over a mix by weight); each is sent ``repeats`` times at every
budget of the sweep, so the run has ``num_items × repeats × len(budgets)`` requests.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from loadgen.errors import ConfigError
from loadgen.workload.datasets import load_dataset, resolve_name
from loadgen.workload.spec import RequestSpec

__all__ = [
    "Budgets",
    "DatasetMix",
    "apportion",
    "build_dataset_workload",
    "expand",
    "mix_specs",
    "parse_budgets",
    "parse_dataset_paths",
    "parse_mix",
    "sample_specs",
]

_SALT_SAMPLE = 0x5A3B1E
_SALT_ORDER = 0x0D3E


def _rng(seed: int, *salt: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), *salt]))


# ---------------------------------------------------------------------------------------------------------------
# Parsing the flags' values


def parse_mix(text: str) -> list[tuple[str, float]]:
    """``"gsm8k:0.5,aime2024:0.5"`` -> ``[("gsm8k", 0.5), ("aime2024", 0.5)]``, weights normalised to sum 1.

    Names are canonical dataset names (aliases resolved). A name without a weight gets an equal share of what
    the weighted names leave (``"gsm8k,aime2024"`` is half and half). Errors say which entry is wrong.
    """
    if not text or not text.strip():
        raise ConfigError(
            "--dataset is empty; give NAME or NAME:WEIGHT,NAME:WEIGHT (e.g. gsm8k:0.5,aime2024:0.5)"
        )
    entries: list[tuple[str, float | None]] = []
    seen: set[str] = set()
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            raise ConfigError(f"--dataset {text!r}: an empty entry (a stray comma?)")
        name, sep, weight_s = part.partition(":")
        name = name.strip()
        try:
            canonical = resolve_name(name).name
        except Exception as exc:  # WorkloadError from resolve_name: a flag problem here
            raise ConfigError(f"--dataset {text!r}: {exc}") from None
        if canonical in seen:
            raise ConfigError(f"--dataset {text!r}: {canonical} appears twice")
        seen.add(canonical)
        weight: float | None = None
        if sep:
            try:
                weight = float(weight_s)
            except ValueError:
                raise ConfigError(
                    f"--dataset {text!r}: weight {weight_s.strip()!r} of {name} is not a number"
                ) from None
            if not (weight >= 0) or weight == float("inf"):
                raise ConfigError(f"--dataset {text!r}: weight of {name} must be a finite number >= 0")
        entries.append((canonical, weight))
    given = sum(w for _, w in entries if w is not None)
    missing = [n for n, w in entries if w is None]
    if missing:
        if given > 1 + 1e-9:
            raise ConfigError(
                f"--dataset {text!r}: weights sum to {given:g} > 1, leaving nothing for {missing}"
            )
        share = (1.0 - given) / len(missing) if given > 0 else 1.0 / len(missing)
        entries = [(n, w if w is not None else share) for n, w in entries]
    total = sum(w for _, w in entries if w is not None)
    if total <= 0:
        raise ConfigError(f"--dataset {text!r}: the weights sum to 0")
    return [(n, float(w) / total) for n, w in entries if w is not None]


@dataclass(frozen=True, slots=True)
class DatasetMix:
    """Parsed ``--dataset``: canonical dataset names with weights summing to 1, and the text as it was given."""

    weights: tuple[tuple[str, float], ...]
    text: str = field(default="", compare=False)

    @classmethod
    def parse(cls, text: str) -> DatasetMix:
        return cls(tuple(parse_mix(text)), text)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.weights]

    def __str__(self) -> str:
        return self.text or ",".join(f"{n}:{w:g}" for n, w in self.weights)


@dataclass(frozen=True, slots=True)
class Budgets:
    """Parsed ``--max-tokens``: a sweep applied to every dataset, or one budget per named dataset."""

    sweep: tuple[int, ...] = ()
    per_dataset: Mapping[str, int] | None = None
    text: str = field(default="", compare=False)  # as given, for summary.json

    def __str__(self) -> str:
        if self.text:
            return self.text
        if self.per_dataset:
            return ",".join(f"{k}={v}" for k, v in self.per_dataset.items())
        return ",".join(str(b) for b in self.sweep)


def _parse_tokens(value: str, text: str) -> int:
    v = value.strip().lower()
    mult = 1
    if v.endswith("k"):
        v, mult = v[:-1], 1024
    try:
        n = int(float(v) * mult) if mult != 1 else int(v)
    except ValueError:
        raise ConfigError(
            f"--max-tokens {text!r}: {value.strip()!r} is not a whole number of tokens"
        ) from None
    if n < 1:
        raise ConfigError(f"--max-tokens {text!r}: {value.strip()!r} must be >= 1")
    return n


def parse_budgets(text: str) -> Budgets:
    """``"1024,2048,4k"`` -> a sweep (1024, 2048, 4096); ``"gsm8k=2048,aime2024=16k"`` -> per-dataset budgets.

    A single number is a sweep of one (every item at that budget). Mixing the two forms is an error.
    """
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise ConfigError(f"--max-tokens {text!r}: give N, N,N,... or NAME=N,NAME=N")
    named = [p for p in parts if "=" in p]
    if named and len(named) != len(parts):
        raise ConfigError(f"--max-tokens {text!r}: mix of a sweep and NAME=N entries; use one form")
    if named:
        per: dict[str, int] = {}
        for p in named:
            name, _, value = p.partition("=")
            try:
                canonical = resolve_name(name).name
            except Exception as exc:
                raise ConfigError(f"--max-tokens {text!r}: {exc}") from None
            per[canonical] = _parse_tokens(value, text)
        return Budgets(per_dataset=per, text=text)
    sweep = tuple(_parse_tokens(p, text) for p in parts)
    if len(set(sweep)) != len(sweep):
        raise ConfigError(f"--max-tokens {text!r}: a budget appears twice")
    return Budgets(sweep=sweep, text=text)


def parse_dataset_paths(text: str | Sequence[str] | None, names: Sequence[str]) -> dict[str, str]:
    """``--dataset-path``: one PATH (a file for a single dataset, or a folder holding every dataset's files),
    or ``NAME=PATH`` pairs (comma-separated or repeated)."""
    if not text:
        return {}
    parts = [text] if isinstance(text, str) else list(text)
    items = [
        p.strip() for chunk in parts for p in (chunk.split(",") if "=" in chunk else [chunk]) if p.strip()
    ]
    named = [p for p in items if "=" in p and not os.path.exists(p)]
    if not named:
        if len(items) != 1:
            raise ConfigError("--dataset-path: give one PATH, or NAME=PATH for each dataset of a mix")
        path = items[0]
        if len(names) > 1 and not os.path.isdir(path):
            raise ConfigError(
                f"--dataset-path {path}: a mix of {len(names)} datasets needs a folder holding their files "
                "or NAME=PATH for each"
            )
        return dict.fromkeys(names, path)
    out: dict[str, str] = {}
    for p in items:
        if "=" not in p:
            raise ConfigError(f"--dataset-path {p!r}: in a list, every entry must be NAME=PATH")
        name, _, path = p.partition("=")
        try:
            canonical = resolve_name(name).name
        except Exception as exc:
            raise ConfigError(f"--dataset-path: {exc}") from None
        if canonical not in names:
            raise ConfigError(f"--dataset-path names {canonical}, which is not in --dataset")
        out[canonical] = path.strip()
    return out


# ---------------------------------------------------------------------------------------------------------------
# Sampling


def sample_specs(
    specs: Sequence[RequestSpec], n: int | None, *, seed: int, replace_: bool = False
) -> list[RequestSpec]:
    """``n`` specs drawn with the seed (all of them, shuffled, when ``n`` is None).

    Without replacement ``n`` may not exceed the pool: the error suggests ``--repeats`` or
    ``--sample-with-replacement`` instead of silently reusing items.
    """
    pool = len(specs)
    if pool == 0:
        raise ConfigError("cannot sample from an empty dataset")
    if n is None:
        n = pool
    if n < 0:
        raise ConfigError(f"number of items must be >= 0, got {n}")
    rng = _rng(seed, _SALT_SAMPLE, pool)
    if replace_:
        idx = rng.integers(0, pool, size=n)
    else:
        if n > pool:
            raise ConfigError(
                f"asked for {n} distinct items but the dataset has {pool}: lower --num-requests, add "
                "--repeats K to send each item K times, or pass --sample-with-replacement"
            )
        idx = rng.permutation(pool)[:n]
    return [specs[int(i)] for i in idx]


def apportion(weights: Sequence[float], n: int) -> list[int]:
    """Integer counts summing to ``n`` in proportion to ``weights`` (largest remainder; ties to the first)."""
    w = np.asarray(weights, dtype=np.float64)
    if n <= 0 or w.sum() <= 0:
        return [0] * len(w)
    exact = w / w.sum() * n
    counts = np.floor(exact).astype(int)
    remainder = exact - counts
    order = sorted(range(len(w)), key=lambda i: (-remainder[i], i))
    for i in order[: n - int(counts.sum())]:
        counts[i] += 1
    return [int(c) for c in counts]


def mix_specs(
    pools: Mapping[str, Sequence[RequestSpec]],
    weights: Sequence[tuple[str, float]],
    n: int | None,
    *,
    seed: int,
    replace_: bool = False,
) -> list[RequestSpec]:
    """``n`` items over several datasets in exact proportion to ``weights`` (largest remainder), interleaved.

    With ``n`` None every item of every dataset is used once (the weights then only validate the names).
    """
    names = [name for name, _ in weights]
    for name in names:
        if name not in pools:
            raise ConfigError(f"dataset {name} is in the mix but was not loaded")
    if n is None:
        counts: list[int | None] = [None] * len(names)
    else:
        counts = list(apportion([w for _, w in weights], n))
    out: list[RequestSpec] = []
    for k, (name, count) in enumerate(zip(names, counts, strict=True)):
        if count == 0:
            continue
        out.extend(sample_specs(pools[name], count, seed=seed + 7919 * (k + 1), replace_=replace_))
    order = _rng(seed, _SALT_ORDER, len(out)).permutation(len(out))
    return [out[int(i)] for i in order]


def expand(
    specs: Sequence[RequestSpec],
    *,
    repeats: int = 1,
    budgets: Sequence[int] | None = None,
    seed: int = 0,
    shuffle: bool = True,
) -> list[RequestSpec]:
    """Each spec × each budget × ``repeats``; tags gain ``budget`` (when sweeping) and ``repeat`` (when > 1).

    ``shuffle`` (default) interleaves the copies with the seed, so budgets and repeats spread over the whole run;
    otherwise the order is item-major (item 0 at every budget and repeat, then item 1, ...).
    """
    if repeats < 1:
        raise ConfigError(f"--repeats must be >= 1, got {repeats}")
    budgets = list(budgets or ())
    out: list[RequestSpec] = []
    for spec in specs:
        for budget in budgets or [None]:
            for r in range(repeats):
                tags = dict(spec.tags)
                if budget is not None:
                    tags["budget"] = int(budget)
                if repeats > 1:
                    tags["repeat"] = r
                out.append(
                    replace(
                        spec, tags=tags, max_tokens=int(budget) if budget is not None else spec.max_tokens
                    )
                )
    if shuffle and len(out) > 1 and (repeats > 1 or len(budgets) > 1):
        order = _rng(seed, _SALT_ORDER, len(out), 1).permutation(len(out))
        out = [out[int(i)] for i in order]
    return out


def build_dataset_workload(
    dataset: str | DatasetMix,
    num_items: int | None = None,
    *,
    seed: int = 0,
    paths: Mapping[str, str | os.PathLike[str]] | None = None,
    replace_: bool = False,
    repeats: int = 1,
    max_tokens: Budgets | str | int | None = None,
) -> list[RequestSpec]:
    """The whole dataset side of a run: ``--dataset`` (a mix spec), ``--dataset-path``, ``--num-requests``
    (items), ``--sample-with-replacement``, ``--repeats``, ``--max-tokens`` (a sweep or per-dataset budgets).

    Returns the specs in send order: ``num_items × repeats × len(sweep)`` of them.
    """
    weights = parse_mix(dataset) if isinstance(dataset, str) else list(dataset.weights)
    if isinstance(max_tokens, str):
        max_tokens = parse_budgets(max_tokens)
    elif isinstance(max_tokens, int):
        max_tokens = Budgets(sweep=(max_tokens,))
    budgets = max_tokens or Budgets()
    per = dict(budgets.per_dataset or {})
    for name in per:
        if name not in {n for n, _ in weights}:
            raise ConfigError(f"--max-tokens names {name}, which is not in --dataset")
    paths = dict(paths or {})
    pools = {
        name: load_dataset(name, paths.get(name), seed=seed, max_tokens=per.get(name)) for name, _ in weights
    }
    chosen = mix_specs(pools, weights, num_items, seed=seed, replace_=replace_)
    return expand(chosen, repeats=repeats, budgets=budgets.sweep, seed=seed)
