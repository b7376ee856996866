"""Conversations in the plan and the workload (issue 22): session starts on the arrival process, think times,
history policy, sharding by session, and Mooncake traces replayed block prefix for block prefix."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from loadgen.config import SecondsDist
from loadgen.errors import ConfigError
from loadgen.options import build_config
from loadgen.options.sources import options_from_argv
from loadgen.plan.planner import merge, plan_requests
from loadgen.plan.schedule import make_schedule
from loadgen.plan.sessions import NS_PER_S, draw_seconds
from loadgen.sim.text import render_chat, tokenize
from loadgen.workload.conversations import (
    KEEP,
    STRIP,
    History,
    conversations_from_messages,
    sharegpt_conversations,
    strip_reasoning,
)
from loadgen.workload.mooncake import BlockText, mooncake_specs, read_mooncake
from loadgen.workload.spec import RequestSpec


def _cfg(*argv: str):
    return build_config(options_from_argv(["--base-url", "http://127.0.0.1:9", *argv]))


def test_session_starts_follow_the_arrival_process_and_turns_follow_think_times():
    cfg = _cfg("--sessions", "50", "--turns", "uniform:1,6", "--rate", "2", "--cv", "2", "--seed", "7",
               "--think-time", "2.5")  # fmt: skip
    plan = plan_requests(cfg)
    t = plan.sessions
    assert t is not None and t.history == STRIP
    starts = make_schedule("gamma", 2.0, 2.0, 7).offsets_ns(50)
    first = t.turn == 0
    # turn 0 of each session, in session order, at the schedule's 50 offsets; later turns carry the session start
    assert np.array_equal(plan.offsets_ns[first], starts)
    assert np.array_equal(plan.offsets_ns, starts[t.session])
    # every planned turn is a request, sessions contiguous and their turns in order
    counts = np.bincount(t.session)
    assert len(plan) == counts.sum() and counts.min() >= 1 and counts.max() <= 6 and len(set(counts)) > 1
    assert np.array_equal(t.turn, np.concatenate([np.arange(c) for c in counts]))
    # the think time precedes every later turn, none the first
    assert set(t.think_ns[first].tolist()) == {0}
    assert set(t.think_ns[~first].tolist()) == {int(2.5 * NS_PER_S)}


def test_think_time_distributions_and_their_mistakes():
    rng = np.random.default_rng(0)
    d = SecondsDist.parse("uniform:0.5,1.5", "--think-time")
    v = draw_seconds(d, 2000, rng) / NS_PER_S
    assert v.min() >= 0.5 and v.max() <= 1.5 and abs(v.mean() - 1.0) < 0.05
    e = draw_seconds(SecondsDist.parse("exponential:2", "--think-time"), 4000, rng) / NS_PER_S
    assert abs(e.mean() - 2.0) < 0.15 and e.min() >= 0
    assert draw_seconds(SecondsDist.parse("0", "--think-time"), 3, rng).tolist() == [0, 0, 0]
    for bad in ("-1", "uniform:2,1", "lognormal:1", "exponential:1,2", "soon"):
        with pytest.raises(ConfigError, match="--think-time"):
            SecondsDist.parse(bad, "--think-time")
    with pytest.raises(ConfigError, match="--history"):
        _cfg("--sessions", "2", "--history", "forget")  # argparse refuses it: one clear line
    with pytest.raises(ConfigError, match="--warmup"):
        plan_requests(_cfg("--sessions", "2", "--warmup", "1"))


def test_history_policy_strip_resends_the_answer_and_keep_its_reasoning_too():
    user = RequestSpec(prompt="first question", max_tokens=9)
    second = RequestSpec(prompt="and then?", max_tokens=9)
    for chat in (True, False):
        strip, keep = History(chat, STRIP), History(chat, KEEP)
        for h in (strip, keep):
            sent = h.turn_spec(user)
            h.answered(sent, "the answer", "let me think")
        s2, k2 = strip.turn_spec(second), keep.turn_spec(second)
        if chat:
            assert s2.messages == (
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "the answer"},
                {"role": "user", "content": "and then?"},
            )
            assert k2.messages[1] == {"role": "assistant", "content": "<think>let me think</think>the answer"}
        else:
            assert s2.prompt == "first questionthe answer\n\nand then?"
            assert k2.prompt == "first question<think>let me think</think>the answer\n\nand then?"
        assert s2.max_tokens == k2.max_tokens == 9
    # completions text that carries its reasoning inline is stripped by its markers
    assert strip_reasoning("<think>a b</think> answer") == "answer"
    assert strip_reasoning("a b </think> answer") == "answer"  # the template opened the block
    assert strip_reasoning("answer <think> cut off") == "answer "
    assert strip_reasoning("plain") == "plain"


def test_recorded_conversations_keep_their_user_turns_and_take_the_replies_lengths_as_budgets():
    msgs = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "x" * 400},
        {"role": "user", "content": "more"},
    ]
    conv = conversations_from_messages(msgs, {"dataset": "file"})
    assert [t.prompt for t in conv] == ["hi", "more"]
    assert conv[0].messages == ({"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"})
    assert conv[0].max_tokens == 100 and conv[1].max_tokens is None
    rows = [{"id": "a", "conversations": [{"from": "human", "value": "q1"}, {"from": "gpt", "value": "r"},
                                          {"from": "human", "value": "q2"}]}, {"id": "b", "conversations": []}]  # fmt: skip
    (only,) = sharegpt_conversations(rows)
    assert [t.prompt for t in only] == ["q1", "q2"]


def test_prompts_file_conversations_are_replayed_turn_by_turn(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_bytes(
        orjson.dumps({"messages": [{"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"},
                                   {"role": "user", "content": "u2"}, {"role": "user", "content": "u3"}]})
        + b"\n" + orjson.dumps({"prompt": "solo"}) + b"\n"
    )  # fmt: skip
    plan = plan_requests(_cfg("--sessions", "3", "--turns", "9", "--prompts", str(f), "--max-tokens", "7"))
    assert plan.sessions is not None
    assert plan.sessions.session.tolist() == [0, 0, 0, 1, 2, 2, 2]  # each conversation's own turns, cycled
    assert [s.prompt for s in plan.specs] == ["u1", "u2", "u3", "solo", "u1", "u2", "u3"]
    assert plan.specs[1].max_tokens == 7  # no reply after u2 in the file: --max-tokens


def test_a_session_stays_on_one_sender():
    plan = plan_requests(_cfg("--sessions", "40", "--turns", "uniform:1,5", "--seed", "3"))
    t = plan.sessions
    assert t is not None
    shards = [plan.shard(k, 3) for k in range(3)]
    owner: dict[int, int] = {}
    for k, sh in enumerate(shards):
        assert sh.sessions is not None and len(sh.sessions.session) == len(sh)
        for s in sh.sessions.session.tolist():
            assert owner.setdefault(s, k) == k  # every turn of a session on the same sender
        # a shard holds its sessions whole, turns in order
        for s in set(sh.sessions.session.tolist()):
            turns = sh.sessions.turn[sh.sessions.session == s]
            assert turns.tolist() == list(range(int((t.session == s).sum())))
    assert sorted(owner) == list(range(40))
    back = merge(shards)
    assert np.array_equal(back.indices, plan.indices) and np.array_equal(back.offsets_ns, plan.offsets_ns)
    assert back.sessions is not None
    for f in ("session", "turn", "think_ns"):
        assert np.array_equal(getattr(back.sessions, f), getattr(t, f))


def _mooncake(tmp_path, rows):
    f = tmp_path / "trace.jsonl"
    f.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return f


def test_mooncake_prompts_share_exactly_the_prefixes_of_their_shared_block_ids(tmp_path):
    bs = 16
    rows = [
        {"timestamp": 0, "input_length": 40, "output_length": 5, "hash_ids": [0, 1, 2]},
        {"timestamp": 10, "input_length": 45, "output_length": 6, "hash_ids": [0, 1, 3]},
        {"timestamp": 20, "input_length": 20, "output_length": 7, "hash_ids": [0, 4]},
        {"timestamp": 30, "input_length": 33, "output_length": 8, "hash_ids": [5, 1, 2]},
    ]
    specs = mooncake_specs(read_mooncake(str(_mooncake(tmp_path, rows))), bs)
    toks = [tokenize(s.prompt) for s in specs]
    assert [len(t) for t in toks] == [r["input_length"] for r in rows]  # one token a word (simulator)
    assert [s.max_tokens for s in specs] == [5, 6, 7, 8]

    def common(a, b):
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return n

    # shared ids [0, 1]: exactly two blocks in common, then different text
    assert toks[0][: 2 * bs] == toks[1][: 2 * bs] and toks[0][2 * bs] != toks[1][2 * bs]
    # shared id [0]: one block
    assert toks[0][:bs] == toks[2][:bs] and toks[0][bs : 2 * bs] != toks[2][bs : 2 * bs]
    # the same ids after a different first one share nothing as a prefix (a prefix cache hits nothing)
    assert common(toks[0], toks[3]) < bs
    # a block's text is the same wherever it appears (block 1 inside rows 0 and 3)
    assert toks[0][bs : 2 * bs] == toks[3][bs : 2 * bs]
    text = BlockText(bs)
    assert text.words(7) == BlockText(bs).words(7) != text.words(8)
    # through the simulator's chat template the shared blocks stay a shared prefix of the rendered prompt
    rendered = [tokenize(render_chat([{"role": "user", "content": s.prompt}])) for s in specs]
    assert common(rendered[0], rendered[1]) >= 2 * bs


def test_mooncake_sessions_take_their_delays_as_think_times(tmp_path):
    rows = [
        {"session_id": "a", "timestamp": 1000, "input_length": 8, "output_length": 2, "hash_ids": [0]},
        {"session_id": "b", "timestamp": 1500, "input_length": 8, "output_length": 2, "hash_ids": [9]},
        {"session_id": "a", "delay": 250.5, "input_length": 16, "output_length": 2, "hash_ids": [0, 1]},
        {"timestamp": 3000, "input_length": 4, "output_length": 2, "hash_ids": [7]},
    ]
    f = _mooncake(tmp_path, rows)
    plan = plan_requests(_cfg("--trace", str(f), "--trace-block-size", "8"))  # auto-detected
    t = plan.sessions
    assert t is not None and t.history == "fixed"  # whole prompts: no history of their own
    assert t.session.tolist() == [0, 0, 1, 2] and t.turn.tolist() == [0, 1, 0, 0]
    assert t.think_ns.tolist() == [0, 250_500_000, 0, 0]
    assert plan.offsets_ns[t.turn == 0].tolist() == [0, 500_000_000, 2_000_000_000]
    # turn 1 of session a extends turn 0's block: its prompt starts with turn 0's
    assert plan.specs[1].prompt.startswith(plan.specs[0].prompt)
    with pytest.raises(Exception, match="mooncake row"):
        plan_requests(
            _cfg("--trace", str(_mooncake(tmp_path, [{"hash_ids": [1]}])), "--trace-format", "mooncake")
        )


def test_a_fleet_waits_for_the_last_turn_of_the_longest_session():
    from loadgen.run.fleet.shard import wait_bound_s
    from loadgen.run.sender import STOP_GRACE_S

    cfg = _cfg(
        "--sessions", "3", "--turns", "4", "--think-time", "2", "--timeout", "10", "--rate", "1", "--cv", "0"
    )
    plan = plan_requests(cfg)
    # the last session starts at 2 s; its 4 turns may take 10 s each after 3 think times of 2 s
    assert plan.offsets_ns[-1] == 2 * NS_PER_S
    assert wait_bound_s(cfg, plan) == 2 + 4 * 10 + 3 * 2 + STOP_GRACE_S + 60.0


def test_sharegpt_conversations_are_replayed_with_their_own_human_turns(tmp_path):
    f = tmp_path / "sharegpt.json"
    conv = [{"from": "human", "value": "q1"}, {"from": "gpt", "value": "r" * 80},
            {"from": "human", "value": "q2"}, {"from": "gpt", "value": "r" * 40}]  # fmt: skip
    f.write_bytes(orjson.dumps([{"id": "x", "conversations": conv}]))
    plan = plan_requests(
        _cfg("--sessions", "2", "--turns", "5", "--dataset", "sharegpt", "--dataset-path", str(f))
    )
    assert plan.sessions is not None and plan.sessions.session.tolist() == [0, 0, 1, 1]
    assert [s.prompt for s in plan.specs] == ["q1", "q2", "q1", "q2"]
    assert [s.max_tokens for s in plan.specs] == [20, 10, 20, 10]  # the replies' lengths, ≈ chars / 4
    with pytest.raises(ConfigError, match="sharegpt or --prompts"):
        plan_requests(_cfg("--sessions", "2", "--dataset", "gsm8k", "--dataset-path", str(f)))


def test_the_finished_stream_gives_the_reasoning_only_when_a_session_keeps_it():
    from loadgen.records.record import RequestRecord
    from loadgen.wire.stream import KEEP_REASONING, apply_stream
    from tests.scripted_server import DONE, chat_chunk, usage_chunk

    body = (
        chat_chunk(role=True) + chat_chunk(reasoning="a b", field="reasoning_content")
        + chat_chunk(reasoning=" c", field="reasoning_content") + chat_chunk(content="yes")
        + chat_chunk(finish="stop") + usage_chunk(3, 3) + DONE
    )  # fmt: skip
    reads = [
        (i, body[i * 40 : (i + 1) * 40]) for i in range(len(body) // 40 + 1)
    ]  # events split across reads
    kept, plain = RequestRecord(index=0), RequestRecord(index=1)
    apply_stream(kept, reads, KEEP_REASONING)
    apply_stream(plain, reads)
    assert kept.output_text == plain.output_text == "yes"
    assert kept.reasoning_text == "a b c" and plain.reasoning_text is None
    assert kept.chunk_kind == plain.chunk_kind == "rrc"
