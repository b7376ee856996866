"""MetricsPoller: an asyncio task that scrapes each /metrics URL on a fixed grid and appends one JSON line per scrape.

Why it is built this way:

* Ticks are absolute deadlines ``t0 + k * interval`` on the run's clock. After a slow scrape the poller jumps to the
  next future tick (missed ticks are counted, never replayed in a burst), so the grid never drifts.
* Each sample carries ``t_start_ns`` (just before the GET) and ``t_ns`` (response body complete): the server's state
  was read somewhere in between, and that span is the sample's time uncertainty.
* Each URL has its own loop, so one slow server cannot hold back another; the HTTP session is the poller's own
  (one connection per URL, short timeouts), so it shares no connection pool with the load-generating client.
* The text is filtered, parsed and serialised in a worker thread (``asyncio.to_thread``) and the lines are written by
  the sink's own thread (``records.LineSink``): the event loop only awaits. A run scrapes from a child process
  (``loadgen.scrape.process``), so even a 10 MB text never holds the client's GIL.
* Failures are data: counted by kind (``connect``, ``timeout``, ``http``, ``parse``, ``other``), written to the
  sink as an ``error`` line so the timeline shows the gap, and never raised into the run.

Sink lines (``server_metrics.jsonl``)::

    {"t_ns", "t_start_ns", "url", "dialect", "values": {vocabulary name: {label string: value | histogram}}}
    {"t_ns", "t_start_ns", "url", "error": kind, "message"}
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson

from loadgen.records.record import LineSink, Scrubber
from loadgen.scrape.dialects import DIALECTS, UNKNOWN, detect_dialect
from loadgen.scrape.gpu import open_reader
from loadgen.scrape.parse import Values, engine_info, parse_raw, parse_text
from loadgen.scrape.slots import slots_values

logger = logging.getLogger(__name__)

FAILURE_KINDS = ("connect", "timeout", "http", "parse", "other")
_MASK = Scrubber()  # a --metrics-url given with user:password@ is written and logged without them


def default_metrics_url(base_url: str) -> str:
    """``/metrics`` at the endpoint's origin: ``http://h:8000/v1`` -> ``http://h:8000/metrics``."""
    parts = urlsplit(base_url)
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"not an absolute http(s) URL: {base_url!r}")
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], "/metrics", "", ""))


class MetricsPoller:
    """Scrape ``urls`` every ``interval_s`` on the run clock (``perf_counter_ns() - t0_ns``) into ``sink_path``."""

    def __init__(
        self,
        urls: list[str],
        interval_s: float = 0.5,
        *,
        sink_path: Path,
        t0_ns: int,
        dialect: str | None = None,
        timeout_s: float | None = None,
        gpu_metrics: str = "off",
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        if dialect is not None and dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {dialect!r}; known: {sorted(DIALECTS)}")
        if not urls:
            raise ValueError("no /metrics URL to poll")
        self.urls = list(urls)
        self.interval_ns = int(interval_s * 1e9)
        self.sink_path = Path(sink_path)
        self.t0_ns = t0_ns
        self.dialect = dialect
        # A scrape may take at most most of one interval, and never more than 5 s.
        # A busy engine answers /metrics slowly (a CPU vLLM under load: hundreds of ms); a timeout shorter than
        # that would lose every sample, while a longer one only skips ticks. At most 5 s.
        self.timeout_s = timeout_s if timeout_s is not None else min(5.0, max(1.0, 0.9 * interval_s))
        self._dialects: dict[str, str] = {}
        self._slots_ok: dict[str, bool] = {}  # llama.cpp: does GET /slots answer? (asked once per URL)
        # static engine facts read once per URL (KV-cache capacity, block size, cache dtype)
        self.info: dict[str, dict[str, Any]] = {}
        self.stats: dict[str, Any] = {
            "scrapes": 0,
            "ok": 0,
            "failures": dict.fromkeys(FAILURE_KINDS, 0),
            "missed_ticks": 0,
            "last_error": None,
            "parse_ns_total": 0,
            "parse_ns_max": 0,
            "bytes_total": 0,
            "dialect_unknown": 0,
            "slots": None,
        }
        # NVML beside the first URL's scrapes (gpu.py): opened once, here, before the run's clock starts
        self._gpu = open_reader(gpu_metrics, self.urls[0])
        self.stats["gpu"] = self._gpu.describe() if self._gpu is not None else None

    def _now(self) -> int:
        return time.perf_counter_ns() - self.t0_ns

    async def run(self, stop: asyncio.Event, final_scrape: bool = True) -> None:
        """Poll until ``stop`` is set, then (by default) scrape each URL once more.

        The last sample then lies after the last request ended, so counter and histogram deltas over the run's
        window are complete instead of missing whatever happened after the previous tick.
        """
        timeout = aiohttp.ClientTimeout(total=self.timeout_s, connect=self.timeout_s)
        connector = aiohttp.TCPConnector(limit=len(self.urls), limit_per_host=1, force_close=False)
        sink = LineSink(self.sink_path, thread_name="loadgen-scrape")
        try:
            async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
                loops = [asyncio.create_task(self._loop(session, url, sink, stop)) for url in self.urls]
                try:
                    await stop.wait()
                finally:
                    for task in loops:
                        task.cancel()
                    await asyncio.gather(*loops, return_exceptions=True)
                if final_scrape:
                    lines = await asyncio.gather(*(self._scrape(session, url) for url in self.urls))
                    for line in lines:
                        self._write(sink, line)
        finally:
            try:
                sink.close()
            except OSError as exc:
                self._sink_failed(exc)

    def _write(self, sink: LineSink, line: bytes) -> None:
        if self.stats.get("sink_error"):
            return
        try:
            sink.write_line(line)
        except OSError as exc:
            self._sink_failed(exc)

    def _sink_failed(self, exc: OSError) -> None:
        if not self.stats.get("sink_error"):
            self.stats["sink_error"] = f"{type(exc).__name__}: {exc}"
            logger.warning("writing %s failed: %s; no more samples are written", self.sink_path, exc)

    async def _loop(
        self, session: aiohttp.ClientSession, url: str, sink: LineSink, stop: asyncio.Event
    ) -> None:
        k = max(0, -(-self._now() // self.interval_ns))  # first tick not in the past
        while not stop.is_set():
            wait_ns = self.t0_ns + k * self.interval_ns - time.perf_counter_ns()
            if wait_ns > 0:
                try:
                    await asyncio.wait_for(stop.wait(), wait_ns / 1e9)
                    return
                except TimeoutError:
                    pass
            self._write(sink, await self._scrape(session, url))
            due = -(-self._now() // self.interval_ns)  # next tick strictly in the future
            if due > k + 1:
                self.stats["missed_ticks"] += due - k - 1
            k = max(k + 1, due)

    async def _scrape(self, session: aiohttp.ClientSession, url: str) -> bytes:
        """One scrape as its sink line (serialised)."""
        self.stats["scrapes"] += 1
        t_start = self._now()
        try:
            async with session.get(url) as resp:
                body = await resp.read()
                t_end = self._now()
                if resp.status != 200:
                    return self._fail("http", f"HTTP {resp.status}", url, t_start, t_end)
        except TimeoutError:
            return self._fail("timeout", f"no complete answer within {self.timeout_s:.2f} s", url, t_start)
        except aiohttp.ClientConnectorError as exc:
            return self._fail("connect", str(exc), url, t_start)
        except (aiohttp.ClientError, OSError) as exc:
            return self._fail("other", f"{type(exc).__name__}: {exc}", url, t_start)
        self.stats["bytes_total"] += len(body)
        try:
            dialect, values, parse_ns = await asyncio.to_thread(self._parse, url, body)
        except (ValueError, UnicodeDecodeError) as exc:
            return self._fail("parse", f"{type(exc).__name__}: {exc}", url, t_start, t_end)
        self.stats["ok"] += 1
        self.stats["parse_ns_total"] += parse_ns
        self.stats["parse_ns_max"] = max(self.stats["parse_ns_max"], parse_ns)
        line: dict[str, Any] = {
            "t_ns": t_end,
            "t_start_ns": t_start,
            "url": _MASK.text(url),
            "dialect": dialect,
        }
        if dialect == UNKNOWN:
            self.stats["dialect_unknown"] += 1
            line.update(values={}, raw=values)
        else:
            if dialect == "llamacpp" and self._slots_ok.get(url, True):
                values.update(await self._scrape_slots(session, url))
            if self._gpu is not None and url == self.urls[0]:
                values.update(await asyncio.to_thread(self._read_gpu))
            line["values"] = values
        return await asyncio.to_thread(_dump_line, line)  # its values can be large

    async def _scrape_slots(self, session: aiohttp.ClientSession, url: str) -> Values:
        """llama.cpp has no KV metric: its ``GET /slots`` (with ``--slots``) on the same tick gives slot occupancy.
        A server without it is asked once; the summary then says why KV usage is missing."""
        slots_url = urlunsplit(urlsplit(url)._replace(path="/slots", query=""))
        try:
            async with session.get(slots_url) as resp:
                body = await resp.read()
                status: Any = resp.status
            values = await asyncio.to_thread(slots_values, body) if status == 200 else None
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            values, status = None, f"{type(exc).__name__}: {exc}"
        if values is None:
            if url not in self._slots_ok:  # never answered: stop asking
                self._slots_ok[url] = False
                self.stats["slots"] = (
                    f"GET {slots_url} gave {status}: no slot occupancy (start the server with --slots)"
                )
                logger.warning("%s", self.stats["slots"])
            return {}
        self._slots_ok[url] = True
        self.stats["slots"] = slots_url
        return values

    def _read_gpu(self) -> Values:
        """The GPUs' readings on this tick; a failing read stops GPU sampling (said once) and costs no sample."""
        try:
            return self._gpu.read() if self._gpu is not None else {}
        except Exception as exc:  # NVMLError, nvidia-smi failing: the /metrics sample is kept
            logger.warning("GPU metrics stopped: %s: %s", type(exc).__name__, exc)
            self.stats["gpu_error"] = f"{type(exc).__name__}: {exc}"
            self._gpu = None
            return {}

    def _parse(self, url: str, body: bytes) -> tuple[str, Values, int]:
        """Runs in a worker thread: decode, detect the dialect once per URL, filter, parse."""
        t = time.perf_counter_ns()
        text = body.decode("utf-8")
        name = self.dialect or self._dialects.get(url)
        if name is None:
            name = detect_dialect(text) or UNKNOWN
            if name != UNKNOWN:
                self._dialects[url] = (
                    name  # an unknown text is looked at again next time (an engine warming up)
                )
            elif not self.stats["dialect_unknown"]:
                logger.warning("%s: no vLLM, SGLang, TGI or llama.cpp metric names; keeping raw samples", url)
        if name == UNKNOWN:
            raw = parse_raw(text)
            if not raw and any(line and line[0] != "#" for line in text.splitlines()):
                raise ValueError("the text is not in Prometheus exposition format")
            return name, raw, time.perf_counter_ns() - t
        if url not in self.info:
            self.info[url] = engine_info(text)
        values = parse_text(text, DIALECTS[name])
        return name, values, time.perf_counter_ns() - t

    def _fail(self, kind: str, message: str, url: str, t_start: int, t_end: int | None = None) -> bytes:
        self.stats["failures"][kind] += 1
        self.stats["last_error"] = f"{kind}: {message}"
        url, message = _MASK.text(url), _MASK.text(message)
        if self.stats["failures"][kind] == 1:
            logger.warning("scraping %s failed (%s): %s", url, kind, message)
        t = t_end if t_end is not None else self._now()
        line = {"t_ns": t, "t_start_ns": t_start, "url": url, "error": kind, "message": message[:300]}
        return orjson.dumps(line) + b"\n"


def _dump_line(line: dict[str, Any]) -> bytes:
    return orjson.dumps(line) + b"\n"
