"""The one reader of requests.jsonl: one pass gives the columns, the accuracy table, llama.cpp's timings cross-check
and the report's token bins, with the same numbers as the record-by-record path gave before."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import orjson
import pytest

from loadgen.records.record import RequestRecord
from loadgen.workload.spec import RequestSpec

EXPECTED = Path(__file__).resolve().parents[1] / "data" / "one_reader" / "expected.json"
MS = 1_000_000

# index -> (dataset, domain, reference); sharegpt has no reference (unscored)
KINDS = [
    ("gsm8k", "math", "18"),
    ("aime2024", "math", "\\frac{1}{2}"),
    ("gpqa_diamond", "knowledge", "C"),
    ("sharegpt", "chat", None),
]
ANSWERS = {
    "gsm8k": ["#### 18", "The answer is 18.", "#### 17", "so 18 dollars", "", "<think>18 maybe"],
    "aime2024": ["\\boxed{\\frac{1}{2}}", "\\boxed{0.5}", "The final answer is 1/2", "\\boxed{3}", "no idea"],
    "gpqa_diamond": ["Answer: (C)", "**Answer:** B", "\\boxed{C}", "C", "option D", "I cannot tell"],
    "sharegpt": ["hello"],
}
BUDGETS = [256, 4096, None, "low"]  # "low" and None ("default") are no numbers: they tie in the budget order
N = 48


def fixture_specs() -> list[RequestSpec]:
    out = []
    for i in range(N):
        dataset, domain, ref = KINDS[i % len(KINDS)]
        out.append(RequestSpec(prompt=f"q{i}", reference=ref, tags={"dataset": dataset, "domain": domain}))
    return out


def fixture_records() -> list[RequestRecord]:
    """A run's records in the order they finished (not their index order): answers of every kind, warm-ups, failed
    and truncated requests, chunk arrays, and llama.cpp timings on some responses."""
    rng = random.Random(19)
    recs = []
    for i in range(N + 3):
        warm = i >= N  # warm-up records have their own indices
        dataset, domain, _ = KINDS[i % len(KINDS)]
        budget = BUDGETS[rng.randrange(len(BUDGETS))]
        tags = {"dataset": dataset, "domain": domain} | ({} if budget is None else {"budget": budget})
        status = "error" if rng.random() < 0.1 else "ok"
        send = i * 40 * MS + rng.randrange(MS)
        first = send + rng.randrange(5 * MS, 60 * MS)
        n = rng.randrange(1, 40)
        gaps = [rng.randrange(MS // 2, 20 * MS) for _ in range(n - 1)]
        chunks = [first + sum(gaps[:j]) for j in range(n)]
        rec = RequestRecord(
            index=i, warmup=warm, tags=tags, max_tokens=budget if isinstance(budget, int) else None,
            intended_ns=send - MS, dispatched_ns=send - MS // 2, send_ns=send, first_token_ns=first,
            first_content_ns=first, last_token_ns=chunks[-1], end_ns=chunks[-1] + MS, completion_tokens=n,
            prompt_tokens=12, chunk_ns=chunks, chunk_tokens=[1] * n, chunk_kind="c" * n, status=status,
            finish_reason=rng.choice(["stop", "stop", "length"]) if status == "ok" else None,
            output_text=rng.choice(ANSWERS[dataset]) if status == "ok" else None,
        )  # fmt: skip
        if rng.random() < 0.6:
            pn = n + (rng.random() < 0.2)
            rec.server_timings = {"prompt_ms": rng.uniform(2, 30), "predicted_n": pn,
                                  "predicted_ms": pn * rng.uniform(0.4, 18)}  # fmt: skip
        recs.append(rec)
    rng.shuffle(recs)
    return recs


def write_fixture(out: Path) -> Path:
    path = out / "requests.jsonl"
    path.write_bytes(b"".join(r.to_json() + b"\n" for r in fixture_records()) + b'{"index": 7, "torn')
    return path


def both(accuracy: dict | None, timings: dict | None) -> bytes:
    acc = dict(accuracy or {}, checker="(the checker installed)")
    return orjson.dumps({"accuracy": acc, "engine_timings": timings}, option=orjson.OPT_INDENT_2)


@pytest.fixture
def fallback_checker(monkeypatch):
    """The built-in checker, whether math-verify is installed or not (its verdicts are the fixture's)."""
    import loadgen.analysis.accuracy as accuracy

    monkeypatch.setattr(accuracy, "_MATH_VERIFY", False)


def test_accuracy_and_engine_timings_are_those_of_the_record_path(tmp_path, fallback_checker):
    """expected.json was written by the path before the one reader (records sorted by index for accuracy_table,
    crosscheck over the records in file order, each a separate read of the file): the same bytes, in one pass."""
    from loadgen.results.summary import read_run

    write_fixture(tmp_path)
    read = read_run(tmp_path, fixture_specs())
    assert read.accuracy is not None and read.engine_timings is not None
    assert read.accuracy["methods"] and read.engine_timings["requests"] > 10
    assert len(read.cols) == N + 3 and read.cols.skipped_lines == 1  # every record, the torn line left out
    assert both(read.accuracy, read.engine_timings) == EXPECTED.read_bytes()


def test_the_accuracy_table_does_not_depend_on_the_order_records_come_in(tmp_path, fallback_checker):
    from loadgen.analysis.accuracy_tables import AccuracyTally, accuracy_table

    recs = fixture_records()
    by_index = accuracy_table(sorted(recs, key=lambda r: r.index), fixture_specs())
    tally = AccuracyTally(fixture_specs())
    for r in recs:  # file order, as the one pass sees them
        tally.add_one(r, r.index)
    assert orjson.dumps(tally.table()) == orjson.dumps(by_index)
    # the fixture has ties where the order shows (methods of equal counts, budgets that are no number): taken in
    # the file's order by position, they would be listed otherwise
    counts = list(by_index["methods"].values())
    assert len(counts) != len(set(counts)) and set(list(by_index["by_budget"])[2:]) == {"default", "low"}
    assert orjson.dumps(accuracy_table(recs, fixture_specs())) != orjson.dumps(by_index)


def test_records_one_at_a_time_come_from_the_same_parser(tmp_path, monkeypatch):
    """iter_records is the one parser's lines made records: no second reading of the line format."""
    import loadgen.records.columns.records as lines_mod
    from loadgen.records.columns import iter_records, read_requests

    write_fixture(tmp_path)
    parsed = []
    real = lines_mod.RecordLines.__iter__

    def counting(self):
        for d in real(self):
            parsed.append(d["index"])
            yield d

    monkeypatch.setattr(lines_mod.RecordLines, "__iter__", counting)
    recs = list(iter_records(tmp_path / "requests.jsonl", chunks=False))
    assert [r.index for r in recs] == [r.index for r in fixture_records()] and recs[0].chunk_ns == []
    assert len(parsed) == N + 3
    cols = read_requests(tmp_path / "requests.jsonl")
    assert len(parsed) == 2 * (N + 3) and cols.index.tolist() == [r.index for r in recs]


def test_token_bins_of_a_run_sum_into_any_width_the_page_picks():
    """The run's pass bins received tokens before it knows the page's bin width: summed into that width, they are
    the bins the page would have computed itself (the chunk part exactly; a spread request's part to rounding)."""
    from loadgen.records.columns import ChunkBlock, RequestColumns
    from loadgen.report.run_data import TokenBins

    rng = np.random.default_rng(3)
    t = np.sort(rng.integers(0, 2_400 * 10**9, size=50_000))  # 40 minutes: the adaptive bins widen
    k = rng.integers(0, 4, size=t.size)
    blocks = [
        ChunkBlock(rows=np.arange(10), lens=np.full(10, part.size // 10), t=part, k=kp,
                   measured_ok=np.ones(10, dtype=bool))
        for part, kp in zip(np.split(t, 10), np.split(k, 10), strict=True)
    ]  # fmt: skip
    size = 4
    cols = RequestColumns.of_times(
        {
            "first_token_ns": np.array([1e9, 5e9, 2_000e9, 7e8]),
            "last_token_ns": np.array([3e9, 5e9, 2_401.3e9, 9e8]),
        },
        {"completion_tokens": np.array([10.0, 3.0, 500.0, 0.0])},
    )
    assert len(cols) == size and not cols.chunks_read.any()  # these four are spread evenly over their span
    adaptive = TokenBins()
    for b in blocks:
        adaptive.add(b)
    adaptive.finish(cols)
    assert adaptive.width == 10**8 and adaptive.bins.size <= TokenBins.MAX_BINS
    for width in (10**9, 2 * 10**9, 5 * 10**9, 10 * 10**9, 20 * 10**9):
        direct = TokenBins(width)
        for b in blocks:
            direct.add(b)
        direct.finish(cols)
        summed = adaptive.at(width)
        assert summed is not None and summed.size == direct.bins.size
        assert np.allclose(summed, direct.bins, rtol=1e-9, atol=1e-6)
    assert adaptive.at(5 * 10**7) is None  # finer than the bins: the page reads the file itself
