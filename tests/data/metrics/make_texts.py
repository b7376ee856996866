"""Rebuild the recorded /metrics texts in this folder (see README.md): ``python tests/data/metrics/make_texts.py``.

SGLang and vLLM register their metrics with ``prometheus_client``, so their texts are produced by that library from
the engines' own definitions (names, kinds, label names, buckets), with observations drawn from a seeded RNG.
TGI exports through the Rust ``metrics-exporter-prometheus`` crate, whose format (counters without ``_total``,
histograms without configured buckets rendered as summaries) is written out by hand here.
"""

from __future__ import annotations

import random
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

HERE = Path(__file__).parent


def _exp(rng: random.Random, mean: float) -> float:
    return rng.expovariate(1.0 / mean)


# ---------------------------------------------------------------- SGLang (python/sglang/srt/metrics/collector.py)

SGL_TTFT = [0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400]
SGL_E2E = [0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400, 600, 1200, 1800, 2400]
SGL_ITL = [0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.025, 0.030, 0.035, 0.040, 0.060, 0.080, 0.100]
SGL_ITL += [0.200, 0.400, 0.600, 0.800, 1.000, 2.000, 4.000, 6.000, 8.000]
SGL_QUEUE = [
    0.0,
    0.1,
    0.2,
    0.5,
    1,
    2,
    3,
    4,
    5,
    10,
    15,
    20,
    30,
    40,
    50,
    60,
    70,
    80,
    90,
    100,
    200,
    300,
    400,
    500,
]
SGL_QUEUE += [600, 700, 800, 900, 1000, 1200, 1400, 1600, 1800, 2000, 2500, 3000]
SGL_RETRACT = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 75, 100]


def sglang_text(n_requests: int, running: int, queued: int, token_usage: float, seed: int) -> str:
    rng = random.Random(seed)
    reg = CollectorRegistry()
    sched = {
        "model_name": "qwen3-8b",
        "engine_type": "unified",
        "tp_rank": "0",
        "pp_rank": "0",
        "moe_ep_rank": "0",
    }
    tok = {"model_name": "qwen3-8b"}

    def gauge(name: str, value: float) -> None:
        Gauge(name, name, list(sched), registry=reg).labels(**sched).set(value)

    gauge("sglang:num_running_reqs", running)
    gauge("sglang:num_used_tokens", int(token_usage * 200_000))
    gauge("sglang:token_usage", token_usage)
    gauge("sglang:swa_token_usage", 0.0)
    gauge("sglang:gen_throughput", 40.0 * running)
    gauge("sglang:num_queue_reqs", queued)
    gauge("sglang:num_grammar_queue_reqs", 0)
    gauge("sglang:cache_hit_rate", 0.31 if n_requests else 0.0)
    gauge("sglang:max_total_num_tokens", 200_000)
    gauge("sglang:spec_accept_length", 2.6 if n_requests else 0.0)
    gauge("sglang:spec_accept_rate", 0.53 if n_requests else 0.0)
    gauge("sglang:num_retracted_reqs", 0)
    gauge("sglang:utilization", 0.0)
    gauge("sglang:engine_startup_time", 41.2)
    gauge("sglang:new_token_ratio", 0.7)
    retracted = Counter("sglang:num_retracted_requests_total", "r", list(sched), registry=reg).labels(**sched)
    retracted.inc(3 if n_requests else 0)
    qt = Histogram("sglang:queue_time_seconds", "q", list(sched), buckets=SGL_QUEUE, registry=reg).labels(
        **sched
    )

    prompt = Counter("sglang:prompt_tokens_total", "p", list(tok), registry=reg).labels(**tok)
    gen = Counter("sglang:generation_tokens_total", "g", list(tok), registry=reg).labels(**tok)
    cached = Counter("sglang:cached_tokens_total", "c", list(tok), registry=reg).labels(**tok)
    Counter("sglang:num_requests_total", "n", list(tok), registry=reg).labels(**tok).inc(n_requests)
    Counter("sglang:num_aborted_requests_total", "a", list(tok), registry=reg).labels(**tok)
    ttft = Histogram("sglang:time_to_first_token_seconds", "t", list(tok), buckets=SGL_TTFT, registry=reg)
    itl = Histogram("sglang:inter_token_latency_seconds", "i", list(tok), buckets=SGL_ITL, registry=reg)
    e2e = Histogram("sglang:e2e_request_latency_seconds", "e", list(tok), buckets=SGL_E2E, registry=reg)
    retr = Histogram("sglang:num_retractions", "r", list(tok), buckets=SGL_RETRACT, registry=reg)
    for _ in range(n_requests):
        p, g = rng.randint(200, 4000), rng.randint(50, 8000)
        prompt.inc(p)
        gen.inc(g)
        cached.inc(int(p * rng.random() * 0.6))
        ttft.labels(**tok).observe(_exp(rng, 0.4))
        per_tok = 0.012 + _exp(rng, 0.01)
        itl.labels(**tok).observe(per_tok)
        e2e.labels(**tok).observe(g * per_tok)
        retr.labels(**tok).observe(0)
        qt.observe(_exp(rng, 0.3))
    return generate_latest(reg).decode()


# ---------------------------------------------------------------- TGI (router/src/server.rs, backends/v3/src/*.rs)


def _tgi_duration_buckets() -> list[float]:
    out, value = [], 0.0001
    for _ in range(35):
        value *= 1.5
        out.append(value)
    return out


def _tgi_histogram(name: str, buckets: list[float], values: list[float]) -> list[str]:
    lines = [f"# TYPE {name} histogram"]
    for b in buckets:
        lines.append(f'{name}_bucket{{le="{b!r}"}} {sum(1 for v in values if v <= b)}')
    lines.append(f'{name}_bucket{{le="+Inf"}} {len(values)}')
    lines.append(f"{name}_sum {sum(values)!r}")
    lines.append(f"{name}_count {len(values)}")
    return lines


def _tgi_summary(name: str, values: list[float]) -> list[str]:
    lines = [f"# TYPE {name} summary"]
    ordered = sorted(values)
    for q in ("0", "0.5", "0.9", "0.95", "0.99", "0.999", "1"):
        v = ordered[min(len(ordered) - 1, int(float(q) * len(ordered)))] if ordered else 0
        lines.append(f'{name}{{quantile="{q}"}} {v}')
    lines.append(f"{name}_sum {sum(values)}")
    lines.append(f"{name}_count {len(values)}")
    return lines


def tgi_text(n_requests: int, batch: int, queue: int, seed: int) -> str:
    rng = random.Random(seed)
    dur = _tgi_duration_buckets()
    max_input, max_total = 4095, 4096
    input_b = [(max_input / 100.0) * (x + 1) for x in range(100)]
    gen_b = [(max_total / 100.0) * (x + 1) for x in range(100)]
    inputs = [float(rng.randint(20, 3000)) for _ in range(n_requests)]
    gens = [float(rng.randint(10, 1000)) for _ in range(n_requests)]
    queue_t = [_exp(rng, 0.2) for _ in range(n_requests)]
    tpot = [0.015 + _exp(rng, 0.005) for _ in range(n_requests)]
    total = [q + g * t for q, g, t in zip(queue_t, gens, tpot, strict=True)]
    skipped = [float(rng.choice((0, 0, 1, 2))) for _ in range(int(sum(gens) / 2))]
    lines = [
        "# TYPE tgi_request_count counter",
        f"tgi_request_count {n_requests + 2}",
        "# TYPE tgi_request_success counter",
        f"tgi_request_success {n_requests}",
        "# TYPE tgi_request_failure counter",
        'tgi_request_failure{err="validation"} 2',
        "# TYPE tgi_batch_inference_count counter",
        f'tgi_batch_inference_count{{method="prefill"}} {n_requests}',
        f'tgi_batch_inference_count{{method="decode"}} {int(sum(gens))}',
        "# TYPE tgi_queue_size gauge",
        f"tgi_queue_size {queue}",
        "# TYPE tgi_batch_current_size gauge",
        f"tgi_batch_current_size {batch}",
        "# TYPE tgi_batch_current_max_tokens gauge",
        f"tgi_batch_current_max_tokens {batch * 1500}",
        "# TYPE tgi_batch_max_total_tokens gauge",
        "tgi_batch_max_total_tokens 64000",
    ]
    lines += _tgi_histogram("tgi_request_input_length", input_b, inputs)
    lines += _tgi_histogram("tgi_request_generated_tokens", gen_b, gens)
    lines += _tgi_histogram("tgi_request_max_new_tokens", gen_b, [1024.0] * n_requests)
    lines += _tgi_histogram("tgi_request_duration", dur, total)
    lines += _tgi_histogram("tgi_request_validation_duration", dur, [0.0004] * n_requests)
    lines += _tgi_histogram("tgi_request_queue_duration", dur, queue_t)
    lines += _tgi_histogram(
        "tgi_request_inference_duration", dur, [t - q for t, q in zip(total, queue_t, strict=True)]
    )
    lines += _tgi_histogram("tgi_request_mean_time_per_token_duration", dur, tpot)
    lines += _tgi_summary("tgi_request_skipped_tokens", skipped)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- vLLM stand-in (vllm/v1/metrics/loggers.py)

VLLM_TTFT = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]
VLLM_TTFT += [20.0, 40.0, 80.0, 160.0, 640.0, 2560.0]
VLLM_ITL = [
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
]
VLLM_REQ = [
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
]
VLLM_REQ += [960.0, 1920.0, 7680.0]


def _buckets_125(max_value: int) -> list[int]:
    out, exp = [], 0
    while True:
        for m in (1, 2, 5):
            v = m * 10**exp
            if v > max_value:
                return out
            out.append(v)
        exp += 1


def vllm_text(engines: int, n_requests: int, seed: int) -> str:
    """A real-size stand-in for a vLLM v1 text (all mapped families, per-engine labels, spec decoding)."""
    rng = random.Random(seed)
    reg = CollectorRegistry()
    ln = ["model_name", "engine"]
    tok_b = _buckets_125(131072)

    def h(name: str, buckets: list[float]) -> Histogram:
        return Histogram(name, name, ln, buckets=buckets, registry=reg)

    def c(name: str, extra: list[str] | None = None) -> Counter:
        return Counter(name, name, ln + (extra or []), registry=reg)

    def g(name: str) -> Gauge:
        return Gauge(name, name, ln, registry=reg)

    gauges = {
        n: g(n)
        for n in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc")
    }
    counters = {
        n: c(n)
        for n in (
            "vllm:num_preemptions",
            "vllm:prompt_tokens",
            "vllm:generation_tokens",
            "vllm:prefix_cache_queries",
            "vllm:prefix_cache_hits",
            "vllm:spec_decode_num_drafts",
            "vllm:spec_decode_num_draft_tokens",
            "vllm:spec_decode_num_accepted_tokens",
        )
    }
    per_pos = c("vllm:spec_decode_num_accepted_tokens_per_pos", ["position"])
    success = c("vllm:request_success", ["finished_reason"])
    hists = {
        "ttft": h("vllm:time_to_first_token_seconds", VLLM_TTFT),
        "itl": h("vllm:inter_token_latency_seconds", VLLM_ITL),
        "tpot": h("vllm:request_time_per_output_token_seconds", VLLM_ITL),
        "e2e": h("vllm:e2e_request_latency_seconds", VLLM_REQ),
        "queue": h("vllm:request_queue_time_seconds", VLLM_REQ),
        "inference": h("vllm:request_inference_time_seconds", VLLM_REQ),
        "prefill": h("vllm:request_prefill_time_seconds", VLLM_REQ),
        "decode": h("vllm:request_decode_time_seconds", VLLM_REQ),
        "prompt_len": h("vllm:request_prompt_tokens", tok_b),
        "gen_len": h("vllm:request_generation_tokens", tok_b),
        "max_gen": h("vllm:request_max_num_generation_tokens", tok_b),
        "max_tokens": h("vllm:request_params_max_tokens", tok_b),
        "n": h("vllm:request_params_n", [1, 2, 5, 10, 20]),
        "iter": h(
            "vllm:iteration_tokens_total", [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]
        ),
    }
    for e in range(engines):
        lv = ("qwen3-8b", str(e))
        gauges["vllm:num_requests_running"].labels(*lv).set(rng.randint(0, 64))
        gauges["vllm:num_requests_waiting"].labels(*lv).set(rng.randint(0, 20))
        gauges["vllm:kv_cache_usage_perc"].labels(*lv).set(rng.random())
        for reason in ("stop", "length", "abort"):
            success.labels(*lv, reason).inc(rng.randint(0, n_requests))
        for pos in range(3):
            per_pos.labels(*lv, str(pos)).inc(rng.randint(0, 1000))
        for name, ctr in counters.items():
            ctr.labels(*lv).inc(rng.randint(0, 100_000) if "preempt" not in name else rng.randint(0, 5))
        for _ in range(n_requests):
            gen = rng.randint(10, 8000)
            for key, hist in hists.items():
                value = gen if key in ("gen_len", "max_gen", "max_tokens") else _exp(rng, 0.5)
                hist.labels(*lv).observe(value)
            for _ in range(20):
                hists["iter"].labels(*lv).observe(rng.randint(1, 4096))
    return generate_latest(reg).decode()


def main() -> None:
    files = {
        "sglang_idle.txt": sglang_text(0, 0, 0, 0.0, seed=1),
        "sglang_load.txt": sglang_text(400, 48, 7, 0.83, seed=2),
        "tgi_idle.txt": tgi_text(0, 0, 0, seed=3),
        "tgi_load.txt": tgi_text(300, 24, 5, seed=4),
        "vllm_standin_load.txt": vllm_text(engines=2, n_requests=300, seed=5),
    }
    for name, text in files.items():
        (HERE / name).write_text(text)
        print(f"{name}: {len(text)} bytes")


if __name__ == "__main__":
    main()
