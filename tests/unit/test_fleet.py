"""The pure parts of multi-sender runs: clock offsets (Cristian), --workers auto, --max-concurrency shares, the
merge of per-sender files by index (with worker_lost records for a lost sender), and the per-sender verdict."""

from __future__ import annotations

import random
from dataclasses import replace

import orjson
import pytest

from loadgen.analysis.client_check import schedule_error, senders_check
from loadgen.analysis.selfcheck import SelfCheck
from loadgen.config import (
    EndpointConfig,
    LengthDist,
    RunConfig,
    SamplingConfig,
    ScheduleConfig,
    SendersConfig,
    WorkloadConfig,
)
from loadgen.errors import ConfigError, ErrorKind
from loadgen.plan.planner import plan_requests
from loadgen.records.columns import from_records, read_records
from loadgen.records.record import RequestRecord
from loadgen.results.merge import Lost, merge_senders, worker_lost_records
from loadgen.run.fleet.choose import EVENTS_PER_SENDER_S, auto_workers
from loadgen.run.fleet.clocksync import ClockOffset, cristian, measure
from loadgen.run.fleet.shard import split_cap


def _cfg(rate=10.0, n=40, max_tokens=64, **kw) -> RunConfig:
    return RunConfig(
        endpoint=EndpointConfig(base_url="http://127.0.0.1:1"),
        schedule=ScheduleConfig(rate=rate, cv=2.0, seed=7, num_requests=n, warmup=3),
        sampling=SamplingConfig(max_tokens=max_tokens),
        **kw,
    )


# -- clock offsets ---------------------------------------------------------------------------------------------
def test_cristian_keeps_the_round_trip_with_the_smallest_rtt():
    # (local before, reference, local after): the second sample has the smallest round trip
    off = cristian([(100, 1_000_150, 400), (1000, 1_001_020, 1040), (2000, 1_002_300, 2500)])
    assert off == ClockOffset(offset_ns=1_000_000, uncertainty_ns=20, rtt_ns=40, rounds=3)
    assert off.to_local(1_000_500) == 500
    with pytest.raises(ValueError):
        cristian([])
    with pytest.raises(ValueError):
        cristian([(10, 0, 5)])


def test_measured_offset_holds_the_true_one_within_its_uncertainty_under_asymmetric_delays():
    rng = random.Random(3)
    true_offset = 1_796_000_000_123_456_789  # wall clock - monotonic, as between two real clocks
    now = [5_000_000_000]

    def local() -> int:
        return now[0]

    def probe() -> int:
        now[0] += rng.randint(50_000, 3_000_000)  # request delay: asymmetric, varying
        seen = now[0] + true_offset
        now[0] += rng.randint(10_000, 200_000)  # answer delay
        return seen

    off = measure(probe, rounds=16, local=local)
    assert off.rounds == 16 and off.uncertainty_ns == (off.rtt_ns + 1) // 2
    assert abs(off.offset_ns - true_offset) <= off.uncertainty_ns
    assert off.rtt_ns < 1_000_000  # the best of 16 round trips, not a typical one


# -- --workers auto and --max-concurrency ----------------------------------------------------------------------
def test_auto_workers_from_the_planned_token_events_and_the_cores():
    plan = plan_requests(_cfg(rate=1000.0, max_tokens=256))  # ~256,000 token events/s: 6 senders' worth
    s = auto_workers(_cfg(rate=1000.0), plan, cores=16)
    assert s.workers == 6 and "~256,000 token events/s" in s.line and "(1,000 req/s x 256 tokens)" in s.line
    s = auto_workers(_cfg(rate=1000.0), plan, cores=4, keep_for_server=1)
    assert s.workers == 3 and "it needs 6" in s.line and "1 left for the built-in simulator" in s.line
    small = plan_requests(_cfg(rate=4.0, max_tokens=256))
    assert auto_workers(_cfg(rate=4.0), small, cores=64).workers == 1  # ~1,000 events/s: one is enough
    assert 1000.0 * 256 / EVENTS_PER_SENDER_S > 5
    burst = replace(_cfg(), schedule=ScheduleConfig(rate=float("inf"), num_requests=20, max_concurrency=8))
    s = auto_workers(burst, plan_requests(burst), cores=5, keep_for_server=1)
    assert s.workers == 4 and "closed loop" in s.line
    # requests without max_tokens of their own: an assumed length, said so through the number in the line
    own = replace(_cfg(rate=200.0), workload=WorkloadConfig(output_len=LengthDist("fixed", 1000)))
    assert auto_workers(own, plan_requests(own), cores=8).workers == 4


def test_max_concurrency_is_shared_out_so_the_total_stays():
    assert split_cap(None, 3) == [None, None, None]
    assert split_cap(10, 3) == [4, 3, 3] and sum(split_cap(257, 8)) == 257
    with pytest.raises(ConfigError, match="cannot be shared by 4 senders"):
        split_cap(3, 4)


def test_senders_config_validates_workers_and_ray_address():
    assert not SendersConfig().distributed
    assert SendersConfig(workers=None).distributed and SendersConfig(ray_address="auto").distributed
    with pytest.raises(ConfigError, match="--workers"):
        SendersConfig(workers=0)
    with pytest.raises(ConfigError, match="ray://"):
        SendersConfig(ray_address="ray://head:10001")
    assert _cfg().public_dict()["senders"] == {"workers": 1, "ray": None}


# -- merging per-sender files -------------------------------------------------------------------------------------
def _write(path, recs, torn=b""):
    path.write_bytes(b"".join(r.to_json() + b"\n" for r in recs) + torn)


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_sender_files_merge_by_index_whatever_order_they_finished_in(tmp_path, n):
    plan = plan_requests(_cfg(n=37))
    rng = random.Random(n)
    files = []
    for k in range(n):
        recs = [
            RequestRecord(index=i, intended_ns=off, max_tokens=s.max_tokens, completion_tokens=i)
            for i, off, s in plan.shard(k, n).requests()
        ]
        rng.shuffle(recs)  # completion order, not index order
        files.append(tmp_path / f"sender-{k}.jsonl")
        _write(files[-1], recs)
    res = merge_senders(files, tmp_path / "requests.jsonl")
    merged = read_records(tmp_path / "requests.jsonl")
    assert [r.index for r in merged] == list(range(len(plan))) and res.written == len(plan)
    assert [r.intended_ns for r in merged] == [int(x) for x in plan.offsets_ns]
    assert all(r.completion_tokens == r.index for r in merged)  # each line copied whole
    assert res.per_sender == [len(plan.shard(k, n)) for k in range(n)] and res.duplicates == res.torn == 0


def test_a_lost_sender_leaves_worker_lost_records_and_a_torn_line_is_left_out(tmp_path):
    plan = plan_requests(_cfg(n=20))
    a, b = plan.shard(0, 2), plan.shard(1, 2)
    _write(tmp_path / "s0.jsonl", [RequestRecord(index=i, intended_ns=o) for i, o, _ in a.requests()])
    kept = list(b.requests())[:4]  # sender 1 finished four requests, then died writing the fifth
    _write(
        tmp_path / "s1.jsonl",
        [RequestRecord(index=i, intended_ns=o) for i, o, _ in kept],
        torn=b'{"index":9,"warm',
    )
    res = merge_senders(
        [tmp_path / "s0.jsonl", tmp_path / "s1.jsonl"],
        tmp_path / "requests.jsonl",
        lost={1: Lost(b, "sender 1 on n2 was lost: killed")},
        api="completions",
    )
    merged = read_records(tmp_path / "requests.jsonl")
    assert [r.index for r in merged] == list(range(len(plan))) and res.torn == 1
    lost = [r for r in merged if r.error_kind == ErrorKind.WORKER_LOST]
    assert res.worker_lost == {1: len(b) - 4} == {1: len(lost)}
    assert {r.index % 2 for r in lost} == {1}
    for r in lost:
        assert r.status == "error" and r.error_message == "sender 1 on n2 was lost: killed"
        assert r.intended_ns == plan.offsets_ns[r.index] and r.warmup == (r.index < 3)
        assert r.api == "completions" and r.dispatched_ns is None and r.max_tokens == 64
    # an interrupted run: only requests planned before the interruption were going to be sent
    cut = int(plan.offsets_ns[10])
    recs = worker_lost_records(b, {i for i, _, _ in kept}, "x", "chat", before_ns=cut)
    assert recs and all(r.intended_ns < cut for r in recs)


def test_every_error_kind_has_a_label():
    from loadgen.analysis.catalogue import ERROR_LABELS

    assert {k.value for k in ErrorKind} <= set(ERROR_LABELS)
    assert ErrorKind.WORKER_LOST.value == "worker_lost"


# -- the verdict --------------------------------------------------------------------------------------------------
def _outcome(k, lags_ms=0.1, cpu=0.2):
    """What sender k reports: its self-check as it sends it (fixed-size: a lag histogram and the CPU peak)."""
    check = SelfCheck.from_dict(
        {
            "lags_ns": [int(lags_ms * 1e6)] * 200,
            "cpu_windows": [cpu] * 5,
            "cpu_total_s": cpu * 5,
            "wall_total_s": 5.0,
        }
    )
    return {"k": k, "spin_s": 0.0, "selfcheck": orjson.loads(orjson.dumps(check.to_dict()))}


def test_the_run_is_trustworthy_only_if_every_sender_is_and_says_which_is_not():
    cfg = _cfg()
    recs = from_records(
        RequestRecord(index=i, intended_ns=i * 1000, dispatched_ns=i * 1000 + 10_000) for i in range(40)
    )
    infos = [{"host": "a", "pid": 1, "clock": {}}, {"host": "b", "pid": 2, "clock": {}}]
    ok = senders_check(cfg, recs, infos, [_outcome(0), _outcome(1)], {})
    assert ok["trustworthy"] and ok["untrustworthy_senders"] == [] and len(ok["senders"]) == 2
    bad = senders_check(cfg, recs, infos, [_outcome(0), _outcome(1, lags_ms=80.0, cpu=0.97)], {})
    assert not bad["trustworthy"] and bad["untrustworthy_senders"] == [1]
    assert all(r.startswith("sender 1 on b (pid 2): ") for r in bad["reasons"]) and len(bad["reasons"]) == 3
    assert bad["cpu_peak_1s"] == pytest.approx(0.97) and bad["senders"][0]["trustworthy"]
    lost = senders_check(cfg, recs, infos, [_outcome(0), None], {1: "its process ended (signal 9)"})
    assert lost["untrustworthy_senders"] == [1] and "signal 9" in lost["reasons"][0]
    # a Ray sender whose clock offset is known only within 8 ms cannot keep a 5 ms schedule
    far = [infos[0], {"node_ip": "10.0.0.9", "pid": 3, "clock": {"uncertainty_ns": 8_000_000}}]
    v = senders_check(cfg, recs, far, [_outcome(0), _outcome(1)], {})
    assert (
        v["untrustworthy_senders"] == [1] and "±8.00 ms" in v["reasons"][0] and "10.0.0.9" in v["reasons"][0]
    )
    err = schedule_error([{"clock": {"uncertainty_ns": 400_000}}, {"clock": {"uncertainty_ns": 300_000}}])
    assert err["vs_driver_max_ms"] == 0.4 and err["between_senders_max_ms"] == pytest.approx(0.7)


def test_a_record_line_starts_with_its_index():
    # the merge reads the index from a line's first bytes: RequestRecord.to_json must keep writing it first
    assert RequestRecord(index=12345).to_json().startswith(b'{"index":12345,')
    assert orjson.loads(RequestRecord(index=3).to_json())["index"] == 3


def test_each_senders_send_lag_is_its_own_requests():
    """Request i was sent by sender i % n: a late sender 1 (odd indices 20 ms late) is the one named."""
    cfg = _cfg()
    recs = from_records(
        RequestRecord(
            index=i, intended_ns=i * 1000, dispatched_ns=i * 1000 + (20_000_000 if i % 2 else 10_000)
        )
        for i in range(40)
    )
    infos = [{"host": "a", "pid": 1, "clock": {}}, {"host": "b", "pid": 2, "clock": {}}]
    v = senders_check(cfg, recs, infos, [_outcome(0), _outcome(1)], {})
    assert v["untrustworthy_senders"] == [1]
    assert v["senders"][0]["send_lag_ms"]["p99"] == pytest.approx(0.01)
    assert v["senders"][1]["send_lag_ms"]["p99"] == pytest.approx(20.0)
    assert "send lag p99 20.00 ms" in v["reasons"][0]


def test_a_senders_self_check_travels_in_fixed_size_and_pools_exactly():
    a = SelfCheck.from_dict({"lags_ns": [1_000_000] * 99 + [70_000_000], "cpu_windows": [0.3, 0.5]})
    b = SelfCheck.from_dict(orjson.loads(orjson.dumps(a.to_dict())))
    assert (
        b.lag_ms.n == 100 and b.lag_ms.max == pytest.approx(70.0) and b.cpu_peak_window == pytest.approx(0.5)
    )
    assert len(orjson.dumps(SelfCheck.from_dict({"lags_ns": [1_000_000] * 100_000}).to_dict())) < 2_000
    pooled = SelfCheck()
    pooled.lag_ms.merge(a.lag_ms)
    pooled.lag_ms.merge(b.lag_ms)
    d = pooled.lag_ms.distribution()
    assert d["count"] == 200 and d["max"] == pytest.approx(70.0) and d["p50"] == pytest.approx(1.0, rel=0.01)
