"""Parse one /metrics text into vocabulary values, cheaply.

``prometheus_client``'s text parser costs ~30 us per sample line (its label parser walks characters in Python):
~20 ms on a real-size vLLM text, and even run in a worker thread that holds the GIL long enough to delay the
client's event loop by 10+ ms (measured in tests/integration/test_scrape_poller.py). So:

1. the text is cut down to the lines of the dialect's known families with one C-level ``str.startswith(tuple)``
   per line (drops ~2/3 of a vLLM text: HELP lines, _created gauges, families loadgen never reads);
2. the remaining sample lines are read with two compiled regular expressions (~10x faster), which accept the
   exposition subset engines emit (``name{k="v",...} value [timestamp]``);
3. any line the fast reader does not accept makes that scrape fall back to
   ``prometheus_client.parser.text_string_to_metric_families`` (the reference parser; the tests check both give
   the same values on every recorded text).

The result is plain data, ready for one JSON line:

    {vocabulary name: {label string: value}}                      gauges and counters
    {vocabulary name: {label string: {"le": [...], "cum": [...], "sum": s, "count": n}}}   histograms

``le`` holds the finite upper bounds in ascending order and ``cum`` their cumulative counts; the ``+Inf`` bucket
is ``count``. A label string is the series' labels (without ``le``/``quantile``) as ``k="v"`` pairs sorted by key,
so series stay apart per engine / model and aggregation across them is an explicit later step.
"""

from __future__ import annotations

import math
import re
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from loadgen.scrape.dialects import Dialect

Values = dict[str, dict[str, Any]]


_PREFIXES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}


def _prefixes(dialect: Dialect) -> tuple[tuple[str, ...], tuple[str, ...]]:
    cached = _PREFIXES.get(dialect.name)
    if cached is None:
        keep: list[str] = []
        drop: list[str] = []
        for src in dialect.table.values():
            for n in src.names:
                keep.append(f"# TYPE {n}")
                drop += [f"{n}_created", f"# TYPE {n}_created"]
                if src.read in ("histogram_sum", "histogram_count"):
                    keep += [f"{n}_sum", f"{n}_count"]  # skip the buckets nobody reads
                else:
                    keep.append(n)
        cached = _PREFIXES[dialect.name] = (tuple(dict.fromkeys(keep)), tuple(dict.fromkeys(drop)))
    return cached


def filter_text(text: str, dialect: Dialect) -> str:
    """Only the sample and ``# TYPE`` lines of the dialect's families (``_created`` and ``# HELP`` dropped)."""
    keep, drop = _prefixes(dialect)
    return "\n".join(
        line for line in text.splitlines() if line.startswith(keep) and not line.startswith(drop)
    )


def label_key(labels: dict[str, str]) -> str:
    """Canonical series key: ``k="v"`` pairs sorted by key, without the bucket/quantile label."""
    parts = []
    for k in sorted(labels):
        if k in ("le", "quantile"):
            continue
        v = labels[k].replace("\\", "\\\\").replace('"', '\\"')
        parts.append(f'{k}="{v}"')
    return ",".join(parts)


_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?[ \t]+(\S+)(?:[ \t]+-?\d+)?[ \t]*")
_LABEL = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\]|\\.)*)"[ \t]*,?')

# sample name -> [(labels, value)]
Index = dict[str, list[tuple[dict[str, str], float]]]


def _index_fast(body: str) -> Index | None:
    """Sample lines by name, or None when a line is outside the simple subset (the caller falls back)."""
    out: Index = {}
    for line in body.splitlines():
        if not line or line[0] == "#":
            continue
        m = _SAMPLE.fullmatch(line)
        if m is None:
            return None
        name, raw, value = m.groups()
        labels: dict[str, str] = {}
        if raw:
            pos = 0
            for lm in _LABEL.finditer(raw):
                if lm.start() != pos:
                    return None
                v = lm.group(2)
                labels[lm.group(1)] = v if "\\" not in v else _unescape(v)
                pos = lm.end()
            if pos != len(raw):
                return None
        try:
            out.setdefault(name, []).append((labels, float(value)))
        except ValueError:
            return None
    return out


def _unescape(v: str) -> str:
    return v.replace("\\\\", "\x00").replace('\\"', '"').replace("\\n", "\n").replace("\x00", "\\")


def _index_reference(body: str) -> Index:
    out: Index = {}
    for fam in text_string_to_metric_families(body + "\n"):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def parse_text(text: str, dialect: Dialect, *, prefiltered: bool = False, reference: bool = False) -> Values:
    """Vocabulary values of one scrape; names the server does not expose are simply absent.

    ``reference=True`` forces prometheus_client's parser. Raises ``ValueError`` on text that is not valid
    Prometheus exposition format.
    """
    body = text if prefiltered else filter_text(text, dialect)
    index = None if reference else _index_fast(body)
    if index is None:
        index = _index_reference(body)
    out: Values = {}
    for vocab, src in dialect.table.items():
        series: dict[str, Any] = {}
        for name in src.names:
            series = _read(index, name, src.read, src.scale)
            if series:
                break
        if series:
            out[vocab] = series
    return out


def _read(index: Index, name: str, read: str, scale: float) -> dict[str, Any]:
    if read == "histogram":
        rows = [(f"{name}_bucket", r) for r in index.get(f"{name}_bucket", ())]
        rows += [(f"{name}_sum", r) for r in index.get(f"{name}_sum", ())]
        rows += [(f"{name}_count", r) for r in index.get(f"{name}_count", ())]
        return _histograms(rows, scale)
    if read == "histogram_sum":
        rows = index.get(f"{name}_sum", [])
    elif read == "histogram_count":
        rows = index.get(f"{name}_count", [])
    elif read == "counter":
        rows = index.get(f"{name}_total") or index.get(name, [])
    else:
        rows = index.get(name, [])
    return {label_key(labels): v * scale for labels, v in rows if math.isfinite(v)}


def _histograms(
    rows: list[tuple[str, tuple[dict[str, str], float]]], scale: float
) -> dict[str, dict[str, Any]]:
    acc: dict[str, dict[str, Any]] = {}
    for sample_name, (labels, value) in rows:
        key = label_key(labels)
        h = acc.setdefault(key, {"b": [], "sum": 0.0, "count": None})
        if sample_name.endswith("_bucket"):
            le = float(labels["le"])
            if math.isinf(le):
                h["inf"] = value
            else:
                h["b"].append((le * scale, value))
        elif sample_name.endswith("_sum"):
            h["sum"] = value * scale
        else:
            h["count"] = value
    out: dict[str, dict[str, Any]] = {}
    for key, h in acc.items():
        buckets = sorted(h["b"])
        count = h["count"] if h["count"] is not None else h.get("inf", buckets[-1][1] if buckets else 0.0)
        out[key] = {
            "le": [b[0] for b in buckets],
            "cum": [b[1] for b in buckets],
            "sum": h["sum"],
            "count": count,
        }
    return out


_INFO_LINE = re.compile(r"^vllm:cache_config_info\{(?P<labels>[^}]*)\}", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def engine_info(text: str) -> dict[str, Any]:
    """Static engine facts from an info metric (vLLM's ``cache_config_info``): KV-cache capacity and layout.

    Capacity is what "fp8 KV cache doubles what fits" is measured by; it is not a time series.
    """
    m = _INFO_LINE.search(text)
    if not m:
        return {}
    labels = dict(_LABEL.findall(m.group("labels")))

    def num(key: str) -> int | None:
        try:
            return int(float(labels[key]))
        except (KeyError, ValueError):
            return None

    blocks, block_size = num("num_gpu_blocks"), num("block_size")
    tokens = num("kv_cache_size_tokens")
    if tokens is None and blocks is not None and block_size is not None:
        tokens = blocks * block_size
    return {
        "kv_num_blocks": blocks,
        "kv_block_size": block_size,
        "kv_capacity_tokens": tokens,
        "kv_cache_dtype": labels.get("cache_dtype"),
        "kv_cache_memory_bytes": num("kv_cache_memory_bytes"),
        "prefix_caching": labels.get("enable_prefix_caching"),
        "num_gpu_blocks_override": labels.get("num_gpu_blocks_override"),
    }


RAW_LIMIT = 500  # samples kept per scrape of a server whose dialect is unknown


def parse_raw(text: str, limit: int = RAW_LIMIT) -> dict[str, float]:
    """The first ``limit`` samples of a text in no known dialect, as ``name{labels}`` -> value: kept so nothing
    the server said is lost, mapped onto nothing. Lines the simple reader does not accept are skipped."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        m = _SAMPLE.fullmatch(line)
        if m is None:
            continue
        name, labels, value = m.groups()
        try:
            out[f"{name}{{{labels}}}" if labels else name] = float(value)
        except ValueError:
            continue
        if len(out) >= limit:
            break
    return out
