"""Trace readers on small BurstGPT- and Azure-layout files, windows, speed-up, synthetic prompts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from loadgen.errors import ConfigError, WorkloadError
from loadgen.workload.text import WORDS, synthetic_prompt
from loadgen.workload.traces import read_trace, trace_to_specs

TRACES = Path(__file__).resolve().parents[1] / "data" / "datasets" / "traces"
S = 1_000_000_000


def test_burstgpt_layout_drops_failed_rows_by_default():
    t = read_trace(TRACES / "burstgpt_sample.csv")
    assert t.fmt == "burstgpt"
    assert t.arrival_ns.tolist() == [0, 1 * S, 4 * S, 9 * S, 9 * S, 16 * S]
    assert t.input_tokens.tolist() == [472, 1200, 85, 640, 52, 230]
    assert t.output_tokens.tolist() == [18, 256, 140, 77, 300, 95]
    assert t.rows_read == 7 and t.rows_dropped == {"failed": 1}
    keep = read_trace(TRACES / "burstgpt_sample.csv", drop_failed=False)
    assert len(keep) == 7


def test_burstgpt_filters_window_and_speedup():
    t = read_trace(TRACES / "burstgpt_sample.csv", models=["ChatGPT"], log_types=["Conversation log"])
    assert t.input_tokens.tolist() == [472, 85, 640]
    # the window is in the trace's own seconds from its first row (t=5); offsets restart at the first kept row
    w = read_trace(TRACES / "burstgpt_sample.csv", start_s=1, end_s=10)
    assert w.arrival_ns.tolist() == [0, 3 * S, 8 * S, 8 * S]
    fast = read_trace(TRACES / "burstgpt_sample.csv", speedup=4)
    assert fast.arrival_ns.tolist() == [0, S // 4, S, 9 * S // 4, 9 * S // 4, 4 * S]
    with pytest.raises(ConfigError):
        read_trace(TRACES / "burstgpt_sample.csv", speedup=0)
    with pytest.raises(WorkloadError, match="holds no requests"):
        read_trace(TRACES / "burstgpt_sample.csv", start_s=100)


def test_azure_layout_exact_to_the_tick():
    t = read_trace(TRACES / "azure_sample.csv")
    assert t.fmt == "azure"
    assert t.arrival_ns.tolist() == [0, 4_314_579_000, 4_314_579_000, 60 * S, 73_319_410_000]
    assert t.input_tokens.tolist() == [374, 396, 2048, 20000, 1000]
    assert t.output_tokens.tolist() == [44, 109, 5, 500, 7]
    d = t.describe()
    assert d["requests"] == 5 and d["input_tokens"]["max"] == 20000


def test_azure_with_utc_offset(tmp_path):
    f = tmp_path / "az24.csv"
    f.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2024-05-10 00:00:00.009930+00:00,100,10\n2024-05-10 02:00:01.5+02:00,200,20\n"
    )
    t = read_trace(f)
    assert t.arrival_ns.tolist() == [0, 1_490_070_000]  # 00:00:01.5 UTC


def test_plain_timestamps_and_bad_rows(tmp_path):
    t = read_trace(TRACES / "timestamps.txt")
    assert t.fmt == "timestamps" and t.input_tokens is None
    assert t.arrival_ns.tolist() == [0, S // 4, S // 2, 2 * S, 7 * S // 2]
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n1,ChatGPT,x,1,1,API log\n"
    )
    with pytest.raises(WorkloadError, match=r"bad.csv:2: malformed burstgpt row"):
        read_trace(bad)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("Timestamp,Model,Request tokens,Response tokens\n")
    with pytest.raises(WorkloadError):
        read_trace(wrong, fmt="azure")


def test_synthetic_prompt_length_and_determinism():
    rng = np.random.default_rng(3)
    text = synthetic_prompt(500, rng)
    words = text.split(" ")
    assert len(words) == 500 and set(words) <= set(WORDS)
    assert text == synthetic_prompt(500, np.random.default_rng(3))
    import random

    assert len(synthetic_prompt(10, random.Random(1)).split(" ")) == 10
    assert synthetic_prompt(0, rng) == ""


def test_trace_lengths_drive_specs():
    t = read_trace(TRACES / "azure_sample.csv")
    specs = trace_to_specs(t, seed=1, max_input_tokens=4096, force_output_len=True)
    assert [s.max_tokens for s in specs] == [44, 109, 5, 500, 7]
    assert [s.input_tokens_hint for s in specs] == [374, 396, 2048, 4096, 1000]
    assert len(specs[0].prompt.split(" ")) == 374
    assert specs[0].extra_body == {"min_tokens": 44, "ignore_eos": True}
    assert specs == trace_to_specs(t, seed=1, max_input_tokens=4096, force_output_len=True)
