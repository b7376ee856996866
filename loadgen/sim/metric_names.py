"""The one table of Prometheus names the simulator exposes, per engine dialect.

Sources (read, not guessed): vLLM ``vllm/v1/metrics/loggers.py`` and ``vllm/v1/spec_decode/metrics.py`` (labels
``model_name`` and ``engine``; counters exposed with ``_total``); SGLang ``python/sglang/srt/metrics/collector.py``
(label ``model_name`` kept, its per-rank labels dropped); TGI ``router/src/server.rs`` (no labels; counters exposed
by metrics-exporter-prometheus without ``_total``; ``*duration`` histograms share geometric buckets).

Keys on the left are the simulator's quantities; a dialect without a name for one simply does not expose it.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["DIALECTS", "MetricName", "tgi_length_buckets"]


class MetricName(NamedTuple):
    name: str
    kind: str  # "gauge" | "counter" | "histogram"
    help: str
    buckets: tuple[float, ...] = ()


VLLM_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                     20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
VLLM_ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                    40.0, 80.0)  # fmt: skip
VLLM_REQUEST_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
                                120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip

SGLANG_TTFT_BUCKETS = (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400)
SGLANG_ITL_BUCKETS = (0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.025, 0.030, 0.035, 0.040, 0.060, 0.080,
                      0.100, 0.200, 0.400, 0.600, 0.800, 1.000, 2.000, 4.000, 6.000, 8.000)  # fmt: skip
SGLANG_E2E_BUCKETS = (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400, 600, 1200, 1800,
                      2400)  # fmt: skip
SGLANG_QUEUE_BUCKETS = (0.0, 0.1, 0.2, 0.5, 1, 2, 3, 4, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 100, 200, 300,
                        400, 500, 600, 700, 800, 900, 1000, 1200, 1400, 1600, 1800, 2000, 2500, 3000)  # fmt: skip

TGI_DURATION_BUCKETS = tuple(0.0001 * 1.5**k for k in range(1, 36))


def tgi_length_buckets(max_tokens: int) -> tuple[float, ...]:
    """TGI's token-length buckets: 100 equal steps up to the model's limit."""
    return tuple(max_tokens / 100.0 * (x + 1) for x in range(100))


DIALECTS: dict[str, dict[str, MetricName]] = {
    "vllm": {
        "running": MetricName(
            "vllm:num_requests_running", "gauge", "Number of requests in model execution batches."
        ),
        "waiting": MetricName(
            "vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed."
        ),
        "kv_usage": MetricName(
            "vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage."
        ),
        "prefix_queries": MetricName(
            "vllm:prefix_cache_queries",
            "counter",
            "Prefix cache queries, in terms of number of queried tokens.",
        ),
        "prefix_hits": MetricName(
            "vllm:prefix_cache_hits", "counter", "Prefix cache hits, in terms of number of cached tokens."
        ),
        "preemptions": MetricName(
            "vllm:num_preemptions", "counter", "Cumulative number of preemption from the engine."
        ),
        "prompt_tokens": MetricName("vllm:prompt_tokens", "counter", "Number of prefill tokens processed."),
        "generation_tokens": MetricName(
            "vllm:generation_tokens", "counter", "Number of generation tokens processed."
        ),
        "request_success": MetricName(
            "vllm:request_success", "counter", "Count of successfully processed requests."
        ),
        "ttft": MetricName(
            "vllm:time_to_first_token_seconds",
            "histogram",
            "Histogram of time to first token in seconds.",
            VLLM_TTFT_BUCKETS,
        ),
        "itl": MetricName(
            "vllm:inter_token_latency_seconds",
            "histogram",
            "Histogram of inter-token latency in seconds.",
            VLLM_ITL_BUCKETS,
        ),
        "e2e": MetricName(
            "vllm:e2e_request_latency_seconds",
            "histogram",
            "Histogram of e2e request latency in seconds.",
            VLLM_REQUEST_LATENCY_BUCKETS,
        ),
        "queue": MetricName(
            "vllm:request_queue_time_seconds",
            "histogram",
            "Histogram of time spent in WAITING phase for request.",
            VLLM_REQUEST_LATENCY_BUCKETS,
        ),
        "spec_drafts": MetricName(
            "vllm:spec_decode_num_drafts", "counter", "Number of spec decoding drafts."
        ),
        "spec_draft_tokens": MetricName(
            "vllm:spec_decode_num_draft_tokens", "counter", "Number of draft tokens."
        ),
        "spec_accepted_tokens": MetricName(
            "vllm:spec_decode_num_accepted_tokens", "counter", "Number of accepted tokens."
        ),
    },
    "sglang": {
        "running": MetricName("sglang:num_running_reqs", "gauge", "The number of running requests."),
        "waiting": MetricName(
            "sglang:num_queue_reqs", "gauge", "The number of requests in the waiting queue."
        ),
        "kv_usage": MetricName("sglang:token_usage", "gauge", "The token usage."),
        "used_tokens": MetricName("sglang:num_used_tokens", "gauge", "The number of used tokens."),
        "max_tokens": MetricName(
            "sglang:max_total_num_tokens", "gauge", "Maximum total number of tokens in the KV cache pool."
        ),
        "cache_hit_rate": MetricName("sglang:cache_hit_rate", "gauge", "The prefix cache hit rate."),
        "prefix_hits": MetricName("sglang:cached_tokens", "counter", "Number of cached prompt tokens."),
        "preemptions": MetricName(
            "sglang:num_retracted_requests", "counter", "Total number of retracted requests."
        ),
        "prompt_tokens": MetricName("sglang:prompt_tokens", "counter", "Number of prefill tokens processed."),
        "generation_tokens": MetricName(
            "sglang:generation_tokens", "counter", "Number of generation tokens processed."
        ),
        "request_success": MetricName("sglang:num_requests", "counter", "Number of requests processed."),
        "ttft": MetricName(
            "sglang:time_to_first_token_seconds",
            "histogram",
            "Histogram of time to first token in seconds.",
            SGLANG_TTFT_BUCKETS,
        ),
        "itl": MetricName(
            "sglang:inter_token_latency_seconds",
            "histogram",
            "Histogram of inter-token latency in seconds.",
            SGLANG_ITL_BUCKETS,
        ),
        "e2e": MetricName(
            "sglang:e2e_request_latency_seconds",
            "histogram",
            "Histogram of End-to-end request latency in seconds",
            SGLANG_E2E_BUCKETS,
        ),
        "queue": MetricName(
            "sglang:queue_time_seconds",
            "histogram",
            "Histogram of queueing time in seconds.",
            SGLANG_QUEUE_BUCKETS,
        ),
        "spec_accept_length": MetricName(
            "sglang:spec_accept_length", "gauge", "The average acceptance length of speculative decoding."
        ),
        "spec_accept_rate": MetricName(
            "sglang:spec_accept_rate", "gauge", "The average acceptance rate of speculative decoding."
        ),
    },
    "tgi": {
        "running": MetricName("tgi_batch_current_size", "gauge", "Current batch size"),
        "waiting": MetricName("tgi_queue_size", "gauge", "Current queue size"),
        "used_tokens": MetricName(
            "tgi_batch_current_max_tokens", "gauge", "Maximum tokens for the current batch"
        ),
        "max_tokens": MetricName("tgi_batch_max_total_tokens", "gauge", "Maximum amount of tokens in total."),
        "request_count": MetricName("tgi_request_count", "counter", "Total number of requests"),
        "request_success": MetricName("tgi_request_success", "counter", "Number of successful requests"),
        "e2e": MetricName("tgi_request_duration", "histogram", "Request duration", TGI_DURATION_BUCKETS),
        "queue": MetricName(
            "tgi_request_queue_duration", "histogram", "Request queue duration", TGI_DURATION_BUCKETS
        ),
        "tpot": MetricName(
            "tgi_request_mean_time_per_token_duration",
            "histogram",
            "Mean time per token per request",
            TGI_DURATION_BUCKETS,
        ),
        "input_length": MetricName("tgi_request_input_length", "histogram", "Input token length per request"),
        "generated_tokens": MetricName(
            "tgi_request_generated_tokens", "histogram", "Generated tokens per request"
        ),
    },
}
