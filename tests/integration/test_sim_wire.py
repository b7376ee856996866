"""loadgen.sim's responses compared structurally with the real vLLM 0.32 captures in tests/data/vllm/.

Structure means: the same keys in the same order at every level, the same JSON types (a null on either side matches
any type), the same SSE event sequence by kind (role, reasoning, content, usage-only, [DONE]) and the usage block in
the same places. Values (text, ids, timings) are not compared.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadgen.sim import SimConfig, SimServer

DATA = Path(__file__).resolve().parents[1] / "data" / "vllm"
pytestmark = pytest.mark.skipif(not (DATA / "index.json").exists(), reason="tests/data/vllm captures missing")


def shape(v: object) -> object:
    if isinstance(v, dict):
        return [(k, shape(x)) for k, x in v.items()]
    if isinstance(v, list):
        return [shape(v[0])] if v else []
    return type(v).__name__


def same_shape(real: object, ours: object, path: str = "$") -> None:
    if real is None or ours is None:
        return
    assert type(real) is type(ours) or {type(real), type(ours)} <= {int, float}, (
        f"{path}: {real!r} vs {ours!r}"
    )
    if isinstance(real, dict):
        assert list(real) == list(ours), f"{path}: keys {list(real)} vs {list(ours)}"
        for k in real:
            same_shape(real[k], ours[k], f"{path}.{k}")
    elif isinstance(real, list) and real and ours:
        same_shape(real[0], ours[0], f"{path}[0]")


def events(raw: bytes) -> list[object]:
    out: list[object] = []
    for ev in raw.split(b"\n\n"):
        if ev.strip():
            assert ev.startswith(b"data: ")
            out.append("[DONE]" if ev[6:] == b"[DONE]" else json.loads(ev[6:]))
    return out


def kind(ev: object) -> str:
    if ev == "[DONE]":
        return "D"
    assert isinstance(ev, dict)
    if not ev["choices"]:
        return "U"
    ch = ev["choices"][0]
    if "delta" not in ch:
        return "T"
    d = ch["delta"]
    return "S" if "role" in d else ("R" if "reasoning" in d else "C")


def squeeze(kinds: list[str]) -> str:
    return "".join(k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k)


async def _fetch_all() -> dict[str, tuple[int, bytes]]:
    cfg = dataclasses.replace(
        SimConfig(), step_overhead_us=500.0, model_name="tiny-llama", max_model_len=4096
    )
    server = SimServer(cfg)
    port = await server.start()
    index = json.loads((DATA / "index.json").read_text())
    out: dict[str, tuple[int, bytes]] = {}
    sim = {"reasoning_tokens": 20, "answer_tokens": 10}
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as s:
            for name, meta in index.items():
                if name.startswith("metrics") or not (DATA / name).exists():
                    continue
                body = meta["request"]
                if body is not None and body.get("max_tokens", 1) > 0 and "messages" in body:
                    # the captures' tiny model reasons past a 32-token ignore_eos budget; do the same
                    body = {**body, "sim": {"reasoning_tokens": 1000} if body.get("ignore_eos") else sim}
                async with s.request(meta["method"], meta["path"], json=body) as resp:
                    out[name] = (resp.status, await resp.read())
            async with s.get("/metrics") as resp:
                out["metrics"] = (resp.status, await resp.read())
    finally:
        await server.stop()
    return out


@pytest.fixture(scope="module")
def ours() -> dict[str, tuple[int, bytes]]:
    return asyncio.run(_fetch_all())


def _index() -> dict:
    return json.loads((DATA / "index.json").read_text()) if (DATA / "index.json").exists() else {}


@pytest.mark.parametrize("name", sorted(n for n in _index() if n.endswith(".json") and n != "index.json"))
def test_json_bodies_have_vllm_structure(name: str, ours: dict) -> None:
    status, body = ours[name]
    assert status == _index()[name]["status"]
    same_shape(json.loads((DATA / name).read_bytes()), json.loads(body))


# The in-stream error capture (HTTP 200, one {"error": ...} event, [DONE]) has no simulator counterpart yet.
STREAMS = sorted(n for n in _index() if n.endswith(".sse") and (DATA / n).exists() and "error" not in n)


@pytest.mark.parametrize("name", STREAMS)
def test_streams_have_vllm_structure(name: str, ours: dict) -> None:
    real = events((DATA / name).read_bytes())
    mine = events(ours[name][1])
    real_kinds = squeeze([kind(e) for e in real])
    my_kinds = squeeze([kind(e) for e in mine])
    if "spec" not in name:
        assert my_kinds == real_kinds, (real_kinds, my_kinds)
    first_of: dict[str, object] = {}
    for e in mine:
        first_of.setdefault(kind(e), e)
    for e in real:
        k = kind(e)
        if k in first_of and k != "D" and not (k in "RCT" and e["choices"][0]["finish_reason"]):
            same_shape(e, first_of[k], f"{name}:{k}")
    # the last token event carries finish_reason and stop_reason; the usage-only event follows it
    last_real = [e for e in real if kind(e) in "RCT"][-1]
    last_mine = [e for e in mine if kind(e) in "RCT"][-1]
    same_shape(last_real, last_mine, f"{name}:last")
    assert [kind(e) for e in mine][-2:] == ["U", "D"]


def test_metrics_names_labels_and_buckets_match_vllm(ours: dict) -> None:
    real = {f.name: f for f in text_string_to_metric_families((DATA / "metrics_after_load.txt").read_text())}
    mine = {f.name: f for f in text_string_to_metric_families(ours["metrics"][1].decode())}
    assert len(mine) >= 13
    for name, fam in mine.items():
        if name.endswith("_created"):
            continue
        assert name in real, f"{name} not exposed by vLLM 0.32"
        assert fam.type == real[name].type, name
        real_labels = {tuple(sorted(s.labels)) for s in real[name].samples}
        my_labels = {tuple(sorted(s.labels)) for s in fam.samples}
        assert my_labels <= real_labels, (name, my_labels, real_labels)
        if fam.type == "histogram":

            def les(f) -> list[str]:
                return [s.labels["le"] for s in f.samples if s.name.endswith("_bucket")]

            assert les(fam) == les(real[name]), name
