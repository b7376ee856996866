"""A continuous-batching engine model after vLLM v1's scheduler, with no clock and no I/O.

``Engine.step()`` plans one iteration exactly the way vLLM v1 does it, in simplified form, and returns how long the
iteration takes under the cost model and which requests emitted tokens. The server sleeps until the step's
absolute deadline and then delivers those tokens; tests drive ``step()`` directly.

Model, in vLLM's terms:

* Each request has ``num_tokens`` (prompt + output so far) and ``num_computed`` (tokens whose KV is in the cache).
  A step schedules ``num_tokens - num_computed`` tokens for it (capped by the step's token budget, so long prompts
  are prefilled in chunks); when a request's KV catches up with its tokens, it samples one new token (plus the
  accepted draft tokens under speculative decoding).
* Running requests are scheduled first, in admission order. When one needs a new KV block and none is free, the
  most recently admitted running request is preempted (recompute: blocks freed, ``num_computed`` reset, put at the
  front of the waiting queue). A step that preempted admits nobody new.
* Waiting requests are admitted FCFS while ``max_num_seqs``, the token budget and free blocks allow; the head of
  the queue blocks those behind it.
* Prefix caching: full prompt blocks are hashed in a chain; a freed block keeps its hash and stays reusable until
  evicted (LRU) by an allocation. Queries and hits are counted in tokens, and a full hit still recomputes the last
  prompt token, as in vLLM.
* Step duration = ``step_overhead + prefill_token * (prefill + draft tokens) + decode_seq * decoding sequences +
  context_token * KV tokens attended``, in microseconds.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loadgen.sim.config import SimConfig
from loadgen.sim.text import block_hashes, difficulty_of, raw_output, tokenize

__all__ = ["BlockPool", "Engine", "EngineStats", "FINISHED", "SimRequest", "StepResult"]

WAITING = 0
RUNNING = 1
FINISHED = 2


class SimRequest:
    """One request inside the engine: its planned output and its scheduling state."""

    __slots__ = (
        "serial", "prompt_tokens", "hashes", "max_tokens", "ignore_eos", "difficulty", "reasoning_tokens",
        "natural_reasoning", "answer_tokens", "target_tokens", "stop_reason", "final_token", "correct", "offset",
        "rng", "num_tokens", "num_computed", "num_hashed", "output_tokens", "blocks", "status", "preemptions",
        "cached_tokens", "finish_reason", "first_scheduled_ns", "looked_up", "handle", "tail_tokens", "chat",
    )  # fmt: skip

    def __init__(
        self,
        cfg: SimConfig,
        serial: int,
        prompt_tokens: int,
        hashes: list[bytes],
        digest: int,
        max_tokens: int,
        ignore_eos: bool = False,
        sim: Mapping[str, Any] | None = None,
    ) -> None:
        sim = sim or {}
        self.serial = serial
        self.prompt_tokens = prompt_tokens
        self.hashes = hashes
        self.max_tokens = max_tokens
        self.ignore_eos = ignore_eos
        self.rng = np.random.default_rng([cfg.seed, serial, digest & 0xFFFFFFFF, digest >> 32])
        rng = self.rng
        self.difficulty = float(sim.get("difficulty", difficulty_of(digest)))
        if cfg.reasoning:
            median = cfg.reasoning_median * cfg.reasoning_difficulty_scale ** (2.0 * self.difficulty - 1.0)
            natural = max(1, int(rng.lognormal(math.log(median), cfg.reasoning_sigma)))
        else:
            natural = 0
        self.natural_reasoning = natural
        self.reasoning_tokens = int(sim.get("reasoning_tokens", natural))
        answer = max(1, int(rng.lognormal(math.log(cfg.answer_median), cfg.answer_sigma)))
        self.answer_tokens = max(1, int(sim.get("answer_tokens", answer)))
        natural_total = self.reasoning_tokens + self.answer_tokens
        if ignore_eos or natural_total > max_tokens:
            self.target_tokens = max_tokens
            self.stop_reason = "length"
        else:
            self.target_tokens = natural_total
            self.stop_reason = "stop"
        self.offset = digest % 997
        self.correct: bool | None = None
        self.final_token = " done."
        reference = sim.get("reference")
        if reference is not None:
            reference = str(reference)
            fitted = 1.0 if natural == 0 else min(1.0, self.reasoning_tokens / natural)
            p = (cfg.accuracy_easy + (cfg.accuracy_hard - cfg.accuracy_easy) * self.difficulty) * fitted
            self.correct = bool(rng.random() < p)
            answer_str = reference if self.correct else _wrong_answer(reference, rng)
            self.final_token = " \\boxed{" + answer_str + "}."
        self.num_tokens = prompt_tokens
        self.num_computed = 0
        self.num_hashed = 0
        self.output_tokens = 0
        self.blocks: list[int] = []
        self.status = WAITING
        self.preemptions = 0
        self.cached_tokens: int | None = None
        self.finish_reason: str | None = None
        self.first_scheduled_ns: int | None = None
        self.looked_up = False
        self.handle: Any = None  # the server's per-request state
        self.tail_tokens: list[str] = []  # prompt tokens after its last full block (the output's KV follows)
        self.chat = True

    def split(self, start: int, count: int) -> tuple[int, int]:
        """How many of output tokens ``start .. start+count`` are reasoning and how many are answer."""
        r = max(0, min(start + count, self.reasoning_tokens) - start)
        return r, count - r

    @property
    def reasoning_emitted(self) -> int:
        return min(self.output_tokens, self.reasoning_tokens)


def _wrong_answer(reference: str, rng: np.random.Generator) -> str:
    try:
        value = int(reference)
    except ValueError:
        return str(int(rng.integers(0, 1000)))
    return str(value + int(rng.integers(1, 10)) * (1 if rng.random() < 0.5 else -1))


class BlockPool:
    """Fixed KV cache: reference-counted blocks, a hash -> block map for prefix reuse, LRU eviction of free ones."""

    def __init__(self, num_blocks: int, caching: bool) -> None:
        self.num_blocks = num_blocks
        self.caching = caching
        self.ref = [0] * num_blocks
        self.block_hash: list[bytes | None] = [None] * num_blocks
        self.free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))
        self.cached: dict[bytes, int] = {}

    @property
    def num_free(self) -> int:
        return len(self.free)

    def allocate(self, n: int) -> list[int]:
        if n > len(self.free):
            raise RuntimeError("allocate() past capacity; callers check num_free first")
        out = []
        for _ in range(n):
            b, _unused = self.free.popitem(last=False)
            h = self.block_hash[b]
            if h is not None:
                del self.cached[h]
                self.block_hash[b] = None
            self.ref[b] = 1
            out.append(b)
        return out

    def lookup(self, hashes: list[bytes], limit: int) -> list[int]:
        """Blocks already holding the first ``<= limit`` hashes, in order (stops at the first miss)."""
        out = []
        if not self.caching:
            return out
        for h in hashes[:limit]:
            b = self.cached.get(h)
            if b is None:
                break
            out.append(b)
        return out

    def touch(self, blocks: list[int]) -> None:
        for b in blocks:
            if self.ref[b] == 0:
                del self.free[b]
            self.ref[b] += 1

    def release(self, blocks: list[int]) -> None:
        """Drop one reference; a block reaching zero becomes free (hashed ones evicted last)."""
        for b in reversed(blocks):
            self.ref[b] -= 1
            if self.ref[b] == 0:
                self.free[b] = None
                if self.block_hash[b] is None:
                    self.free.move_to_end(b, last=False)

    def register(self, block: int, h: bytes) -> None:
        if self.caching and h not in self.cached and self.block_hash[block] is None:
            self.cached[h] = block
            self.block_hash[block] = h


@dataclass(slots=True)
class EngineStats:
    """Cumulative counters, named after the vLLM metrics they feed."""

    steps: int = 0
    num_preemptions: int = 0
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    spec_num_drafts: int = 0
    spec_num_draft_tokens: int = 0
    spec_num_accepted_tokens: int = 0
    finished: dict[str, int] = field(
        default_factory=lambda: {"stop": 0, "length": 0, "abort": 0, "error": 0, "repetition": 0}
    )


@dataclass(slots=True)
class StepResult:
    """What one iteration did: its duration and, per request that sampled, how many tokens it emitted."""

    duration_ns: int
    outputs: list[tuple[SimRequest, int]]
    finished: list[SimRequest]
    scheduled_tokens: int
    num_scheduled: int
    num_preempted: int


class Engine:
    """The scheduler and KV cache; call ``add()`` for arrivals and ``step()`` once per iteration."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.pool = BlockPool(config.num_blocks, config.enable_prefix_caching)
        self.waiting: deque[SimRequest] = deque()
        self.running: list[SimRequest] = []
        self.stats = EngineStats()
        self._serial = 0

    def next_serial(self) -> int:
        """A new request's serial number (it seeds the request's random draws): ``SimRequest(config, serial, ...)``."""
        self._serial += 1
        return self._serial

    def add(self, req: SimRequest) -> None:
        self.waiting.append(req)

    def abort(self, req: SimRequest) -> None:
        """Drop a request (client went away): free its blocks and count it as aborted."""
        if req.status == FINISHED:
            return
        if req.status == RUNNING:
            self.running.remove(req)
        else:
            try:
                self.waiting.remove(req)
            except ValueError:
                pass
        self.pool.release(req.blocks)
        req.blocks = []
        req.status = FINISHED
        req.finish_reason = "abort"
        self.stats.finished["abort"] += 1

    @property
    def has_work(self) -> bool:
        return bool(self.running or self.waiting)

    @property
    def kv_usage(self) -> float:
        return 1.0 - self.pool.num_free / self.pool.num_blocks

    @property
    def used_blocks(self) -> int:
        return self.pool.num_blocks - self.pool.num_free

    def _blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.config.block_size)

    def _preempt(self, req: SimRequest) -> None:
        self.pool.release(req.blocks)
        req.blocks = []
        req.num_computed = 0
        req.num_hashed = 0
        req.looked_up = False
        req.status = WAITING
        req.preemptions += 1
        self.stats.num_preemptions += 1
        self.waiting.appendleft(req)

    def _cache_output(self, req: SimRequest) -> None:
        """A finished request's generated blocks stay in the prefix cache, hashed as its prompt followed by the
        text it generated (``raw_output``), as vLLM caches the blocks of a finished sequence: a next turn that
        resends the answer as it was generated hits them; one that strips the reasoning does not."""
        r, a = req.split(0, req.output_tokens)
        text = raw_output(req.offset, r, a, req.answer_tokens, req.final_token, req.chat)
        extra = block_hashes(req.tail_tokens + tokenize(text), self.config.block_size,
                             req.hashes[-1] if req.hashes else b"")  # fmt: skip
        first = len(req.hashes)
        for j, h in enumerate(extra[: max(0, len(req.blocks) - first)]):
            self.pool.register(req.blocks[first + j], h)

    def step(self, now_ns: int = 0) -> StepResult:
        """Plan and apply one iteration; ``now_ns`` (its start) only stamps first-scheduled times."""
        cfg = self.config
        pool = self.pool
        bs = cfg.block_size
        budget = cfg.max_num_batched_tokens
        spec_k = cfg.num_speculative_tokens if cfg.spec_enabled else 0
        running = self.running
        scheduled: list[tuple[SimRequest, int, int]] = []
        preempted = 0

        i = 0
        while i < len(running) and budget > 0:
            req = running[i]
            remaining = req.num_tokens - req.num_computed
            drafts = 0
            if remaining == 1 and spec_k:
                drafts = max(0, min(spec_k, req.target_tokens - req.output_tokens - 1, budget - 1))
                n = 1 + drafts
            else:
                n = min(remaining, budget)
            need = -(-(req.num_computed + n) // bs) - len(req.blocks)
            if need > 0:
                while pool.num_free < need:
                    victim = running.pop()
                    self._preempt(victim)
                    preempted += 1
                    if victim is req:
                        break
                if req.status != RUNNING:
                    break
                req.blocks.extend(pool.allocate(need))
            scheduled.append((req, n, drafts))
            budget -= n
            i += 1

        if not preempted:
            waiting = self.waiting
            while waiting and len(running) < cfg.max_num_seqs and budget > 0:
                req = waiting[0]
                hits: list[int] = []
                if not req.looked_up and pool.caching:
                    hits = pool.lookup(req.hashes, (req.num_tokens - 1) // bs)
                computed = len(hits) * bs if not req.looked_up else req.num_computed
                n = min(req.num_tokens - computed, budget)
                need = -(-(computed + n) // bs) - len(req.blocks) - len(hits)
                evictable_hits = sum(1 for b in hits if pool.ref[b] == 0)
                if need > pool.num_free - evictable_hits:
                    break
                waiting.popleft()
                if not req.looked_up:
                    req.looked_up = True
                    pool.touch(hits)
                    req.blocks = hits
                    req.num_computed = computed
                    req.num_hashed = len(hits)
                    if pool.caching:
                        self.stats.prefix_cache_queries += req.num_tokens
                        self.stats.prefix_cache_hits += computed
                    if req.cached_tokens is None:
                        req.cached_tokens = computed
                if need > 0:
                    req.blocks.extend(pool.allocate(need))
                req.status = RUNNING
                running.append(req)
                scheduled.append((req, n, 0))
                budget -= n

        return self._apply(scheduled, preempted, now_ns)

    def _apply(self, scheduled: list[tuple[SimRequest, int, int]], preempted: int, now_ns: int) -> StepResult:
        cfg = self.config
        stats = self.stats
        pool = self.pool
        bs = cfg.block_size
        outputs: list[tuple[SimRequest, int]] = []
        finished: list[SimRequest] = []
        tokens = prefill = decode_seqs = draft_total = context = 0
        for req, n, drafts in scheduled:
            tokens += n
            context += req.num_computed
            if req.first_scheduled_ns is None:
                req.first_scheduled_ns = now_ns
            real = n - drafts
            if req.num_tokens - req.num_computed == 1:
                decode_seqs += 1
            else:
                prefill += real
            draft_total += drafts
            req.num_computed += real
            if req.num_computed == req.num_tokens:
                accepted = 0
                if drafts:
                    draws = req.rng.random(drafts) < cfg.spec_acceptance
                    accepted = int(np.argmin(draws)) if not draws.all() else drafts
                    stats.spec_num_drafts += 1
                    stats.spec_num_draft_tokens += drafts
                    stats.spec_num_accepted_tokens += accepted
                new = min(1 + accepted, req.target_tokens - req.output_tokens)
                if req.output_tokens == 0:
                    stats.prompt_tokens += req.prompt_tokens
                req.num_computed += new - 1
                req.num_tokens += new
                req.output_tokens += new
                stats.generation_tokens += new
                outputs.append((req, new))
                if req.output_tokens >= req.target_tokens:
                    finished.append(req)
            if pool.caching:
                full = min(req.num_computed // bs, len(req.hashes))
                for j in range(req.num_hashed, full):
                    pool.register(req.blocks[j], req.hashes[j])
                if full > req.num_hashed:
                    req.num_hashed = full
        if finished:
            done = set(map(id, finished))
            self.running = [r for r in self.running if id(r) not in done]
            for req in finished:
                if pool.caching:
                    self._cache_output(req)
                pool.release(req.blocks)
                req.blocks = []
                req.status = FINISHED
                req.finish_reason = req.stop_reason
                stats.finished[req.stop_reason] += 1
        duration_us = (
            cfg.step_overhead_us
            + cfg.prefill_token_us * (prefill + draft_total)
            + cfg.decode_seq_us * decode_seqs
            + cfg.context_token_us * context
        )
        if scheduled:
            stats.steps += 1
        return StepResult(
            duration_ns=int(duration_us * 1000.0) if scheduled else 0,
            outputs=outputs,
            finished=finished,
            scheduled_tokens=tokens,
            num_scheduled=len(scheduled),
            num_preempted=preempted,
        )
