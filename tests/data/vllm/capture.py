"""Capture real vLLM wire transcripts into this folder (re-runnable; takes ~4 minutes on 2 cores).

    python tests/data/vllm/capture.py            # all groups
    python tests/data/vllm/capture.py base spec  # some groups: base, spec, preempt

Starts the local CPU vLLM (server_launchers.local_vllm) once per group, one at a time, sends requests
to 127.0.0.1 only, and writes the response bodies byte for byte (after HTTP/1.1 de-chunking, which
http.client does; nothing else is touched). ``index.json`` records, per file: the server flags, the
method/path, the request body, the status, the response headers and the capture time. The README
says what each file is.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from server_launchers.local_vllm import VLLM_VERSION, LocalVllmServer, cache_dir  # noqa: E402

MODEL = "tiny-llama"
SPEC_CONFIG = '{"method":"ngram","num_speculative_tokens":4,"prompt_lookup_max":4}'
GROUPS = {
    "base": ["--reasoning-parser", "deepseek_r1", "--enable-prefix-caching"],
    "spec": ["--reasoning-parser", "deepseek_r1", "--speculative-config", SPEC_CONFIG],
    # block_size is 128 on CPU: 16 blocks hold 2048 tokens, less than 16 streams of ~430 tokens need.
    "preempt": [
        "--reasoning-parser",
        "deepseek_r1",
        "--max-model-len",
        "1024",
        "--num-gpu-blocks-override",
        "16",
    ],
}
# A logit_bias of 4 on </think> ends the reasoning after ~40 tokens for this seed (6: ~7 tokens).
THINK_END_BIAS = 4
SEED = 7
QUESTION = "A train leaves at 3 pm and travels 120 km at 60 km/h. When does it arrive? Think step by step."
LONG_PREFIX = " ".join(
    f"Rule {i}: the server must answer request number {i} with care and precision." for i in range(40)
)

index: dict[str, dict] = {}


def _request(port: int, method: str, path: str, body: dict | None = None, timeout: float = 300.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    payload = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if payload else {}
    conn.request(method, path, body=payload, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, dict(resp.getheaders()), data


def save(
    name: str, srv: LocalVllmServer, method: str, path: str, body: dict | None = None, note: str = ""
) -> bytes:
    t0 = time.time()
    status, headers, data = _request(srv.port, method, path, body)
    # the model's folder on the capturing machine means nothing elsewhere: keep only its name
    data = data.replace(str(srv.model_dir).encode(), b"/models/" + srv.model_dir.name.encode())
    (HERE / name).write_bytes(data)
    index[name] = {
        "vllm": VLLM_VERSION,
        "server_args": srv.extra_args,
        "method": method,
        "path": path,
        "request": body,
        "status": status,
        "headers": {k: v for k, v in headers.items() if k.lower() not in ("date",)},
        "captured_unix": int(t0),
        "note": note,
    }
    print(f"  {name}: {status} {len(data)} bytes", flush=True)
    return data


def chat_body(think_end: int, **kw) -> dict:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": 96,
        "seed": SEED,
        "logit_bias": {str(think_end): THINK_END_BIAS},
    }
    body.update(kw)
    return body


def _load(port: int, bodies: list[dict], path: str = "/v1/chat/completions") -> list[tuple[int, float]]:
    """Run the bodies concurrently (one thread each); return (status, seconds) per request."""
    results: list[tuple[int, float]] = [(0, 0.0)] * len(bodies)

    def one(i: int) -> None:
        t = time.perf_counter()
        status, _, _ = _request(port, "POST", path, bodies[i])
        results[i] = (status, time.perf_counter() - t)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _save_metrics(name: str, srv: LocalVllmServer, note: str) -> None:
    save(name, srv, "GET", "/metrics", note=note)


def _metrics_under_load(
    name: str, srv: LocalVllmServer, bodies: list[dict], wait_s: float, note: str
) -> dict:
    holder: dict = {}
    t = threading.Thread(target=lambda: holder.setdefault("r", _load(srv.port, bodies)))
    t0 = time.perf_counter()
    t.start()
    time.sleep(wait_s)
    _save_metrics(name, srv, note)
    t.join()
    return {"results": holder["r"], "wall_s": time.perf_counter() - t0}


def group_base(srv: LocalVllmServer, think_end: int) -> None:
    _save_metrics("metrics_idle.txt", srv, "right after /health turned 200, before any request")
    save("models.json", srv, "GET", "/v1/models")
    usage = {"include_usage": True}
    save("chat_stream_reasoning.sse", srv, "POST", "/v1/chat/completions",
         chat_body(think_end, stream=True, stream_options=usage),
         "reasoning (delta.reasoning) until </think>, then delta.content; final usage-only chunk")  # fmt: skip
    save("chat_stream_reasoning_continuous_usage.sse", srv, "POST", "/v1/chat/completions",
         chat_body(think_end, stream=True, stream_options={**usage, "continuous_usage_stats": True}),
         "same request with continuous_usage_stats: every chunk carries cumulative usage")  # fmt: skip
    save("completions_stream.sse", srv, "POST", "/v1/completions",
         {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 48, "seed": SEED, "stream": True,
          "stream_options": usage})  # fmt: skip
    save("chat_stream_ignore_eos.sse", srv, "POST", "/v1/chat/completions",
         chat_body(think_end, stream=True, stream_options=usage, ignore_eos=True, max_tokens=32),
         "ignore_eos with max_tokens 32: exactly 32 completion tokens")  # fmt: skip
    save("chat_nonstream.json", srv, "POST", "/v1/chat/completions", chat_body(think_end))
    save("completions_nonstream.json", srv, "POST", "/v1/completions",
         {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 48, "seed": SEED})  # fmt: skip
    save("error_unknown_model.json", srv, "POST", "/v1/chat/completions",
         {**chat_body(think_end), "model": "no-such-model"}, "unknown model")  # fmt: skip
    save("error_bad_param.json", srv, "POST", "/v1/chat/completions",
         chat_body(think_end, max_tokens=-5), "invalid parameter (max_tokens < 1)")  # fmt: skip
    save("error_too_long.json", srv, "POST", "/v1/completions",
         {"model": MODEL, "prompt": "word " * 5000, "max_tokens": 16}, "prompt longer than max_model_len")  # fmt: skip

    # Prefix caching: the same ~800-token prefix with different questions (full 128-token blocks are shared).
    bodies = [{"model": MODEL, "messages": [{"role": "system", "content": LONG_PREFIX},
                                            {"role": "user", "content": f"Question {i}?"}],
               "max_tokens": 8, "seed": SEED} for i in range(6)]  # fmt: skip
    for b in bodies:
        _request(srv.port, "POST", "/v1/chat/completions", b)
    _save_metrics(
        "metrics_prefix_caching.txt", srv, "after 6 sequential chats sharing a ~800-token system prompt"
    )

    # Load: 16 concurrent streams of 256 tokens; scrape mid-way.
    load = [chat_body(think_end, stream=True, stream_options=usage, ignore_eos=True, max_tokens=512,
                      messages=[{"role": "user", "content": f"{i}: {QUESTION}"}]) for i in range(16)]  # fmt: skip
    r = _metrics_under_load("metrics_under_load.txt", srv, load, 2.5,
                            "16 concurrent streams (ignore_eos, 512 tokens), scraped 2.5 s in")  # fmt: skip
    toks = 16 * 512
    print(
        f"  16 streams x 512 tokens: {r['wall_s']:.1f} s -> {toks / r['wall_s']:.0f} tok/s aggregate",
        flush=True,
    )
    _save_metrics("metrics_after_load.txt", srv, "after the 16-stream load finished")
    # One stream alone, for the decode rate.
    t = time.perf_counter()
    _request(srv.port, "POST", "/v1/chat/completions", chat_body(think_end, ignore_eos=True, max_tokens=256))
    dt = time.perf_counter() - t
    print(f"  1 stream x 256 tokens: {dt:.1f} s -> {256 / dt:.0f} tok/s", flush=True)


def group_spec(srv: LocalVllmServer, think_end: int) -> None:
    # A repetitive prompt gives the n-gram proposer something to match.
    rep = "alpha beta gamma delta epsilon " * 30
    save("chat_stream_error_in_stream.sse", srv, "POST", "/v1/chat/completions",
         chat_body(think_end, stream=True, stream_options={"include_usage": True}),
         "HTTP 200 whose SSE body is one error event then [DONE]: logit_bias is rejected with spec decoding")  # fmt: skip
    save("chat_stream_spec_decode.sse", srv, "POST", "/v1/chat/completions",
         {"model": MODEL, "messages": [{"role": "user", "content": rep}], "max_tokens": 128, "temperature": 0,
          "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}},
         "n-gram speculative decoding, greedy (a random model loops, so drafts get accepted): "
         "chunks may carry several tokens; no logit_bias (rejected with spec decoding)")  # fmt: skip
    bodies = [
        {"model": MODEL, "prompt": rep, "max_tokens": 128, "temperature": 0, "ignore_eos": True}
        for _ in range(4)
    ]
    _load(srv.port, bodies, "/v1/completions")
    _save_metrics(
        "metrics_spec_decode.txt", srv, "after 1 chat stream + 4 completions on a repetitive prompt"
    )


def group_preempt(srv: LocalVllmServer, think_end: int) -> None:
    usage = {"include_usage": True}
    load = [chat_body(think_end, stream=True, stream_options=usage, ignore_eos=True, max_tokens=400,
                      messages=[{"role": "user", "content": f"{i}: {QUESTION}"}]) for i in range(16)]  # fmt: skip
    _metrics_under_load("metrics_preemption_under_load.txt", srv, load, 2.5,
                        "16 streams x 400 tokens with only 16 KV blocks (2048 tokens): 2.5 s in")  # fmt: skip
    _save_metrics("metrics_preemption.txt", srv, "after the run: vllm:num_preemptions_total > 0")


def main(argv: list[str]) -> int:
    groups = argv or list(GROUPS)
    idx_path = HERE / "index.json"
    if idx_path.exists():
        index.update(json.loads(idx_path.read_text()))
    for g in groups:
        print(f"[{g}] vllm args: {GROUPS[g]}", flush=True)
        with LocalVllmServer(GROUPS[g], log_path=cache_dir() / f"capture-{g}.log") as srv:
            print(f"  healthy after {srv.startup_s:.1f} s; RSS {srv.rss_bytes() / 2**30:.2f} GiB", flush=True)
            think_end = srv.model_info["think_end_id"]
            globals()[f"group_{g}"](srv, think_end)
            print(f"  RSS at end {srv.rss_bytes() / 2**30:.2f} GiB", flush=True)
        idx_path.write_text(json.dumps(dict(sorted(index.items())), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
