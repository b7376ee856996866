"""loadgen's own figures, live, for Prometheus (``--metrics-port PORT``): the exporter's child process.

What Prometheus scrapes (every series labelled ``run="<the run's label>"``):

    loadgen_requests_total{outcome}     finished measured requests by status (ok, error, cancelled)
    loadgen_in_flight_requests          requests sent and not finished (a fleet's driver: due and not finished)
    loadgen_output_tokens_total         completion tokens of finished measured requests
    loadgen_ttft_seconds                histograms of the catalogue's TTFT, TPOT, per-token ITL and E2E (from
    loadgen_tpot_seconds                send; successful measured requests) and send lag (every dispatched
    loadgen_itl_seconds                 measured request), in buckets from 100 µs to 10 min, six a decade
    loadgen_e2e_seconds                 (1, 1.5, 2, 3, 5, 7 ms, ...)
    loadgen_send_lag_seconds

Every figure comes from finished records, read from the files the run writes anyway (``requests.jsonl``; a
fleet's per-sender files) as they grow, and every latency from :data:`loadgen.analysis.metrics.INTERVALS` and
:func:`loadgen.analysis.metrics.token_gaps` over columns, as the summary computes them: nothing is timed twice. Warm-up
requests are left out, as the summary leaves them out.

All of it runs in a child process (``loadgen.report.exporter_process`` starts it), like the scrape poller: the
fold costs ~50 µs of numpy and Python per 256-token record (~100 µs in its first form, which, on a thread of the
client, cost the client ceiling 7 %: ``benchmarks/client_ceiling.py --exporter``); the client only writes a count
twice a second to the child's stdin. Prometheus's HTTP server (``prometheus_client``) answers scrapes on a thread of the
child. After ``finish`` the child folds what is left (the figures are then the run's final ones) and keeps serving
until one scrape has read them, or ``linger_s`` has passed (``--metrics-linger``), so a scraper with a 5 s interval
still sees the whole run.

The conversation, one JSON line each way over the child's stdin and stdout::

    child  -> {"ready": true, "port": P} | {"error": "one line"}
    parent -> {"in_flight": N} | {"due": N}      now and then: sent and not finished / planned sends due by now
    parent -> {"finish": true}                   (or stdin closing) fold the rest, linger, exit
    child  -> {"finished": true, "records": N}
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from loadgen.analysis.metrics import INTERVAL, interval_ns, token_gaps
from loadgen.errors import ConfigError
from loadgen.records.columns import ChunkBlock, RequestColumns
from loadgen.records.columns.requests import COUNT_FIELDS, TIME_FIELDS

FOLD_S = 0.25
ANSWER_S = 0.5  # after the final figures were collected for a scrape, time for the answer to go out
NICE = 10
OUTCOMES = ("ok", "error", "cancelled")
# seconds: 100 µs to 10 min, 1-1.5-2-3-5-7 a decade
BUCKETS_S: tuple[float, ...] = tuple(
    round(m * 10.0**e, 6) for e in range(-4, 2) for m in (1, 1.5, 2, 3, 5, 7)
) + (100.0, 150.0, 200.0, 300.0, 600.0)
# name -> (catalogue key, rows it is over: "ok" measured successful, "dispatched" every measured one)
HISTOGRAMS: dict[str, tuple[str, str]] = {
    "loadgen_ttft_seconds": ("ttft", "ok"),
    "loadgen_tpot_seconds": ("tpot", "ok"),
    "loadgen_itl_seconds": ("itl_per_token", "ok"),
    "loadgen_e2e_seconds": ("e2e", "ok"),
    "loadgen_send_lag_seconds": ("send_lag", "dispatched"),
}
METRIC_NAMES = (
    "loadgen_requests_total",
    "loadgen_in_flight_requests",
    "loadgen_output_tokens_total",
    *HISTOGRAMS,
)


class _Histogram:
    """Bucket counts (non-cumulative, the last one +Inf) and the sum of one histogram."""

    def __init__(self) -> None:
        self.counts = np.zeros(len(BUCKETS_S) + 1)
        self.sum = 0.0

    def add(self, seconds: np.ndarray, weights: np.ndarray | None = None) -> None:
        keep = ~np.isnan(seconds)
        v = seconds[keep]
        w = None if weights is None else weights[keep]
        if not v.size:
            return
        idx = np.searchsorted(BUCKETS_S, v, side="left")  # Prometheus's buckets are "<= le"
        self.counts += np.bincount(idx, weights=w, minlength=self.counts.size)
        self.sum += float(v.sum() if w is None else (v * w).sum())

    def buckets(self) -> list[tuple[str, float]]:
        cum = np.cumsum(self.counts)
        return [(repr(b), float(c)) for b, c in zip(BUCKETS_S, cum[:-1], strict=True)] + [
            ("+Inf", float(cum[-1]))
        ]


def _columns(recs: list[dict[str, Any]]) -> RequestColumns:
    """A batch of records (as their JSON lines hold them) as the columns the catalogue computes on."""
    t = {k: np.array([d.get(k) for d in recs], dtype=np.float64) for k in TIME_FIELDS}
    n = {k: np.array([d.get(k) for d in recs], dtype=np.float64) for k in COUNT_FIELDS}
    cols = RequestColumns.of_times(t, n)
    cols.warmup = np.array([bool(d.get("warmup")) for d in recs], dtype=bool)
    cols.ok = np.array([d.get("status", "ok") == "ok" for d in recs], dtype=bool)
    return cols


def _chunks(recs: list[dict[str, Any]], measured_ok: np.ndarray) -> ChunkBlock:
    """Their chunk arrays as one block, taken as the columns reader takes them (times and tokens of one length)."""
    rows = [
        i
        for i, d in enumerate(recs)
        if d.get("chunk_ns") and len(d["chunk_ns"]) == len(d.get("chunk_tokens") or ())
    ]
    lens = np.array([len(recs[i]["chunk_ns"]) for i in rows], dtype=np.int64)

    def flat(key: str) -> np.ndarray:
        return (
            np.concatenate([np.array(recs[i][key], dtype=np.int64) for i in rows])
            if rows
            else np.zeros(0, np.int64)
        )

    return ChunkBlock(
        rows=np.array(rows, dtype=np.int64),
        lens=lens,
        t=flat("chunk_ns"),
        k=flat("chunk_tokens"),
        measured_ok=measured_ok[rows] if rows else np.zeros(0, dtype=bool),
    )


class Figures:
    """The run's figures so far, folded from batches of finished records; a prometheus_client collector."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.requests = dict.fromkeys(OUTCOMES, 0)
        self.output_tokens = 0
        self.hist = {name: _Histogram() for name in HISTOGRAMS}
        self.records = 0  # records folded, warm-up included
        self.in_flight = 0  # as the parent last said
        self.due: int | None = None  # a fleet's driver: planned sends due by now (in flight = due - records)
        self.last_scrape = 0.0  # time.monotonic() of the last scrape
        self._lock = threading.Lock()

    def fold(self, recs: list[dict[str, Any]]) -> None:
        """Add a batch of finished records: numpy over their columns, one pass a batch."""
        if not recs:
            return
        cols = _columns(recs)
        measured, ok = cols.measured, cols.measured_ok
        outcomes = collections.Counter(
            d.get("status", "ok") for d, m in zip(recs, measured, strict=True) if m
        )
        tokens = int(np.nansum(cols.n["completion_tokens"][measured]))
        seconds = {
            name: interval_ns(cols, key)[ok if over == "ok" else measured] / 1e9
            for name, (key, over) in HISTOGRAMS.items()
            if INTERVAL[key].per_request
        }
        b = _chunks(recs, ok)
        g, w, _ = token_gaps(b.t, b.k, b.first_mask(), b.measured_ok[b.owner()])
        with self._lock:
            self.records += len(recs)
            for outcome, count in outcomes.items():
                self.requests[outcome] = self.requests.get(outcome, 0) + count
            self.output_tokens += tokens
            for name, v in seconds.items():
                self.hist[name].add(v)
            self.hist["loadgen_itl_seconds"].add(g / 1e9, w.astype(np.float64))

    def collect(self) -> Iterable[Any]:
        labels = ["run"]
        c = CounterMetricFamily(
            "loadgen_requests", "finished measured requests, by outcome", labels=["run", "outcome"]
        )
        t = CounterMetricFamily(
            "loadgen_output_tokens", "completion tokens of finished measured requests", labels=labels
        )
        g = GaugeMetricFamily(
            "loadgen_in_flight_requests", "requests sent and not yet finished", labels=labels
        )
        hists = []
        with self._lock:
            self.last_scrape = time.monotonic()
            for outcome, n in self.requests.items():
                c.add_metric([self.label, outcome], n)
            t.add_metric([self.label], self.output_tokens)
            g.add_metric(
                [self.label], self.in_flight if self.due is None else max(0, self.due - self.records)
            )
            for name, (key, _) in HISTOGRAMS.items():
                h = HistogramMetricFamily(
                    name, f"{INTERVAL[key].title} ({INTERVAL[key].note})", labels=labels
                )
                h.add_metric([self.label], self.hist[name].buckets(), self.hist[name].sum)
                hists.append(h)
        return [c, t, *hists, g]


class Follow:
    """New complete lines of record files written by others, read from where the last read stopped."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self.offsets = {Path(p): 0 for p in paths}

    def read(self) -> list[dict[str, Any]]:
        out = []
        for path, offset in self.offsets.items():
            try:
                with open(path, "rb") as fh:
                    fh.seek(offset)
                    data = fh.read()
            except FileNotFoundError:
                continue
            end = data.rfind(b"\n") + 1  # a line not yet ended is read next time
            self.offsets[path] = offset + end
            for line in data[:end].splitlines():
                with contextlib.suppress(orjson.JSONDecodeError):
                    out.append(orjson.loads(line))
        return out


def serve(figures: Figures, port: int, host: str) -> tuple[Any, threading.Thread]:
    """Prometheus's HTTP server for these figures; a port that cannot be had is one line (ConfigError)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(figures)
    try:
        return start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        why = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise ConfigError(f"--metrics-port {port}: cannot listen on {host}:{port}: {why}") from None


def _commands(figures: Figures, finish: threading.Event) -> None:
    """The parent's lines: counts now and then, then finish (or stdin closing: the parent is gone)."""
    for line in sys.stdin.buffer:
        with contextlib.suppress(orjson.JSONDecodeError, TypeError, ValueError):
            msg = orjson.loads(line)
            if "in_flight" in msg:
                figures.in_flight = int(msg["in_flight"])
            if "due" in msg:
                figures.due = int(msg["due"])
            if msg.get("finish"):
                break
    finish.set()


def _child(args: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        os.nice(NICE)
    out = sys.stdout.buffer
    figures = Figures(args["label"])
    try:
        server, thread = serve(figures, args["port"], args["host"])
    except ConfigError as exc:
        out.write(orjson.dumps({"error": str(exc)}) + b"\n")
        out.flush()
        return
    out.write(orjson.dumps({"ready": True, "port": server.server_address[1]}) + b"\n")
    out.flush()
    follow = Follow(args["files"])
    finish = threading.Event()
    threading.Thread(target=_commands, args=(figures, finish), daemon=True).start()
    while not finish.wait(FOLD_S):
        figures.fold(follow.read())
    figures.fold(follow.read())  # the rest: every record is on disk when the parent says finish
    finished_at = time.monotonic()
    with contextlib.suppress(OSError):
        out.write(orjson.dumps({"finished": True, "records": figures.records}) + b"\n")
        out.flush()
    deadline = finished_at + float(args["linger_s"])
    while figures.last_scrape <= finished_at and time.monotonic() < deadline:
        time.sleep(0.05)
    if figures.last_scrape > finished_at:
        time.sleep(ANSWER_S)  # the scrape was collected: let its answer reach the scraper
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


if __name__ == "__main__":
    _child(orjson.loads(sys.argv[1]))
