"""Sampling: seeded draws, mixes in exact proportion, repeats and budget sweeps, flag parsing errors."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from loadgen.errors import ConfigError
from loadgen.workload.sampling import (
    Budgets,
    apportion,
    build_dataset_workload,
    expand,
    mix_specs,
    parse_budgets,
    parse_dataset_paths,
    parse_mix,
    sample_specs,
)
from loadgen.workload.spec import RequestSpec

DATA = Path(__file__).resolve().parents[1] / "data" / "datasets"


def _pool(name: str, n: int) -> list[RequestSpec]:
    return [RequestSpec(prompt=f"{name} {i}", reference=str(i), tags={"dataset": name}) for i in range(n)]


def test_parse_mix():
    assert parse_mix("gsm8k:0.5,aime2024:0.5") == [("gsm8k", 0.5), ("aime2024", 0.5)]
    assert parse_mix("gsm8k:3,aime24:1") == [("gsm8k", 0.75), ("aime2024", 0.25)]
    assert parse_mix("gsm8k,math-500") == [("gsm8k", 0.5), ("math500", 0.5)]
    assert parse_mix("gsm8k:0.6,aime2024") == [("gsm8k", 0.6), ("aime2024", pytest.approx(0.4))]
    assert parse_mix("gpqa") == [("gpqa_diamond", 1.0)]
    for bad, msg in [
        ("", "empty"),
        ("gsm8k:0.5,,aime2024", "empty entry"),
        ("gsm8k:x", "not a number"),
        ("gsm8k:-1", ">= 0"),
        ("gsm8k:0", "sum to 0"),
        ("gsm8k,gsm8k", "twice"),
        ("nope:1", "unknown dataset 'nope'"),
        ("gsm8k:1.5,aime2024", "leaving nothing"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            parse_mix(bad)


def test_parse_budgets():
    assert parse_budgets("1024,2048,4k") == Budgets(sweep=(1024, 2048, 4096))
    assert parse_budgets("8192") == Budgets(sweep=(8192,))
    assert parse_budgets("gsm8k=2048,aime24=16k").per_dataset == {"gsm8k": 2048, "aime2024": 16384}
    for bad in ("", "1024,", "0", "12x", "1024,gsm8k=5", "1024,1024"):
        with pytest.raises(ConfigError):
            parse_budgets(bad)


def test_parse_dataset_paths(tmp_path):
    assert parse_dataset_paths("f.jsonl", ["gsm8k"]) == {"gsm8k": "f.jsonl"}
    assert parse_dataset_paths(str(tmp_path), ["gsm8k", "aime2024"]) == {
        "gsm8k": str(tmp_path),
        "aime2024": str(tmp_path),
    }
    assert parse_dataset_paths("gsm8k=a.jsonl,aime24=b.jsonl", ["gsm8k", "aime2024"]) == {
        "gsm8k": "a.jsonl",
        "aime2024": "b.jsonl",
    }
    with pytest.raises(ConfigError, match="needs a folder"):
        parse_dataset_paths("a.jsonl", ["gsm8k", "aime2024"])
    with pytest.raises(ConfigError, match="not in --dataset"):
        parse_dataset_paths("math500=a.jsonl", ["gsm8k"])


def test_sampling_is_deterministic_and_without_replacement_distinct():
    pool = _pool("gsm8k", 50)
    a = sample_specs(pool, 20, seed=7)
    assert a == sample_specs(pool, 20, seed=7)
    assert a != sample_specs(pool, 20, seed=8)
    assert len({s.prompt for s in a}) == 20
    assert sorted(s.prompt for s in sample_specs(pool, None, seed=1)) == sorted(s.prompt for s in pool)
    with pytest.raises(ConfigError, match="--sample-with-replacement"):
        sample_specs(pool, 51, seed=0)
    many = sample_specs(pool, 500, seed=3, replace_=True)
    assert len(many) == 500 and len({s.prompt for s in many}) < 50 + 1


def test_mix_proportions_are_exact_and_interleaved():
    assert apportion([0.5, 0.5], 7) == [4, 3]
    assert apportion([0.2, 0.3, 0.5], 10) == [2, 3, 5]
    pools = {
        "gsm8k": _pool("gsm8k", 100),
        "aime2024": _pool("aime2024", 30),
        "math500": _pool("math500", 100),
    }
    weights = [("gsm8k", 0.5), ("aime2024", 0.2), ("math500", 0.3)]
    out = mix_specs(pools, weights, 100, seed=11)
    counts = Counter(s.tags["dataset"] for s in out)
    assert counts == {"gsm8k": 50, "aime2024": 20, "math500": 30}
    assert out == mix_specs(pools, weights, 100, seed=11)
    first_half = Counter(s.tags["dataset"] for s in out[:50])
    assert 0 < first_half["aime2024"] < 20  # interleaved, not one dataset after another


def test_repeats_and_budget_sweep():
    base = _pool("gsm8k", 4)
    out = expand(base, repeats=3, budgets=[1024, 2048], seed=5)
    assert len(out) == 4 * 3 * 2
    per_item_budget = Counter((s.prompt, s.tags["budget"]) for s in out)
    assert set(per_item_budget.values()) == {3}
    assert all(s.max_tokens == s.tags["budget"] for s in out)
    assert {s.tags["repeat"] for s in out} == {0, 1, 2}
    assert out == expand(base, repeats=3, budgets=[1024, 2048], seed=5)
    assert [s.tags["budget"] for s in out[:8]] != sorted(s.tags["budget"] for s in out[:8])  # shuffled
    plain = expand(base)
    assert plain == list(base)
    with pytest.raises(ConfigError):
        expand(base, repeats=0)


def test_build_dataset_workload_end_to_end():
    paths = {"gsm8k": DATA / "gsm8k", "aime2024": DATA / "aime_2024.jsonl"}
    specs = build_dataset_workload(
        "gsm8k:0.6,aime2024:0.4", 5, seed=1, paths=paths, repeats=2, max_tokens="1024,2048"
    )
    assert len(specs) == 5 * 2 * 2
    assert Counter(s.tags["dataset"] for s in specs) == {"gsm8k": 12, "aime2024": 8}
    assert {s.max_tokens for s in specs} == {1024, 2048}
    assert specs == build_dataset_workload(
        "gsm8k:0.6,aime2024:0.4", 5, seed=1, paths=paths, repeats=2, max_tokens="1024,2048"
    )
    per = build_dataset_workload("gsm8k,aime2024", None, paths=paths, max_tokens="aime2024=16k")
    assert {(s.tags["dataset"], s.max_tokens) for s in per} == {("gsm8k", 4096), ("aime2024", 16384)}
    with pytest.raises(ConfigError, match="distinct items"):
        build_dataset_workload("aime2024", 3, paths=paths)
    assert len(build_dataset_workload("aime2024", 3, paths=paths, replace_=True)) == 3
