"""loadgen's own figures, live, for Prometheus: ``--metrics-port PORT`` serves them while the run lasts.

What Prometheus scrapes (every series labelled ``run="<the run's label>"``):

    loadgen_requests_total{outcome}     finished measured requests by status (ok, error, cancelled)
    loadgen_in_flight_requests          requests sent and not finished (a fleet's driver: due and not finished)
    loadgen_output_tokens_total         completion tokens of finished measured requests
    loadgen_ttft_seconds                histograms of the catalogue's TTFT, TPOT, per-token ITL and E2E (from
    loadgen_tpot_seconds                send; successful measured requests) and send lag (every dispatched
    loadgen_itl_seconds                 measured request), in buckets from 100 µs to 10 min, a few per
    loadgen_e2e_seconds                 millisecond below 10 ms
    loadgen_send_lag_seconds

Every figure comes from finished records, the same ones ``requests.jsonl`` gets, and every latency from
:data:`loadgen.metrics.INTERVALS` and :func:`loadgen.metrics.token_gaps` over columns, exactly as the summary
computes them: nothing is timed twice. Warm-up requests are left out, as the summary leaves them out.

Off the stamping path: the event loop only appends a finished record to a deque (:meth:`LiveExporter.observe`; a
fleet's driver instead has the exporter read the senders' record files, :meth:`LiveExporter.follow`), and the
exporter's own thread folds what has gathered into bucket counts every ``FOLD_S`` with numpy, a batch at a time.
Prometheus's HTTP server (``prometheus_client``) answers scrapes on a thread of its own from those counts.

At the end, :meth:`LiveExporter.finish` folds what is left (the figures are then the run's final ones) and
:meth:`LiveExporter.close` keeps serving until one scrape has read them, or ``linger_s`` has passed, so a scraper
with a 5 s interval still sees the whole run (``--metrics-linger``).
"""

from __future__ import annotations

import collections
import errno
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from loadgen.columns import ChunkBlock, from_records
from loadgen.errors import ConfigError
from loadgen.metrics import INTERVAL, interval_ns, token_gaps
from loadgen.records import RequestRecord

FOLD_S = 0.25
ANSWER_S = 0.5  # after the final figures were collected for a scrape, time for the answer to go out
OUTCOMES = ("ok", "error", "cancelled")
# seconds: 100 µs to 10 min, 1-1.5-2-3-5-7 a decade (a few buckets a millisecond below 10 ms)
BUCKETS_S: tuple[float, ...] = tuple(
    round(m * 10.0**e, 6) for e in range(-4, 2) for m in (1, 1.5, 2, 3, 5, 7)
) + (100.0, 150.0, 200.0, 300.0, 600.0)
# name -> (catalogue key, rows it is over: "ok" measured successful, "dispatched" every measured dispatched one)
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
        # Prometheus's buckets are "<= le": the first bound >= v is v's bucket
        idx = np.searchsorted(BUCKETS_S, v, side="left")
        self.counts += np.bincount(idx, weights=w, minlength=self.counts.size)
        self.sum += float(v.sum() if w is None else (v * w).sum())

    def buckets(self) -> list[tuple[str, float]]:
        cum = np.cumsum(self.counts)
        return [(repr(b), float(c)) for b, c in zip(BUCKETS_S, cum[:-1], strict=True)] + [
            ("+Inf", float(cum[-1]))
        ]


class _TokenGaps:
    """A columns reducer that keeps the per-token ITL of measured successful requests (metrics.token_gaps)."""

    def __init__(self) -> None:
        self.gaps: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, b: ChunkBlock) -> None:
        g, w, _ = token_gaps(b.t, b.k, b.first_mask(), b.measured_ok[b.owner()])
        if g.size:
            self.gaps.append((g, w))

    def finish(self, cols: Any) -> None:
        pass


class Figures:
    """The run's figures so far, folded from batches of finished records; a prometheus_client collector."""

    def __init__(self, label: str, in_flight: Callable[[], int] | None = None) -> None:
        self.label = label
        self.in_flight = in_flight
        self.requests = dict.fromkeys(OUTCOMES, 0)
        self.output_tokens = 0
        self.hist = {name: _Histogram() for name in HISTOGRAMS}
        self.records = 0  # records folded, warm-up included
        self.scrapes = 0
        self.last_scrape = 0.0  # time.monotonic() of the last scrape
        self._lock = threading.Lock()

    def fold(self, records: Sequence[RequestRecord]) -> None:
        """Add a batch of finished records (numpy over their columns: one pass a batch, not a record)."""
        if not records:
            return
        gaps = _TokenGaps()
        cols = from_records(records, reducers=[gaps])
        measured, ok = cols.measured, cols.measured_ok
        status = cols.status.counts(measured)
        tokens = cols.n["completion_tokens"][measured]
        seconds = {
            name: interval_ns(cols, key)[ok if over == "ok" else measured] / 1e9
            for name, (key, over) in HISTOGRAMS.items()
            if INTERVAL[key].per_request
        }
        with self._lock:
            self.records += len(records)
            for outcome, n in status.items():
                self.requests[str(outcome)] = self.requests.get(str(outcome), 0) + int(n)
            self.output_tokens += int(np.nansum(tokens))
            for name, v in seconds.items():
                self.hist[name].add(v)
            for g, w in gaps.gaps:
                self.hist["loadgen_itl_seconds"].add(g / 1e9, w.astype(np.float64))

    def collect(self) -> Iterable[Any]:
        labels = ["run"]
        c = CounterMetricFamily(
            "loadgen_requests", "finished measured requests, by outcome", labels=["run", "outcome"]
        )
        t = CounterMetricFamily("loadgen_output_tokens", "completion tokens of finished measured requests",
                                labels=labels)  # fmt: skip
        hists = []
        with self._lock:
            self.scrapes += 1
            self.last_scrape = time.monotonic()
            for outcome, n in self.requests.items():
                c.add_metric([self.label, outcome], n)
            t.add_metric([self.label], self.output_tokens)
            for name, (key, _) in HISTOGRAMS.items():
                h = HistogramMetricFamily(
                    name, f"{INTERVAL[key].title} ({INTERVAL[key].note})", labels=labels
                )
                h.add_metric([self.label], self.hist[name].buckets(), self.hist[name].sum)
                hists.append(h)
        g = GaugeMetricFamily(
            "loadgen_in_flight_requests", "requests sent and not yet finished", labels=labels
        )
        try:  # read on the HTTP server's thread: a sender not yet made has nothing in flight
            in_flight = self.in_flight() if self.in_flight is not None else 0
        except (NameError, AttributeError):
            in_flight = 0
        g.add_metric([self.label], in_flight)
        return [c, t, *hists, g]


class _Follow:
    """New complete lines of record files written by others (a fleet's per-sender files), read from where the
    last read stopped."""

    def __init__(self, paths: Callable[[], Iterable[Path]]) -> None:
        self.paths = paths
        self.offsets: dict[Path, int] = {}

    def read(self) -> list[RequestRecord]:
        out = []
        for path in self.paths():
            try:
                with open(path, "rb") as fh:
                    fh.seek(self.offsets.get(path, 0))
                    data = fh.read()
            except FileNotFoundError:
                continue
            end = data.rfind(b"\n") + 1  # a line not yet ended is read next time
            self.offsets[path] = self.offsets.get(path, 0) + end
            for line in data[:end].splitlines():
                try:
                    out.append(RequestRecord.from_dict(orjson.loads(line)))
                except orjson.JSONDecodeError:
                    continue
        return out


class LiveExporter:
    """The live endpoint: ``observe`` finished records (or ``follow`` record files), ``finish``, ``close``."""

    def __init__(
        self,
        label: str,
        port: int,
        host: str = "127.0.0.1",
        *,
        in_flight: Callable[[], int] | None = None,
        linger_s: float = 0.0,
    ) -> None:
        self.figures = Figures(label, in_flight)
        self.linger_s = linger_s
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.figures)
        try:
            self._server, self._server_thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            why = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
            raise ConfigError(f"--metrics-port {port}: cannot listen on {host}:{port}: {why}") from None
        self.port = self._server.server_address[1]
        self._pending: collections.deque[RequestRecord] = collections.deque()
        self._follow: _Follow | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fold_loop, name="loadgen-exporter", daemon=True)
        self._thread.start()
        self._finished_at: float | None = None
        self._closed = False

    @property
    def url(self) -> str:
        host = self._server.server_address[0]
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.port}/metrics"

    def observe(self, rec: RequestRecord) -> None:
        """A finished record (called on the event loop: one deque append, nothing else)."""
        self._pending.append(rec)

    def follow_senders(self, files: Sequence[Path], offsets_ns: np.ndarray, clock: Any) -> None:
        """A fleet's driver: read finished records from the senders' files as they grow; in flight = planned
        sends whose time has come less the records finished (the driver sees no sender's dispatcher, so a
        request still waiting for a slot counts as in flight)."""
        self._follow = _Follow(lambda: files)
        figures = self.figures

        def in_flight() -> int:
            if not clock.started:
                return 0
            due = int(np.searchsorted(offsets_ns, clock.now_ns(), side="right"))
            return max(0, due - figures.records)

        figures.in_flight = in_flight

    def _fold_once(self) -> None:
        n = len(self._pending)  # deque pops are atomic: take what is there now
        batch = [self._pending.popleft() for _ in range(n)]
        if self._follow is not None:
            batch += self._follow.read()
        self.figures.fold(batch)

    def _fold_loop(self) -> None:
        while not self._stop.wait(FOLD_S):
            self._fold_once()

    def finish(self) -> None:
        """Fold what is left and stop folding: the figures are the run's final ones from now on."""
        if self._finished_at is not None:
            return
        self._stop.set()
        self._thread.join()
        self._fold_once()
        self._finished_at = time.monotonic()

    def close(self) -> None:
        """Finish, keep serving until a scrape has read the final figures (at most ``linger_s``), then stop."""
        if self._closed:
            return
        self._closed = True
        self.finish()
        assert self._finished_at is not None
        deadline = self._finished_at + self.linger_s
        while self.figures.last_scrape <= self._finished_at and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.figures.last_scrape > self._finished_at:
            time.sleep(ANSWER_S)  # the scrape was collected: let its answer reach the scraper
        self._server.shutdown()
        self._server.server_close()
        self._server_thread.join(timeout=5)


def open_exporter(output: Any, label: str, in_flight: Callable[[], int] | None = None) -> LiveExporter | None:
    """The run's exporter from its OutputConfig (``metrics_port``, ``metrics_host``, ``metrics_linger_s``), or
    None when ``--metrics-port`` is off."""
    if output.metrics_port is None:
        return None
    return LiveExporter(
        label, output.metrics_port, output.metrics_host, in_flight=in_flight, linger_s=output.metrics_linger_s
    )
