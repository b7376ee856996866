"""Engine invariants of loadgen.sim, driven step by step without sockets or clocks."""

from __future__ import annotations

import dataclasses

import pytest

from loadgen.sim.config import SimConfig, load_config, parse_set
from loadgen.sim.engine import FINISHED, Engine, SimRequest
from loadgen.sim.text import block_hashes, text_digest, tokenize


def _cfg(**kw: object) -> SimConfig:
    base = {"seed": 7, "reasoning_median": 40.0, "answer_median": 8.0}
    base.update(kw)
    return dataclasses.replace(SimConfig(), **base)


def _req(
    engine: Engine, prompt: str, max_tokens: int = 400, ignore_eos: bool = False, sim: dict | None = None
):
    tokens = tokenize(prompt)
    hashes = block_hashes(tokens, engine.config.block_size)
    digest = text_digest(prompt)
    return SimRequest(
        engine.config, engine.next_serial(), len(tokens), hashes, digest, max_tokens, ignore_eos, sim
    )


def _run(engine: Engine, max_steps: int = 100_000, check=None) -> list:
    steps = []
    for _ in range(max_steps):
        if not engine.has_work:
            break
        res = engine.step()
        steps.append(res)
        if check:
            check(engine, res)
    assert not engine.has_work, "engine did not drain"
    return steps


def test_tokenizer_counts_words_and_punctuation() -> None:
    assert tokenize("What is 2+2?") == ["What", "is", "2", "+", "2", "?"]
    assert len(tokenize("<|im_start|>")) == 5


def test_ignore_eos_gives_exactly_max_tokens_and_length() -> None:
    eng = Engine(_cfg())
    reqs = [_req(eng, f"prompt number {i}", max_tokens=37 + i, ignore_eos=True) for i in range(5)]
    for r in reqs:
        eng.add(r)
    emitted = {r.serial: 0 for r in reqs}

    def count(_e: Engine, res) -> None:
        for r, n in res.outputs:
            emitted[r.serial] += n

    _run(eng, check=count)
    for r in reqs:
        assert r.output_tokens == r.max_tokens == emitted[r.serial]
        assert r.finish_reason == "length"


def test_budget_cuts_reasoning_with_length() -> None:
    eng = Engine(_cfg())
    r = _req(eng, "hard question", max_tokens=20, sim={"reasoning_tokens": 100, "answer_tokens": 10})
    eng.add(r)
    _run(eng)
    assert r.output_tokens == 20
    assert r.reasoning_emitted == 20
    assert r.finish_reason == "length"
    # with room for everything the request stops by itself after reasoning + answer
    r2 = _req(eng, "hard question", max_tokens=500, sim={"reasoning_tokens": 100, "answer_tokens": 10})
    eng.add(r2)
    _run(eng)
    assert (r2.output_tokens, r2.reasoning_emitted, r2.finish_reason) == (110, 100, "stop")


def test_blocks_never_over_capacity_and_preempted_requests_finish_exactly() -> None:
    cfg = _cfg(num_blocks=160, block_size=16, max_num_seqs=64, max_num_batched_tokens=512, max_model_len=2048)
    eng = Engine(cfg)
    reqs = [
        _req(eng, f"request {i} " + "word " * (50 + i), max_tokens=300, ignore_eos=True) for i in range(40)
    ]
    for r in reqs:
        eng.add(r)

    def check(e: Engine, res) -> None:
        pool = e.pool
        held = sum(len(r.blocks) for r in e.running)
        assert 0 <= pool.num_free <= pool.num_blocks
        assert held <= pool.num_blocks
        assert all(ref >= 0 for ref in pool.ref)
        assert len(e.running) <= cfg.max_num_seqs
        assert res.scheduled_tokens <= cfg.max_num_batched_tokens

    _run(eng, check=check)
    assert eng.stats.num_preemptions > 0, "the workload was sized to force preemptions"
    assert sum(r.preemptions for r in reqs) == eng.stats.num_preemptions
    assert all(r.status == FINISHED and r.output_tokens == 300 for r in reqs)
    assert eng.pool.num_free == eng.pool.num_blocks


def test_fcfs_admission_order() -> None:
    eng = Engine(_cfg(max_num_seqs=2))
    reqs = [_req(eng, f"q{i}", max_tokens=30, ignore_eos=True) for i in range(6)]
    for r in reqs:
        eng.add(r)
    admitted: list[int] = []
    while eng.has_work:
        eng.step()
        for r in eng.running:
            if r.serial not in admitted:
                admitted.append(r.serial)
    assert admitted == [r.serial for r in reqs]


def test_prefix_cache_hits_when_prompts_share_a_prefix() -> None:
    shared = "system prompt " * 40  # 80 tokens: 5 full blocks of 16
    eng = Engine(_cfg())
    a = _req(eng, shared + "first question", max_tokens=5, ignore_eos=True)
    eng.add(a)
    _run(eng)
    b = _req(eng, shared + "second question", max_tokens=5, ignore_eos=True)
    eng.add(b)
    _run(eng)
    assert a.cached_tokens == 0
    assert b.cached_tokens == 80
    assert eng.stats.prefix_cache_hits == 80
    assert eng.stats.prefix_cache_queries == a.prompt_tokens + b.prompt_tokens

    off = Engine(_cfg(enable_prefix_caching=False))
    for p in ("first question", "second question"):
        r = _req(off, shared + p, max_tokens=5, ignore_eos=True)
        off.add(r)
        _run(off)
        assert r.cached_tokens == 0
    assert off.stats.prefix_cache_hits == 0


def test_full_prefix_hit_still_recomputes_last_token() -> None:
    prompt = "aa " * 32  # exactly 2 blocks
    eng = Engine(_cfg())
    for _ in range(2):
        r = _req(eng, prompt, max_tokens=3, ignore_eos=True)
        eng.add(r)
        _run(eng)
    assert r.cached_tokens == 16  # the second block holds the last prompt token, which must be recomputed


def test_spec_decode_emits_multi_token_steps_and_counts_drafts() -> None:
    eng = Engine(_cfg(spec_method="ngram", num_speculative_tokens=3, spec_acceptance=0.7))
    r = _req(eng, "spec", max_tokens=200, ignore_eos=True)
    eng.add(r)
    per_step = [n for res in _run(eng) for rr, n in res.outputs]
    assert sum(per_step) == 200
    assert max(per_step) == 4
    assert any(n > 1 for n in per_step)
    st = eng.stats
    assert st.spec_num_draft_tokens <= 3 * st.spec_num_drafts
    assert st.spec_num_accepted_tokens == 200 - len(per_step)  # every step adds one bonus token
    assert 0.3 < st.spec_num_accepted_tokens / st.spec_num_draft_tokens < 0.8


def test_same_seed_same_run_and_other_seed_differs() -> None:
    def trace(seed: int) -> list[tuple[int, int, int]]:
        eng = Engine(_cfg(seed=seed, num_blocks=200, spec_method="ngram"))
        reqs = [_req(eng, f"question {i} " + "x " * i * 7, max_tokens=600) for i in range(30)]
        out = []
        for i, r in enumerate(reqs):
            eng.add(r)
            if i % 3 == 0:
                res = eng.step()
                out.append((res.duration_ns, len(res.outputs), res.num_preempted))
        for res in _run(eng):
            out.append((res.duration_ns, len(res.outputs), res.num_preempted))
        return out + [(r.output_tokens, r.reasoning_tokens, r.preemptions) for r in reqs]

    assert trace(1) == trace(1)
    assert trace(1) != trace(2)


def test_reasoning_lengths_heavy_tailed_and_harder_is_longer() -> None:
    eng = Engine(SimConfig(seed=3))
    easy = [
        SimRequest(eng.config, i, 10, [], i * 7919, 8000, sim={"difficulty": 0.1}).reasoning_tokens
        for i in range(400)
    ]
    hard = [
        SimRequest(eng.config, i, 10, [], i * 7919, 8000, sim={"difficulty": 0.9}).reasoning_tokens
        for i in range(400)
    ]
    easy.sort()
    hard.sort()
    assert hard[200] > 2 * easy[200]
    assert hard[396] > 4 * hard[200]  # p99 / p50 of a lognormal with sigma 0.9 is about 8


def test_boxed_answer_accuracy_depends_on_difficulty_and_fitted_reasoning() -> None:
    cfg = SimConfig(seed=5)

    def accuracy(difficulty: float, fitted: float) -> float:
        ok = 0
        for i in range(300):
            base = SimRequest(cfg, i, 10, [], i, 8000, sim={"difficulty": difficulty})
            r = SimRequest(
                cfg, i, 10, [], i, 8000,
                sim={"difficulty": difficulty, "reference": "42",
                     "reasoning_tokens": max(1, int(base.natural_reasoning * fitted))},
            )  # fmt: skip
            assert r.final_token in (" \\boxed{42}.",) or r.correct is False
            ok += bool(r.correct)
        return ok / 300

    assert accuracy(0.0, 1.0) > 0.85
    assert accuracy(1.0, 1.0) < 0.4
    assert accuracy(0.0, 0.3) < 0.45


def test_config_profiles_file_and_overrides(tmp_path) -> None:
    f = tmp_path / "sim.toml"
    f.write_text('[loadgen]\nrate = 4\n[sim]\nprofile = "chat-7b"\nnum_blocks = 999\n')
    cfg = load_config(None, f, parse_set(["max_num_seqs=7", "enable_prefix_caching=off"]))
    assert (cfg.profile, cfg.reasoning, cfg.num_blocks, cfg.max_num_seqs) == ("chat-7b", False, 999, 7)
    assert cfg.enable_prefix_caching is False
    with pytest.raises(ValueError, match="unknown sim setting"):
        parse_set(["nope=1"])
    with pytest.raises(ValueError, match="metrics_dialect"):
        load_config(overrides={"metrics_dialect": "x"})
    f.write_text("num_blocks = 5\nunknown_knob = 1\n")
    with pytest.raises(ValueError, match="unknown_knob"):
        load_config(None, f)
