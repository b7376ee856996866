"""Engine dialects: each engine's /metrics names mapped onto one vocabulary.

The vocabulary is what the rest of loadgen reads; a dialect is one table per engine saying which exposed family
feeds which vocabulary name, how (its Prometheus kind, a scale, a note where the meaning differs), and which
vocabulary names the engine simply does not expose (``unavailable``, with the reason), so a report can say
"not exposed by TGI" instead of showing a zero.

Names were read from the engines' sources:

* vLLM v1: ``vllm/v1/metrics/loggers.py`` and ``vllm/v1/spec_decode/metrics.py``. Older releases (<= 0.9) exposed
  ``vllm:gpu_cache_usage_perc`` / ``vllm:gpu_prefix_cache_{queries,hits}`` and ``vllm:time_per_output_token_seconds``
  (per-iteration, i.e. inter-token latency) instead of ``vllm:kv_cache_usage_perc`` / ``vllm:prefix_cache_*`` /
  ``vllm:inter_token_latency_seconds``. ``*_usage_perc`` is a fraction (1 means 100 %) despite the name.
* SGLang (``--enable-metrics``): ``python/sglang/srt/metrics/collector.py``. ``sglang:token_usage`` is a fraction of
  the KV pool; ``sglang:cache_hit_rate`` and ``sglang:spec_accept_length`` / ``spec_accept_rate`` are *gauges* of
  the last logging interval, not counters; ``sglang:cached_tokens_total`` is a counter of cached prompt tokens,
  counted when a request finishes, so ``cached / prompt tokens`` is the counter-based hit rate.
  ``sglang:num_retracted_requests_total`` (retraction = SGLang's preemption) is a counter in recent releases.
* TGI: ``router/src/server.rs``, ``backends/v3/src/{backend,queue}.rs``, exported by ``metrics-exporter-prometheus``
  (counters without ``_total``; histograms without configured buckets become summaries). TGI exposes no KV-cache
  usage, no preemption counter, no prefix-cache counters and no TTFT histogram.
* llama.cpp's ``llama-server`` (``--metrics``): ``tools/server/server-task.cpp`` (``llamacpp:*``, counters with
  ``_total``, no histograms). ``prompt_tokens_total`` counts prompt tokens *evaluated*, and
  ``prompt_tokens_cached_total`` those reused from a slot's cache, so the lookups are their sum. No KV-usage metric:
  with ``--slots``, the poller reads ``GET /slots`` on the same tick and derives ``kv_cache_usage`` (tokens held by
  the slots / their summed context) and ``slots_busy``/``slots_total`` (see ``slots.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Vocabulary: name -> (kind, meaning). Kinds: gauge, counter, histogram.
VOCABULARY: dict[str, tuple[str, str]] = {
    "kv_cache_usage": ("gauge", "fraction of the KV cache in use, 0..1"),
    "num_running": ("gauge", "requests in the running batch"),
    "num_waiting": ("gauge", "requests waiting in the scheduler queue"),
    "preemptions": ("counter", "requests preempted (vLLM) / retracted (SGLang)"),
    "prefix_cache_queries": ("counter", "prompt tokens looked up in the prefix cache"),
    "prefix_cache_hits": ("counter", "prompt tokens found in the prefix cache"),
    "prefix_cache_hit_rate": ("gauge", "engine-computed hit rate of its last logging interval (SGLang)"),
    "prompt_tokens": ("counter", "prompt (prefill) tokens processed"),
    "generation_tokens": ("counter", "tokens generated"),
    "spec_num_drafts": ("counter", "speculative draft rounds (one per request per step)"),
    "spec_draft_tokens": ("counter", "draft tokens proposed"),
    "spec_accepted_tokens": ("counter", "draft tokens accepted"),
    "spec_accept_length": ("gauge", "engine-computed mean acceptance length of its last interval (SGLang)"),
    "spec_accept_rate": ("gauge", "engine-computed acceptance rate of its last interval (SGLang)"),
    "ttft": ("histogram", "server-side time to first token, s"),
    "itl": ("histogram", "server-side inter-token latency, s (one observation per token interval)"),
    "tpot": (
        "histogram",
        "server-side mean time per output token of a request, s (one observation per request)",
    ),
    "e2e": ("histogram", "server-side end-to-end request latency, s"),
    "queue_time": ("histogram", "server-side time spent waiting before first scheduled, s"),
    "prompt_seconds": ("counter", "time the server spent evaluating prompts, s (llama.cpp)"),
    "generation_seconds": ("counter", "time the server spent generating tokens, s (llama.cpp)"),
    "decode_calls": ("counter", "decode (forward pass) calls of the engine (llama.cpp)"),
    "busy_slots_per_decode": (
        "gauge",
        "mean busy slots per decode call since start: the batch size (llama.cpp)",
    ),
    "slots_busy": ("gauge", "slots processing a request (llama.cpp /slots)"),
    "slots_total": ("gauge", "slots the server has (llama.cpp /slots)"),
}

# How a source family is read:
#   gauge / counter / histogram: the family itself;
#   histogram_sum / histogram_count: the _sum / _count of a histogram or summary family, used as a counter.
READS = ("gauge", "counter", "histogram", "histogram_sum", "histogram_count")


@dataclass(frozen=True, slots=True)
class Source:
    """Where one vocabulary name comes from: candidate family names, first present wins (newest name first)."""

    names: tuple[str, ...]
    read: str
    scale: float = 1.0
    note: str = ""


@dataclass(frozen=True, slots=True)
class Dialect:
    """One engine's table; ``families`` are the exposed family names (counters without ``_total``)."""

    name: str
    prefix: str
    table: dict[str, Source]
    unavailable: dict[str, str] = field(default_factory=dict)
    # counters this engine exposes only as a sum of others: name -> (parts, note)
    derived: dict[str, tuple[tuple[str, ...], str]] = field(default_factory=dict)

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(n for src in self.table.values() for n in src.names)


VLLM = Dialect(
    name="vllm",
    prefix="vllm:",
    table={
        "kv_cache_usage": Source(
            ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
            "gauge",
            note="a fraction (1 = 100 %) despite the _perc name",
        ),
        "num_running": Source(("vllm:num_requests_running",), "gauge"),
        "num_waiting": Source(("vllm:num_requests_waiting",), "gauge"),
        "preemptions": Source(("vllm:num_preemptions",), "counter"),
        "prefix_cache_queries": Source(
            ("vllm:prefix_cache_queries", "vllm:gpu_prefix_cache_queries"), "counter"
        ),
        "prefix_cache_hits": Source(("vllm:prefix_cache_hits", "vllm:gpu_prefix_cache_hits"), "counter"),
        "prompt_tokens": Source(("vllm:prompt_tokens",), "counter"),
        "generation_tokens": Source(("vllm:generation_tokens",), "counter"),
        "spec_num_drafts": Source(
            ("vllm:spec_decode_num_drafts",), "counter", note="present only with spec decoding"
        ),
        "spec_draft_tokens": Source(("vllm:spec_decode_num_draft_tokens",), "counter"),
        "spec_accepted_tokens": Source(("vllm:spec_decode_num_accepted_tokens",), "counter"),
        "ttft": Source(("vllm:time_to_first_token_seconds",), "histogram"),
        "itl": Source(
            ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
            "histogram",
            note="the old time_per_output_token_seconds was observed per iteration, i.e. an ITL",
        ),
        "tpot": Source(("vllm:request_time_per_output_token_seconds",), "histogram"),
        "e2e": Source(("vllm:e2e_request_latency_seconds",), "histogram"),
        "queue_time": Source(("vllm:request_queue_time_seconds",), "histogram"),
    },
    unavailable={
        "prefix_cache_hit_rate": "vLLM exposes hit/query counters instead (better: exact over any window)",
        "spec_accept_length": "derived from the spec_decode counters instead",
        "spec_accept_rate": "derived from the spec_decode counters instead",
    },
)

SGLANG = Dialect(
    name="sglang",
    prefix="sglang:",
    table={
        "kv_cache_usage": Source(
            ("sglang:token_usage",), "gauge", note="fraction of the KV token pool in use"
        ),
        "num_running": Source(("sglang:num_running_reqs",), "gauge"),
        "num_waiting": Source(("sglang:num_queue_reqs",), "gauge"),
        "preemptions": Source(
            ("sglang:num_retracted_requests",),
            "counter",
            note="retractions; older releases only had the per-interval gauge sglang:num_retracted_reqs",
        ),
        "prefix_cache_queries": Source(
            ("sglang:prompt_tokens",),
            "counter",
            note="all prompt tokens of finished requests (SGLang counts cached tokens against these)",
        ),
        "prefix_cache_hits": Source(
            ("sglang:cached_tokens",), "counter", note="cached prompt tokens, counted when a request finishes"
        ),
        "prefix_cache_hit_rate": Source(
            ("sglang:cache_hit_rate",), "gauge", note="a gauge of the last logging interval, not counters"
        ),
        "prompt_tokens": Source(("sglang:prompt_tokens",), "counter", note="counted when a request finishes"),
        "generation_tokens": Source(
            ("sglang:generation_tokens",), "counter", note="counted when a request finishes"
        ),
        "spec_accept_length": Source(("sglang:spec_accept_length",), "gauge", note="last-interval gauge"),
        "spec_accept_rate": Source(("sglang:spec_accept_rate",), "gauge", note="last-interval gauge"),
        "ttft": Source(("sglang:time_to_first_token_seconds",), "histogram"),
        "itl": Source(
            ("sglang:inter_token_latency_seconds",),
            "histogram",
            note="buckets count tokens; _sum adds the chunk interval once, so sum/count is time per token",
        ),
        "tpot": Source(
            ("sglang:time_per_output_token_seconds",),
            "histogram",
            note="older releases: running per-request mean, observed at every streamed chunk",
        ),
        "e2e": Source(("sglang:e2e_request_latency_seconds",), "histogram"),
        "queue_time": Source(("sglang:queue_time_seconds",), "histogram"),
    },
    unavailable={
        "spec_num_drafts": "SGLang exposes only last-interval gauges (spec_accept_length, spec_accept_rate)",
        "spec_draft_tokens": "SGLang exposes only last-interval gauges (spec_accept_length, spec_accept_rate)",
        "spec_accepted_tokens": "SGLang exposes only last-interval gauges (spec_accept_length, spec_accept_rate)",
    },
)

TGI = Dialect(
    name="tgi",
    prefix="tgi_",
    table={
        "num_running": Source(("tgi_batch_current_size",), "gauge"),
        "num_waiting": Source(("tgi_queue_size",), "gauge"),
        "prompt_tokens": Source(
            ("tgi_request_input_length",),
            "histogram_sum",
            note="_sum of the per-request input-length histogram, recorded at validation",
        ),
        "generation_tokens": Source(
            ("tgi_request_generated_tokens",),
            "histogram_sum",
            note="_sum of the per-request generated-tokens histogram, recorded when a request succeeds",
        ),
        "spec_num_drafts": Source(
            ("tgi_request_skipped_tokens",),
            "histogram_count",
            note="_count of the per-step summary (one per request per decode step); meaningful with --speculate",
        ),
        "spec_accepted_tokens": Source(
            ("tgi_request_skipped_tokens",),
            "histogram_sum",
            note="_sum of tokens beyond the first per step, i.e. accepted speculative tokens",
        ),
        "tpot": Source(
            ("tgi_request_mean_time_per_token_duration",),
            "histogram",
            note="one observation per request (its mean), not per token",
        ),
        "e2e": Source(("tgi_request_duration",), "histogram"),
        "queue_time": Source(("tgi_request_queue_duration",), "histogram"),
    },
    unavailable={
        "kv_cache_usage": "TGI exposes no KV usage; tgi_batch_current_max_tokens is a token reservation, not usage",
        "preemptions": "TGI does not preempt running requests and exposes no such counter",
        "prefix_cache_queries": "TGI exposes no prefix-cache metrics",
        "prefix_cache_hits": "TGI exposes no prefix-cache metrics",
        "prefix_cache_hit_rate": "TGI exposes no prefix-cache metrics",
        "spec_draft_tokens": "TGI does not count proposed draft tokens",
        "spec_accept_length": "derived from tgi_request_skipped_tokens instead",
        "spec_accept_rate": "TGI does not count proposed draft tokens",
        "ttft": "TGI has no time-to-first-token histogram",
        "itl": "TGI has only the per-request mean (tpot), no per-token interval histogram",
    },
)

_NO_HISTOGRAMS = (
    "llama-server exposes no latency histograms; its per-response timings are on each request record"
)

LLAMACPP = Dialect(
    name="llamacpp",
    prefix="llamacpp:",
    table={
        "num_running": Source(("llamacpp:requests_processing",), "gauge", note="slots processing a request"),
        "num_waiting": Source(
            ("llamacpp:requests_deferred",), "gauge", note="requests deferred because every slot was busy"
        ),
        "prompt_tokens": Source(
            ("llamacpp:prompt_tokens",), "counter", note="prompt tokens evaluated (cached ones not included)"
        ),
        "prefix_cache_hits": Source(
            ("llamacpp:prompt_tokens_cached",), "counter", note="prompt tokens reused from a slot's cache"
        ),
        "generation_tokens": Source(("llamacpp:tokens_predicted",), "counter"),
        "prompt_seconds": Source(("llamacpp:prompt_seconds",), "counter"),
        "generation_seconds": Source(("llamacpp:tokens_predicted_seconds",), "counter"),
        "decode_calls": Source(("llamacpp:n_decode",), "counter", note="speculative decoding not included"),
        "busy_slots_per_decode": Source(
            ("llamacpp:n_busy_slots_per_decode",), "gauge", note="an average since the server started"
        ),
        "spec_num_drafts": Source(
            ("llamacpp:spec_decode_num_drafts",), "counter", note="verification steps; present with a draft"
        ),
        "spec_draft_tokens": Source(("llamacpp:spec_decode_num_draft_tokens",), "counter"),
        "spec_accepted_tokens": Source(("llamacpp:spec_decode_num_accepted_tokens",), "counter"),
    },
    unavailable={
        "kv_cache_usage": "no KV metric in /metrics; derived from GET /slots when the server has --slots",
        "slots_busy": "read from GET /slots, which needs --slots",
        "slots_total": "read from GET /slots, which needs --slots",
        "preemptions": "llama.cpp does not preempt; a request waits as deferred until a slot is free",
        "prefix_cache_hit_rate": "derived from the cached / evaluated prompt-token counters instead",
        "spec_accept_length": "derived from the spec_decode counters instead",
        "spec_accept_rate": "derived from the spec_decode counters instead",
        "ttft": _NO_HISTOGRAMS,
        "itl": _NO_HISTOGRAMS,
        "tpot": _NO_HISTOGRAMS,
        "e2e": _NO_HISTOGRAMS,
        "queue_time": _NO_HISTOGRAMS,
    },
    derived={
        "prefix_cache_queries": (
            ("prefix_cache_hits", "prompt_tokens"),
            "cached + evaluated prompt tokens (llama.cpp counts them apart)",
        ),
    },
)

DIALECTS: dict[str, Dialect] = {d.name: d for d in (VLLM, SGLANG, TGI, LLAMACPP)}
UNKNOWN = "unknown"  # no engine's names in the text: raw samples are kept, nothing is mapped


def detect_dialect(text: str) -> str | None:
    """The dialect whose prefix opens the most sample lines, or None when no engine's names appear."""
    counts = dict.fromkeys(DIALECTS, 0)
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        for name, dialect in DIALECTS.items():
            if line.startswith(dialect.prefix):
                counts[name] += 1
                break
    best = max(counts, key=lambda n: counts[n])
    return best if counts[best] else None


def mapping_report(dialect: Dialect) -> dict[str, dict[str, str]]:
    """Every vocabulary name -> how this dialect provides it, or why it cannot (for reports and docs)."""
    out: dict[str, dict[str, str]] = {}
    for name in VOCABULARY:
        src = dialect.table.get(name)
        if src is not None:
            out[name] = {"from": " | ".join(src.names), "read": src.read, "note": src.note}
        elif name in dialect.derived:
            parts, note = dialect.derived[name]
            out[name] = {"from": " + ".join(parts), "read": "derived", "note": note}
        else:
            out[name] = {
                "from": "",
                "read": "unavailable",
                "note": dialect.unavailable.get(name, "not exposed"),
            }
    return out
