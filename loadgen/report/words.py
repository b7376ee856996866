"""Settings and counts written as a person reads them, one definition for the console, the HTML and the tables.

No Python reprs reach a reader: ``{'http_5xx': 2}`` is "2 HTTP 5xx", ``{'ttft': 500.0}`` is "TTFT ≤ 500 ms", and
the command line is the one typed (``python -m loadgen …``), with secrets masked by the option that carries them.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any

from loadgen.analysis.catalogue import error_label
from loadgen.analysis.metrics import INTERVAL
from loadgen.config import SLO_METRICS
from loadgen.options import mask_secrets

# SLO metric keys (loadgen.config.SLO_METRICS) as written in tables: the catalogue's short names (``itl``: the
# longest per-token gap of a request)
METRIC_LABELS = {k: INTERVAL["itl_per_token" if k == "itl" else k].name for k in SLO_METRICS}


def number(v: float) -> str:
    """A plain number without float noise: 500.0 -> 500, 0.25 -> 0.25, 12345.6 -> 12,346."""
    if float(v).is_integer():
        return f"{int(v):,}"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def slo(slo_ms: Mapping[str, float] | None) -> str:
    """``{'ttft': 500.0, 'tpot': 50.0}`` -> "TTFT ≤ 500 ms and TPOT ≤ 50 ms"; "" when none is set."""
    parts = [f"{METRIC_LABELS.get(k, k)} ≤ {number(v)} ms" for k, v in (slo_ms or {}).items()]
    return " and ".join(parts)


def error_counts(by_kind: Mapping[str, int] | None) -> str:
    """``{'http_5xx': 2, 'timeout': 1}`` -> "2 HTTP 5xx, 1 timed out" (most frequent first)."""
    items = sorted((by_kind or {}).items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{n:,} {error_label(k)}" for k, n in items)


def counts(d: Mapping[str, Any] | None) -> str:
    """A small flat mapping as "name 3; other name 1,024; dtype fp8" (None values left out)."""
    parts = []
    for k, v in (d or {}).items():
        if v is None:
            continue
        shown = f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)
        parts.append(f"{str(k).replace('_', ' ')} {shown}")
    return "; ".join(parts)


# where token counts came from (loadgen.records.record COUNT_*), as a person reads it
COUNT_SOURCE_LABELS = {
    "continuous_usage": "exact, from the server's usage in every chunk",
    "usage": "from the server's usage, one token per chunk",
    "estimated:one_token_per_chunk": "estimated: the server sent no usage, so one token per chunk is assumed",
    "estimated:chars_per_token": "estimated: the server sent no usage per chunk, so its total is spread over the "
    "chunks by text length",
}


def _requests(n: int) -> str:
    return f"{n:,} request{'s' if n != 1 else ''}"


def count_sources(by_source: Mapping[str, int] | None) -> str:
    """``{'estimated:chars_per_token': 40}`` -> "estimated: the server sent only a total ... (40 requests)"."""
    items = list((by_source or {}).items())
    if len(items) == 1:
        return COUNT_SOURCE_LABELS.get(items[0][0], items[0][0])
    return "; ".join(f"{COUNT_SOURCE_LABELS.get(k, k)} ({_requests(n)})" for k, n in items)


def count_notes(notes: Mapping[str, int] | None) -> str:
    """``{'server sent no usage': 40}`` -> "server sent no usage (40 requests)": each note with what it counts."""
    return "; ".join(f"{text} ({_requests(n)})" for text, n in (notes or {}).items())


def cut_at_budget(finish_reasons: Mapping[str, int] | None, answers: int) -> str | None:
    """A line when answers ended at their max_tokens (``finish_reason: length``): all of them, or how many."""
    n = int((finish_reasons or {}).get("length", 0))
    if not n or not answers:
        return None
    if n == answers:
        return (
            f"every answer ({answers:,}) was cut at max_tokens (finish_reason: length): output lengths are the "
            "budget's, not the model's own"
        )
    return f"{n:,} of {answers:,} answers were cut at max_tokens (finish_reason: length)"


def command_line(argv: Sequence[str] | None) -> str:
    """The command as typed: ``python -m loadgen …`` for the module's file path, secrets masked by the option
    that carries them (``options.mask_secrets``: the value after ``--api-key``, the value part of ``--header
    NAME:VALUE``, a URL's credentials), quoted for a shell."""
    args = [str(a) for a in argv or ()]
    if not args:
        return ""
    first = PurePath(args[0])
    if args[0].startswith("python -m "):  # already as typed (the run records it so, secrets masked by option)
        head = args[0].split()
    elif first.name == "__main__.py" and first.parent.name:
        head = ["python", "-m", first.parent.name]
    elif first.suffix == ".py":
        head = ["python", first.name]
    else:
        head = [first.name]
    out = mask_secrets(args[1:], keep_header_names=True)
    return shlex.join(head + out)
