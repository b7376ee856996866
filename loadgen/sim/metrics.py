"""Server-side latency histograms and the ``/metrics`` text exposition in the vLLM, SGLang or TGI dialect.

Rendered by hand from ``metric_names.DIALECTS`` (no prometheus_client registry: several servers may live in one
process, and a render costs one pass over a few dozen numbers). The output parses with
``prometheus_client.parser.text_string_to_metric_families``.
"""

from __future__ import annotations

import time
from bisect import bisect_left

from prometheus_client.utils import floatToGoString

from loadgen.sim.engine import Engine
from loadgen.sim.metric_names import DIALECTS, MetricName, tgi_length_buckets

__all__ = ["Histogram", "SimMetrics"]


class Histogram:
    """Cumulative-on-render histogram with fixed upper bounds (``le``)."""

    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float, n: int = 1) -> None:
        self.counts[bisect_left(self.bounds, value)] += n
        self.sum += value * n
        self.count += n


def _labels(pairs: dict[str, str], extra: str = "") -> str:
    items = [f'{k}="{v}"' for k, v in pairs.items()]
    if extra:
        items.append(extra)
    inner = ",".join(sorted(items))
    return "{" + inner + "}" if inner else ""


class SimMetrics:
    """Everything ``/metrics`` shows that the engine does not already count."""

    def __init__(self, dialect: str, model_name: str, max_model_len: int) -> None:
        self.dialect = dialect
        self.names = DIALECTS[dialect]
        self.model_name = model_name
        self.created = time.time()
        if dialect == "vllm":
            self.labels = {"engine": "0", "model_name": model_name}  # sorted, as vLLM's exposition shows them
        elif dialect == "sglang":
            self.labels = {"model_name": model_name}
        else:
            self.labels = {}
        self.hist: dict[str, Histogram] = {}
        for key, m in self.names.items():
            if m.kind != "histogram":
                continue
            bounds = m.buckets or tgi_length_buckets(max_model_len)
            self.hist[key] = Histogram(tuple(float(b) for b in bounds))
        self.requests_received = 0

    def observe(self, key: str, value: float, n: int = 1) -> None:
        h = self.hist.get(key)
        if h is not None:
            h.observe(value, n)

    def render(self, engine: Engine) -> bytes:
        """The full exposition text for the current engine state."""
        st = engine.stats
        cfg = engine.config
        used_tokens = engine.used_blocks * cfg.block_size
        drafts = st.spec_num_drafts
        values: dict[str, float | dict[str, float]] = {
            "running": len(engine.running),
            "waiting": len(engine.waiting),
            "kv_usage": engine.kv_usage,
            "used_tokens": used_tokens,
            "max_tokens": cfg.num_blocks * cfg.block_size,
            "cache_hit_rate": st.prefix_cache_hits / st.prefix_cache_queries
            if st.prefix_cache_queries
            else 0.0,
            "prefix_queries": st.prefix_cache_queries,
            "prefix_hits": st.prefix_cache_hits,
            "preemptions": st.num_preemptions,
            "prompt_tokens": st.prompt_tokens,
            "generation_tokens": st.generation_tokens,
            "request_count": self.requests_received,
        }
        if self.dialect == "vllm":
            values["request_success"] = dict(st.finished)
        else:
            values["request_success"] = st.finished["stop"] + st.finished["length"]
        if cfg.spec_enabled:
            values["spec_drafts"] = drafts
            values["spec_draft_tokens"] = st.spec_num_draft_tokens
            values["spec_accepted_tokens"] = st.spec_num_accepted_tokens
            values["spec_accept_length"] = 1.0 + st.spec_num_accepted_tokens / drafts if drafts else 0.0
            values["spec_accept_rate"] = (
                st.spec_num_accepted_tokens / st.spec_num_draft_tokens if st.spec_num_draft_tokens else 0.0
            )
        out: list[str] = []
        for key, m in self.names.items():
            if m.kind == "histogram":
                self._render_histogram(out, m, self.hist[key])
            elif key in values:
                self._render_scalar(out, m, values[key])
        out.append("")
        return "\n".join(out).encode()

    def _render_scalar(self, out: list[str], m: MetricName, value: float | dict[str, float]) -> None:
        name = m.name
        total = m.kind == "counter" and self.dialect != "tgi"
        family = name + "_total" if total else name
        out.append(f"# HELP {family} {m.help}")
        out.append(f"# TYPE {family} {m.kind}")
        if isinstance(value, dict):
            for reason, v in value.items():
                labels = _labels(self.labels, 'finished_reason="' + reason + '"')
                out.append(f"{family}{labels} {float(v)!r}")
        else:
            out.append(f"{family}{_labels(self.labels)} {float(value)!r}")
        if total:
            out.append(f"# HELP {name}_created {m.help}")
            out.append(f"# TYPE {name}_created gauge")
            if isinstance(value, dict):
                for reason in value:
                    labels = _labels(self.labels, 'finished_reason="' + reason + '"')
                    out.append(f"{name}_created{labels} {self.created!r}")
            else:
                out.append(f"{name}_created{_labels(self.labels)} {self.created!r}")

    def _render_histogram(self, out: list[str], m: MetricName, h: Histogram) -> None:
        name = m.name
        out.append(f"# HELP {name} {m.help}")
        out.append(f"# TYPE {name} histogram")
        cumulative = 0
        for bound, c in zip(h.bounds, h.counts, strict=False):
            cumulative += c
            labels = _labels(self.labels, 'le="' + floatToGoString(bound) + '"')
            out.append(f"{name}_bucket{labels} {float(cumulative)!r}")
        labels = _labels(self.labels, 'le="+Inf"')
        out.append(f"{name}_bucket{labels} {float(h.count)!r}")
        out.append(f"{name}_count{_labels(self.labels)} {float(h.count)!r}")
        out.append(f"{name}_sum{_labels(self.labels)} {h.sum!r}")
