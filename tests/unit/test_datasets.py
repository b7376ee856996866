"""Dataset loaders: each reads a small file in its dataset's real field layout (tests/data/datasets)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from loadgen.analysis.accuracy import score
from loadgen.errors import WorkloadError
from loadgen.workload.dataset_sources import hub_offline_reason
from loadgen.workload.datasets import MATH_INSTRUCTION, describe_datasets, load_dataset, resolve_name

DATA = Path(__file__).resolve().parents[1] / "data" / "datasets"


def test_gsm8k_folder_picks_the_test_split_and_takes_the_number_after_hashes():
    specs = load_dataset("gsm8k", DATA / "gsm8k")  # the folder holds main/test.jsonl and main/train.jsonl
    assert [s.reference for s in specs] == ["27", "1000", "16"]  # '#### 1,000' loses its separator
    s = specs[0]
    assert s.messages is not None and s.messages[0]["role"] == "user"
    assert s.messages[0]["content"].endswith(MATH_INSTRUCTION)
    assert s.prompt.startswith("Lena buys")
    assert dict(s.tags) == {"dataset": "gsm8k", "domain": "math", "difficulty": "easy", "item": "gsm8k/0"}
    assert s.max_tokens == 4096 and s.input_tokens_hint and s.input_tokens_hint > 10


def test_math500_keeps_level_and_subject_tags():
    specs = load_dataset("MATH-500", DATA / "math500" / "test.jsonl", max_tokens=2048)
    assert len(specs) == 3
    assert specs[1].reference == r"\left( 3, \frac{\pi}{2} \right)"
    assert specs[1].tags["level"] == 2 and specs[1].tags["subject"] == "precalculus"
    assert (
        specs[1].tags["difficulty"] == "medium"
        and specs[1].tags["item"] == "math500/test/precalculus/9002.json"
    )
    assert all(s.max_tokens == 2048 for s in specs)


def test_aime2024_layout():
    specs = load_dataset("aime24", DATA / "aime_2024.jsonl")
    assert [s.reference for s in specs] == ["14", "45"]
    assert specs[0].tags["difficulty"] == "hard" and specs[0].tags["item"] == "aime2024/9001"
    assert specs[0].max_tokens == 16384
    # a boxed '014' in an answer matches the reference '14'
    assert score(r"so \boxed{014}", specs[0].reference, "aime2024").correct


def test_gpqa_options_are_shuffled_per_item_with_the_seed_and_the_reference_letter_follows():
    specs = load_dataset("gpqa", DATA / "gpqa_diamond.csv", seed=0)
    assert len(specs) == 2
    for s in specs:
        body = s.messages[0]["content"]
        letter = s.reference
        assert letter in "ABCD"
        correct = "hbar w" if "harmonic" in body else "Thymine"
        option_line = next(ln for ln in body.splitlines() if ln.startswith(f"{letter}) "))
        assert option_line == f"{letter}) {correct}"  # stripped of the CSV's stray whitespace
        assert "Answer: X" in body and s.tags["domain"] == "knowledge"
    assert specs[0].tags["subject"] == "physics" and specs[0].tags["item"] == "gpqa_diamond/recTEST0001"
    again = load_dataset("gpqa", DATA / "gpqa_diamond.csv", seed=0)
    assert [s.prompt for s in again] == [s.prompt for s in specs]
    letters = {load_dataset("gpqa", DATA / "gpqa_diamond.csv", seed=k)[0].reference for k in range(12)}
    assert len(letters) > 1  # the seed moves the correct option


def test_sharegpt_first_human_turn_and_reply_length_budget():
    specs = load_dataset("sharegpt", DATA / "sharegpt_v3_sample.json")
    assert [s.tags["item"] for s in specs] == ["sharegpt/tst001", "sharegpt/tst003"]  # others lack a pair
    assert specs[0].prompt == "Write a haiku about autumn leaves."
    assert specs[0].reference is None and specs[0].tags["domain"] == "chat"
    assert 15 <= specs[0].max_tokens <= 25  # ≈ chars/4 of the reply


def test_plain_jsonl_and_csv_files():
    specs = load_dataset("file", DATA / "custom.jsonl")
    assert specs[0].reference == "42" and specs[0].max_tokens == 64 and specs[0].tags["domain"] == "math"
    assert specs[1].messages[0] == {"role": "system", "content": "Be brief."} and specs[1].reference is None
    rows = load_dataset("csv", DATA / "custom.csv")
    assert [s.reference for s in rows] == ["A", "4"] and rows[0].tags["dataset"] == "file"
    assert score("Answer: A", rows[0].reference, "file").correct  # a letter reference is scored as a choice


def test_a_shared_folder_finds_each_datasets_files_by_name():
    assert [s.reference for s in load_dataset("aime2024", DATA)] == ["14", "45"]
    assert len(load_dataset("gpqa_diamond", DATA)) == 2
    assert len(load_dataset("math500", DATA)) == 3
    assert [s.reference for s in load_dataset("gsm8k", DATA)] == ["27", "1000", "16"]


def test_errors_are_clear(tmp_path):
    with pytest.raises(WorkloadError, match="unknown dataset 'gsm9k'"):
        resolve_name("gsm9k")
    bad = tmp_path / "wrong.jsonl"
    bad.write_text(json.dumps({"prompt": "x"}) + "\n")
    with pytest.raises(WorkloadError, match="no question field"):
        load_dataset("gsm8k", bad)
    with pytest.raises(WorkloadError, match=r"wrong.jsonl:2: not a JSON object"):
        bad.write_text('{"question": "q", "answer": "#### 1"}\n{oops\n')
        load_dataset("gsm8k", bad)
    with pytest.raises(WorkloadError, match="does not exist"):
        load_dataset("gsm8k", tmp_path / "missing.jsonl")
    pq = tmp_path / "x.parquet"
    pq.write_bytes(b"PAR1")
    with pytest.raises(WorkloadError, match="pyarrow|Parquet"):
        load_dataset("math500", pq)


def test_without_a_path_or_the_hub_extra_the_message_says_how_to_proceed(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_datasets(name, *a, **k):
        if name == "datasets":
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # where the package is installed: no probe of the real hub
    with pytest.raises(WorkloadError, match=r"--dataset-path.*loadgen\[datasets\]"):
        load_dataset("aime2024")
    with pytest.raises(WorkloadError, match="needs --dataset-path"):
        load_dataset("file")


def test_describe_lists_every_dataset():
    text = describe_datasets()
    for name in ("gsm8k", "math500", "aime2024", "gpqa_diamond", "sharegpt"):
        assert name in text
    assert "gated" in text


class _FakeHub:
    """Stands in for the optional ``datasets`` package: records each load and whether offline mode was on."""

    def __init__(self, rows=None):
        self.rows = rows
        self.calls: list[tuple[str, str | None]] = []

    def module(self):
        import importlib.machinery
        import types

        m = types.ModuleType("datasets")
        m.__spec__ = importlib.machinery.ModuleSpec("datasets", None)

        def load_dataset(hub_id, config=None, split=None):
            self.calls.append((hub_id, os.environ.get("HF_HUB_OFFLINE")))
            if self.rows is None:  # what datasets raises offline for a dataset it has not cached
                raise ConnectionError(f"Couldn't reach '{hub_id}' on the Hub (LocalEntryNotFoundError)")
            return self.rows

        m.load_dataset = load_dataset
        return m


@pytest.fixture
def fake_hub(monkeypatch):
    def install(rows=None, *, env_offline=False, endpoint=None):
        hub = _FakeHub(rows)
        monkeypatch.setitem(sys.modules, "datasets", hub.module())
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):  # set (so restored afterwards), then as asked
            monkeypatch.setenv(v, "1" if env_offline and v == "HF_HUB_OFFLINE" else "")
        for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(v, raising=False)
        monkeypatch.setenv(
            "HF_ENDPOINT", endpoint or "http://127.0.0.1:1"
        )  # loopback only, never the real hub
        return hub

    return install


def test_offline_by_environment_fails_at_once_naming_dataset_path(fake_hub):
    hub = fake_hub(env_offline=True)
    with pytest.raises(WorkloadError) as e:
        load_dataset("gsm8k")
    msg = str(e.value)
    assert "\n" not in msg and "--dataset-path" in msg and "HF_HUB_OFFLINE=1" in msg and "openai/gsm8k" in msg
    assert hub.calls == [("openai/gsm8k", "1")]  # one cache-only attempt, no retries


def test_no_network_is_detected_and_the_hub_is_asked_in_offline_mode(fake_hub):
    hub = fake_hub()  # HF_ENDPOINT is a closed loopback port: the probe is refused at once
    with pytest.raises(WorkloadError, match=r"cannot connect to 127\.0\.0\.1:1.*--dataset-path"):
        load_dataset("aime2024")
    assert hub.calls == [("HuggingFaceH4/aime_2024", "1")]


def test_offline_with_a_cached_copy_still_loads(fake_hub):
    hub = fake_hub([{"question": "1+1?", "answer": "#### 2"}], env_offline=True)
    specs = load_dataset("gsm8k")
    assert [s.reference for s in specs] == ["2"] and hub.calls[0][1] == "1"


def test_online_the_hub_is_asked_normally(fake_hub):
    import socket

    with socket.socket() as listener:  # a reachable "hub" on loopback
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        hub = fake_hub(
            [{"question": "1+1?", "answer": "#### 2"}],
            endpoint=f"http://127.0.0.1:{listener.getsockname()[1]}",
        )
        assert hub_offline_reason() is None
        assert len(load_dataset("gsm8k")) == 1
    assert hub.calls == [("openai/gsm8k", "")]  # offline mode left off
