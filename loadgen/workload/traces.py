"""Real arrival traces -> arrival offsets (int64 ns) and per-request token lengths.

Formats (detected from the header line, or forced with ``fmt``):

- ``burstgpt``: BurstGPT's CSV, ``Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type`` (the
  later release adds ``Session ID`` and ``Elapsed time``; extra columns are ignored). ``Timestamp`` is seconds
  from the trace's start. Rows with ``Response tokens`` 0 are the trace's failed requests: dropped unless
  ``drop_failed=False``. ``models`` / ``log_types`` keep only rows of those values (e.g. ``ChatGPT``,
  ``Conversation log``).
- ``azure``: the Azure LLM inference traces (2023 and 2024), ``TIMESTAMP,ContextTokens,GeneratedTokens``, with an
  absolute date-time ``TIMESTAMP`` (``2023-11-16 18:15:46.6805900``, up to 100 ns ticks, optional UTC offset).
- ``timestamps``: one number per line (seconds; the first CSV column is used; a header line and ``#`` comments
  are skipped); no token lengths.

Arrival offsets are relative to the first kept row. ``start_s``/``end_s`` select a window in the trace's own time,
measured from its first row; ``speedup`` then divides every offset (2.0 replays twice as fast).
"""

from __future__ import annotations

import csv
import io
import os
import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from loadgen.errors import ConfigError, WorkloadError
from loadgen.workload.spec import RequestSpec
from loadgen.workload.text import synthetic_prompt

__all__ = ["Trace", "detect_format", "read_trace", "trace_to_specs"]

NS_PER_S = 1_000_000_000
FORMATS = ("burstgpt", "azure", "timestamps")


@dataclass(frozen=True, slots=True)
class Trace:
    """Arrivals (sorted int64 ns offsets, the first 0) and, when the trace has them, token lengths per request."""

    arrival_ns: np.ndarray
    input_tokens: np.ndarray | None = None
    output_tokens: np.ndarray | None = None
    fmt: str = "timestamps"
    source: str = ""
    speedup: float = 1.0
    window_s: tuple[float | None, float | None] = (None, None)
    rows_read: int = 0
    rows_dropped: dict[str, int] = field(
        default_factory=dict
    )  # reason -> rows (failed, model, log_type, window)

    def __len__(self) -> int:
        return int(self.arrival_ns.size)

    @property
    def duration_s(self) -> float:
        return float(self.arrival_ns[-1]) / NS_PER_S if len(self) else 0.0

    def timestamps_s(self) -> np.ndarray:
        """Arrival times in seconds (float64), for :func:`loadgen.commands.fit.fit_trace`."""
        return self.arrival_ns.astype(np.float64) / NS_PER_S

    def describe(self) -> dict[str, Any]:
        n = len(self)
        out: dict[str, Any] = {
            "format": self.fmt,
            "source": self.source,
            "speedup": self.speedup,
            "window_s": list(self.window_s),
            "requests": n,
            "duration_s": self.duration_s,
            "rate": (n - 1) / self.duration_s if n > 1 and self.duration_s > 0 else None,
            "rows_read": self.rows_read,
            "rows_dropped": dict(self.rows_dropped),
        }
        for key, arr in (("input_tokens", self.input_tokens), ("output_tokens", self.output_tokens)):
            if arr is not None and arr.size:
                out[key] = {"mean": float(arr.mean()), "p50": float(np.median(arr)), "max": int(arr.max())}
        return out


def detect_format(header: str) -> str:
    h = header.lower()
    if "request tokens" in h and "response tokens" in h:
        return "burstgpt"
    if "contexttokens" in h and "generatedtokens" in h:
        return "azure"
    return "timestamps"


_AZURE_TS = re.compile(
    r"\s*(\d{4}-\d{2}-\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?\s*(Z|[+-]\d{2}:?\d{2})?\s*$",
    re.IGNORECASE,
)


class _AzureClock:
    """Date-time strings -> integer ns since the epoch, exact to the 100 ns tick; minutes are cached."""

    def __init__(self) -> None:
        self._minutes: dict[str, int] = {}

    def ns(self, text: str) -> int:
        m = _AZURE_TS.match(text)
        if m is None:
            try:  # some derived files store epoch seconds
                return round(float(text) * NS_PER_S)
            except ValueError:
                raise ValueError(f"not a date-time: {text[:40]!r}") from None
        date, hh, mm, ss, frac, tz = m.groups()
        key = f"{date}T{hh}:{mm}"
        base = self._minutes.get(key)
        if base is None:
            base = int(datetime.fromisoformat(key).replace(tzinfo=UTC).timestamp()) * NS_PER_S
            self._minutes[key] = base
        ns = base + int(ss) * NS_PER_S + (int((frac or "0")[:9].ljust(9, "0")))
        if tz and tz.upper() != "Z":
            sign = 1 if tz[0] == "+" else -1
            digits = tz[1:].replace(":", "")
            ns -= sign * (int(digits[:2]) * 3600 + int(digits[2:4]) * 60) * NS_PER_S
        return ns


def _column(header: Sequence[str], *names: str) -> int | None:
    lowered = [h.strip().lower() for h in header]
    for name in names:
        if name.lower() in lowered:
            return lowered.index(name.lower())
    return None


def read_trace(
    path: str | os.PathLike[str],
    fmt: str = "auto",
    *,
    speedup: float = 1.0,
    start_s: float | None = None,
    end_s: float | None = None,
    models: Sequence[str] | None = None,
    log_types: Sequence[str] | None = None,
    drop_failed: bool = True,
    limit: int | None = None,
) -> Trace:
    """Read a BurstGPT, Azure or plain-timestamps trace (see the module docstring)."""
    if not (speedup > 0) or speedup == float("inf"):
        raise ConfigError(f"--trace-speedup must be a finite number > 0, got {speedup}")
    if start_s is not None and end_s is not None and end_s <= start_s:
        raise ConfigError(f"trace window end ({end_s}) must be after its start ({start_s})")
    p = Path(path).expanduser()
    try:
        fh = open(p, newline="", encoding="utf-8-sig")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise WorkloadError(f"cannot read trace {p}: {exc.strerror or exc}") from None
    try:
        with fh:
            first = fh.readline()
            if not first:
                raise WorkloadError(f"trace {p} is empty")
            kind = detect_format(first) if fmt == "auto" else fmt
            if kind not in FORMATS:
                raise ConfigError(f"trace format must be auto or one of {', '.join(FORMATS)}, got {fmt!r}")
            if kind == "timestamps":
                origin, ts_ns, inp, out, dropped, rows = _read_timestamps(p, first, fh)
            else:
                origin, ts_ns, inp, out, dropped, rows = _read_csv_trace(
                    p, kind, first, fh, models, log_types, drop_failed, end_s
                )
    except UnicodeDecodeError as exc:
        bad = exc.object[exc.start]
        raise WorkloadError(f"trace {p} is not UTF-8 text (a byte {bad:#04x}: {exc.reason})") from None
    if ts_ns.size == 0:
        raise WorkloadError(f"trace {p}: no rows left ({rows} read, dropped: {dropped or 'none'})")
    order = np.argsort(ts_ns, kind="stable")
    ts_ns = ts_ns[order]
    inp = inp[order] if inp is not None else None
    out = out[order] if out is not None else None
    rel = ts_ns - origin  # the trace's own clock, from its first row (kept or not)
    keep = np.ones(rel.size, dtype=bool)
    if start_s is not None:
        keep &= rel >= round(start_s * NS_PER_S)
    if end_s is not None:
        keep &= rel < round(end_s * NS_PER_S)
    if not keep.all():
        dropped["window"] = dropped.get("window", 0) + int((~keep).sum())
        rel = rel[keep]
        inp = inp[keep] if inp is not None else None
        out = out[keep] if out is not None else None
    if limit is not None:
        rel, inp, out = (
            rel[:limit],
            inp[:limit] if inp is not None else None,
            out[:limit] if out is not None else None,
        )
    if rel.size == 0:
        raise WorkloadError(f"trace {p}: the window [{start_s}, {end_s}) s holds no requests")
    offsets = rel - rel[0]
    if speedup != 1.0:
        offsets = np.round(offsets / speedup).astype(np.int64)
    return Trace(
        arrival_ns=offsets.astype(np.int64),
        input_tokens=inp,
        output_tokens=out,
        fmt=kind,
        source=str(p),
        speedup=float(speedup),
        window_s=(start_s, end_s),
        rows_read=rows,
        rows_dropped=dropped,
    )


def _read_timestamps(
    p: Path, first: str, fh: io.TextIOBase
) -> tuple[int, np.ndarray, None, None, dict[str, int], int]:
    values = array("d")
    _timestamp_line(p, 1, first, values, header_ok=True)
    for lineno, line in enumerate(fh, 2):
        _timestamp_line(p, lineno, line, values, header_ok=False)
    rows = len(values)
    ts = np.frombuffer(values, dtype=np.float64)
    if not np.isfinite(ts).all():
        raise WorkloadError(f"{p}: timestamps must be finite numbers")
    ns = np.round(ts * NS_PER_S).astype(np.int64)
    return int(ns.min()) if ns.size else 0, ns, None, None, {}, rows


def _timestamp_line(p: Path, lineno: int, line: str, values: array, *, header_ok: bool) -> None:
    text = line.split(",", 1)[0].strip()
    if not text or text.startswith("#"):
        return
    try:
        values.append(float(text))
    except ValueError:
        if header_ok:
            return  # a header line
        raise WorkloadError(f"{p}:{lineno}: not a timestamp in seconds: {text[:40]!r}") from None


def _csv_columns(p: Path, kind: str, header: list[str]) -> tuple[int, int, int, int | None, int | None]:
    """Where a BurstGPT or Azure trace keeps its timestamp, token counts, model and log type; one line when the
    header is not that layout's."""
    if kind == "burstgpt":
        cols = (
            _column(header, "Timestamp"),
            _column(header, "Request tokens"),
            _column(header, "Response tokens"),
        )
        model_col = _column(header, "Model")
        log_col = _column(header, "Log Type")
    else:
        cols = (
            _column(header, "TIMESTAMP"),
            _column(header, "ContextTokens"),
            _column(header, "GeneratedTokens"),
        )
        model_col = log_col = None
    if None in cols:
        want = (
            "Timestamp, Request tokens, Response tokens"
            if kind == "burstgpt"
            else "TIMESTAMP, ContextTokens, GeneratedTokens"
        )
        raise WorkloadError(
            f"{p}: not the {kind} layout: the header needs {want}; it has {', '.join(header)}"
        )
    t_col, in_col, out_col = cols  # type: ignore[misc]
    return t_col, in_col, out_col, model_col, log_col


def _read_csv_trace(
    p: Path,
    kind: str,
    first: str,
    fh: io.TextIOBase,
    models: Sequence[str] | None,
    log_types: Sequence[str] | None,
    drop_failed: bool,
    end_s: float | None,
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, dict[str, int], int]:
    t_col, in_col, out_col, model_col, log_col = _csv_columns(p, kind, next(csv.reader([first])))
    model_set = {m.lower() for m in models} if models else None
    log_set = {t.lower() for t in log_types} if log_types else None
    clock = _AzureClock()
    ts, inp, out = array("q"), array("q"), array("q")
    dropped: dict[str, int] = {}
    rows = 0
    t0: int | None = None
    origin: int | None = None  # the earliest row read, filtered or not: the window's zero
    last = None
    sorted_so_far = True
    end_ns = None if end_s is None else round(end_s * NS_PER_S)
    for lineno, rec in enumerate(csv.reader(fh), 2):
        if not rec:
            continue
        rows += 1
        try:
            t = clock.ns(rec[t_col]) if kind == "azure" else round(float(rec[t_col]) * NS_PER_S)
            n_in = int(float(rec[in_col] or 0))
            n_out = int(float(rec[out_col] or 0))
        except (ValueError, IndexError) as exc:
            raise WorkloadError(f"{p}:{lineno}: malformed {kind} row ({exc})") from None
        if t0 is None:
            t0 = t
        origin = t if origin is None else min(origin, t)
        if last is not None and t < last:
            sorted_so_far = False
        last = t
        if end_ns is not None and sorted_so_far and t - t0 >= end_ns:
            dropped["window"] = dropped.get("window", 0) + 1
            break  # sorted so far: nothing later can be inside the window
        if model_set is not None and (model_col is None or rec[model_col].strip().lower() not in model_set):
            dropped["model"] = dropped.get("model", 0) + 1
            continue
        if log_set is not None and (log_col is None or rec[log_col].strip().lower() not in log_set):
            dropped["log_type"] = dropped.get("log_type", 0) + 1
            continue
        if drop_failed and n_out <= 0:
            dropped["failed"] = dropped.get("failed", 0) + 1
            continue
        ts.append(t)
        inp.append(max(n_in, 0))
        out.append(max(n_out, 0))
    return (
        origin if origin is not None else 0,
        np.frombuffer(ts, dtype=np.int64).copy(),
        np.frombuffer(inp, dtype=np.int64).copy(),
        np.frombuffer(out, dtype=np.int64).copy(),
        dropped,
        rows,
    )


def trace_to_specs(
    trace: Trace,
    *,
    seed: int = 0,
    max_input_tokens: int | None = None,
    max_output_tokens: int | None = None,
    force_output_len: bool = False,
    default_output_tokens: int = 128,
) -> list[RequestSpec]:
    """One RequestSpec per arrival: a synthetic prompt of the trace's input length and the output length as
    ``max_tokens``. ``force_output_len`` asks the server to generate exactly that many tokens (vLLM/SGLang's
    ``min_tokens`` and ``ignore_eos``); without it the model may stop earlier. A timestamps-only trace gets
    ``default_output_tokens`` and a short prompt."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7ACE]))
    specs: list[RequestSpec] = []
    tags = {"dataset": trace.fmt, "domain": "trace"}
    for i in range(len(trace)):
        n_in = int(trace.input_tokens[i]) if trace.input_tokens is not None else 32
        n_out = int(trace.output_tokens[i]) if trace.output_tokens is not None else default_output_tokens
        if max_input_tokens is not None:
            n_in = min(n_in, max_input_tokens)
        n_out = max(1, n_out if max_output_tokens is None else min(n_out, max_output_tokens))
        extra = {"min_tokens": n_out, "ignore_eos": True} if force_output_len else None
        specs.append(
            RequestSpec(
                prompt=synthetic_prompt(max(n_in, 1), rng),
                max_tokens=n_out,
                tags=tags,
                extra_body=extra,
                input_tokens_hint=max(n_in, 1),
            )
        )
    return specs
