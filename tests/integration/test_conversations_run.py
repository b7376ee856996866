"""Conversations sent for real on loopback (issue 22): each turn is sent at the previous turn's end + its think
time (its intended start), the history on the wire holds the server's actual answers with the reasoning
stripped or kept, a failed turn ends its session with records that say so, per-turn summaries and the
simulator's prefix cache across turns, and a session stays on one sender under --workers."""

from __future__ import annotations

import asyncio
import json

import orjson

from loadgen.options import build_config
from loadgen.options.sources import options_from_argv
from loadgen.records.columns import read_records
from loadgen.run.runner import run_async
from tests.integration.test_cli import cli
from tests.scripted_server import DONE, Script, ScriptedServer, chat_chunk, usage_chunk

THINK_S = 0.15


def _answer_script() -> Script:
    """Every answer: reasoning 'hmm, so' then the answer 'yes.' (vLLM's chat stream, usage on each chunk)."""
    u = lambda n: {"prompt_tokens": 5, "completion_tokens": n, "total_tokens": 5 + n}  # noqa: E731
    w = [
        (0, chat_chunk(role=True)),
        (0.005, chat_chunk(reasoning="hmm,", usage=u(1))),
        (0.005, chat_chunk(reasoning=" so", usage=u(2))),
        (0.005, chat_chunk(content="yes.", usage=u(3))),
        (0, chat_chunk(finish="stop") + usage_chunk(5, 3) + DONE),
    ]
    return Script(w)


async def _run_scripted(tmp_path, history: str, api: str = "chat"):
    srv = ScriptedServer()
    srv.default = _answer_script()
    await srv.start()
    try:
        cfg = build_config(options_from_argv([
            "--base-url", srv.base_url, "--sessions", "4", "--turns", "3", "--rate", "20", "--cv", "1",
            "--think-time", str(THINK_S), "--history", history, "--api", api, "--no-scrape", "--no-live",
            "--no-report", "--quiet", "--output-dir", str(tmp_path / history / api),
        ]))  # fmt: skip
        res = await run_async(cfg, install_signal_handlers=False)
    finally:
        await srv.stop()
    posts = [a for a in srv.arrivals if a.path.endswith("completions")]
    return res, posts, read_records(res.output_dir / "requests.jsonl")


def test_turns_are_sent_a_think_time_after_the_previous_turn_ended(tmp_path):
    res, posts, recs = asyncio.run(_run_scripted(tmp_path, "strip-reasoning"))
    assert len(recs) == len(posts) == 12 and all(r.status == "ok" for r in recs)
    by = {(r.session_id, r.turn): r for r in recs}
    assert set(by) == {(s, k) for s in range(4) for k in range(3)}
    for (s, k), r in by.items():
        assert r.dispatched_ns is not None and r.send_ns is not None
        assert r.dispatched_ns >= r.intended_ns  # never sent before its intended start
        if k:
            prev = by[(s, k - 1)]
            # the intended start IS the previous turn's end + the think time, exactly
            assert r.intended_ns == prev.end_ns + round(THINK_S * 1e9)
            assert r.send_ns > prev.end_ns
    # latencies are measured from the intended start too, per turn
    summary = res.summary
    turns = summary["turns"]["per_turn"]
    assert [t["turn"] for t in turns] == [0, 1, 2] and all(t["ok"] == 4 for t in turns)
    for t in turns:
        assert t["ttft_from_intended"]["p50"] >= t["ttft"]["p50"] > 0


def test_history_on_the_wire_strips_or_keeps_the_servers_reasoning(tmp_path):
    for history, kept in (("strip-reasoning", "yes."), ("keep-reasoning", "<think>hmm, so</think>yes.")):
        _res, posts, recs = asyncio.run(_run_scripted(tmp_path, history))
        third = [p.body["messages"] for p in posts if len(p.body["messages"]) == 5]
        assert len(third) == 4  # every session's turn 2 resent two answers
        for msgs in third:
            assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"]
            assert msgs[1]["content"] == msgs[3]["content"] == kept
        if history == "keep-reasoning":
            assert all(r.reasoning_text == "hmm, so" for r in recs)
    # the completions API resends one growing prompt
    _res, posts, _recs = asyncio.run(_run_scripted(tmp_path, "keep-reasoning", api="completions"))
    longest = max((p.body["prompt"] for p in posts), key=len)
    assert longest.count("<think>hmm, so</think>yes.") == 2


def test_a_failed_turn_ends_its_session_with_records_that_say_so(tmp_path):
    out = tmp_path / "f"
    r = cli("--sessions", "12", "--turns", "4", "--rate", "20", "--think-time", "0.05", "--max-tokens", "16",
            "--sim-arg=--fault-500", "--sim-arg=0.3", "--no-live", "--no-report", "--no-scrape",
            "--output-dir", str(out), timeout=120)  # fmt: skip
    assert r.returncode in (0, 3), r.stderr
    recs = read_records(out / "requests.jsonl")
    assert len(recs) == 48  # planned turns = records: nothing silently skipped
    by = {(x.session_id, x.turn): x for x in recs}
    aborted_sessions = 0
    for s in range(12):
        turns = [by[(s, k)] for k in range(4)]
        failed = next((k for k, x in enumerate(turns) if x.status != "ok"), None)
        if failed is None:
            continue
        assert turns[failed].error_kind == "http_5xx" and turns[failed].dispatched_ns is not None
        for x in turns[failed + 1 :]:
            aborted_sessions += 1
            assert x.error_kind == "session_aborted" and x.dispatched_ns is None and x.send_ns is None
            assert f"session {s}" in x.error_message and f"turn {failed} failed" in x.error_message
    assert aborted_sessions > 0
    summary = json.loads((out / "summary.json").read_text())
    per_turn = summary["turns"]["per_turn"]
    assert sum(t["session_aborted"] for t in per_turn) == aborted_sessions
    assert per_turn[0]["session_aborted"] == 0
    assert sum(t["requests"] for t in per_turn) == 48


def test_the_simulator_reuses_a_sessions_history_and_keeping_reasoning_hits_more(tmp_path):
    hit = {}
    for history in ("strip-reasoning", "keep-reasoning"):
        out = tmp_path / history
        r = cli("--sessions", "10", "--turns", "3", "--rate", "10", "--think-time", "0.05", "--history", history,
                "--max-tokens", "200", "--no-live", "--no-report", "--output-dir", str(out), timeout=120)  # fmt: skip
        assert r.returncode == 0, r.stderr
        per_turn = json.loads((out / "summary.json").read_text())["turns"]["per_turn"]
        prompt = [t["prompt_tokens"]["mean"] for t in per_turn]
        assert prompt[0] < prompt[1] < prompt[2]  # the history grows
        hit[history] = [t["prefix_cache_hit_rate"] for t in per_turn]
        assert hit[history][0] == 0 and hit[history][1] > 0.3  # a returning session finds its history cached
        recs = read_records(out / "requests.jsonl")
        assert all(x.cached_tokens is None or x.cached_tokens <= x.prompt_tokens for x in recs)
    # the stripped reasoning is not a hit; the kept one is
    assert hit["keep-reasoning"][1] > hit["strip-reasoning"][1]
    assert hit["keep-reasoning"][2] > hit["strip-reasoning"][2]
    r = cli("compare", str(tmp_path / "strip-reasoning"), str(tmp_path / "keep-reasoning"))
    assert r.returncode == 0, r.stderr
    (head,) = [ln for ln in r.stdout.splitlines() if ln.startswith("by turn:")]
    assert "strip-reasoning" in head and "keep-reasoning" in head
    rows = [ln.split() for ln in r.stdout.splitlines()[r.stdout.splitlines().index(head) + 2 :]]
    assert [row[0] for row in rows] == ["0", "1", "2"]  # a row per turn, both runs on it


def test_sessions_spread_over_two_senders_keep_their_turns_together(tmp_path):
    out = tmp_path / "w"
    r = cli("--sessions", "8", "--turns", "3", "--rate", "10", "--think-time", "0.05", "--max-tokens", "16",
            "--workers", "2", "--no-live", "--no-report", "--no-scrape", "--output-dir", str(out), timeout=180)  # fmt: skip
    assert r.returncode == 0, r.stderr
    recs = read_records(out / "requests.jsonl")
    assert len(recs) == 24 and all(x.status == "ok" for x in recs)
    by = {(x.session_id, x.turn): x for x in recs}
    for (s, k), x in by.items():
        if k:  # chained on the previous turn's end: its sender saw that turn end
            assert x.intended_ns == by[(s, k - 1)].end_ns + 50_000_000
    lines = (out / "requests.jsonl").read_bytes().splitlines()
    assert all(b'"session_id"' in ln for ln in lines) and orjson.loads(lines[0])["turn"] is not None
