"""The HTML report: numbers match summary.json, reductions keep what matters, figures are real SVG, CLI contract."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import orjson
import pytest

from loadgen.__main__ import main as cli_main
from loadgen.analysis.metrics import per_token_itl_ns, request_latencies
from loadgen.records.columns import read_records
from loadgen.records.columns import records as R
from loadgen.records.record import RequestRecord
from loadgen.report import distributions as D
from loadgen.report import run_data as RD
from loadgen.report import timeline as T
from loadgen.report.html import write_compare_report, write_run_report, write_sweep_report
from loadgen.report.synthetic_run import write_folder
from loadgen.scrape.series import CounterSeries, GaugeSeries, KvCacheSeries, load_samples


class _Cells(HTMLParser):
    """data-key -> data-value of every tagged number, and the ids present."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self.ids: set[str] = set()
        self.scripts_with_src = 0
        self.links = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if "data-key" in a:
            self.values[a["data-key"] or ""] = a.get("data-value") or ""
        if a.get("id"):
            self.ids.add(a["id"] or "")
        if tag == "script" and a.get("src"):
            self.scripts_with_src += 1
        if tag == "link":
            self.links += 1


def _parse(path: Path) -> _Cells:
    p = _Cells()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def _lookup(summary: dict, key: str):
    d = summary
    for part in key.split("."):
        d = d[part]
    return d


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_folder(tmp_path_factory.mktemp("run") / "r", 400, hours=0.05, interval_s=0.5, seed=3)


def test_every_tagged_number_equals_summary(small_run: Path) -> None:
    path = write_run_report(small_run)
    summary = orjson.loads((small_run / "summary.json").read_bytes())
    cells = _parse(path)
    assert len(cells.values) > 60
    for key in (
        "metrics.latency_ms.ttft.p50",
        "metrics.requests.ok",
        "metrics.latency_ms.e2e_from_intended.p99",
    ):
        assert key in cells.values
    for key, raw in cells.values.items():
        want = _lookup(summary, key)
        if want is None:
            assert raw == ""
        else:
            assert float(raw) == pytest.approx(float(want), rel=1e-12), key


def test_page_is_self_contained_and_has_the_figures(small_run: Path) -> None:
    path = write_run_report(small_run)
    html = path.read_text(encoding="utf-8")
    cells = _parse(path)
    assert cells.scripts_with_src == 0 and cells.links == 0
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing fetched from the network
    for fid in ("cdf-ttft", "cdf-ttfvt", "cdf-tpot", "cdf-itl", "cdf-e2e", "timeline", "verdict"):
        assert fid in cells.ids
    # every CDF has a plotted path with many points; the timeline one group per request
    for key in ("ttft", "ttfvt", "tpot", "itl", "e2e"):
        svg = (small_run / "figures" / f"cdf_{key}.svg").read_text()
        assert svg.startswith("<?xml") and 'xmlns="http://www.w3.org/2000/svg"' in svg
        d = re.findall(r'class="series" d="([^"]+)"', svg)
        assert d and max(x.count("L") for x in d) > 50, key
    tl = (small_run / "figures" / "timeline.svg").read_text()
    assert tl.count('class="req') == 400
    assert "KV-cache usage" in tl and "Preemptions" in tl and "throughput" in tl


def test_timeline_cap_keeps_every_straggler_and_failure(small_run: Path) -> None:
    summary = orjson.loads((small_run / "summary.json").read_bytes())
    req = RD.read_requests(small_run / "requests.jsonl", 10**9)
    thr = summary["metrics"]["stragglers"]["threshold_ms"]
    svg, info = T.timeline_figure(req, RD.ServerSeries(), thr, {}, cap=60)
    assert info.drawn == 60 and info.total == 400
    drawn = {int(i) for i in re.findall(r'data-index="(\d+)"', svg)}
    strag = {s["index"] for s in summary["metrics"]["stragglers"]["requests"]}
    failed = {int(i) for i, ok in zip(req.index, req.ok, strict=True) if not ok}
    assert strag and failed
    assert strag | failed <= drawn
    assert svg.count('class="req straggler"') == summary["metrics"]["stragglers"]["count"]


def test_cdf_and_itl_histogram_agree_with_metrics(small_run: Path) -> None:
    recs = [r for r in read_records(small_run / "requests.jsonl") if r.status == "ok"]
    req = RD.read_requests(small_run / "requests.jsonl", 10**9)
    ttft = np.array([request_latencies(r)["ttft"] for r in recs])
    x, y, binned = D.cdf_points(req.ms("send_ns", "first_token_ns")[req.measured_ok])
    assert not binned and np.array_equal(np.sort(ttft), x) and y[-1] == 1.0
    itl = np.concatenate([per_token_itl_ns(r) for r in recs]) / 1e6
    assert req.itl_hist.sum() == itl.size
    for q in (0.5, 0.9, 0.99):
        assert D.hist_quantile(req.itl_hist, q) == pytest.approx(np.quantile(itl, q), rel=0.01)
    big = np.random.default_rng(0).lognormal(3, 1, 50_000)
    x, y, binned = D.cdf_points(big)
    assert binned and len(x) < 400
    assert np.interp(0.999, y, x) == pytest.approx(np.quantile(big, 0.999), rel=1e-9)


def test_large_file_sampled_path_matches_full_read(small_run: Path) -> None:
    full = RD.read_requests(small_run / "requests.jsonl", 10**9)
    sampled = RD.read_requests(small_run / "requests.jsonl", 10**9, full_parse_bytes=50_000)
    assert sampled.chunk_stride > 1 and full.chunk_stride == 1
    for k in full.t:
        assert np.array_equal(full.t[k], sampled.t[k], equal_nan=True)
    assert sampled.itl_requests < full.itl_requests
    # throughput: chunks of a sample + the others spread evenly: same total, nearly the same shape
    assert sampled.tok_bins.sum() == pytest.approx(full.tok_bins.sum(), rel=1e-9)
    n = min(full.tok_bins.size, sampled.tok_bins.size)
    assert np.abs(full.tok_bins[:n] - sampled.tok_bins[:n]).sum() / full.tok_bins.sum() < 0.1


def test_spread_integrates_exactly() -> None:
    # 10 tokens over [0.5 s, 2.5 s]: bins of 1 s get 2.5, 5, 2.5; a one-point request lands in its bin
    acc = RD._add_spread(np.zeros(1), np.array([[0.5e9, 2.5e9, 10.0], [3.2e9, 3.2e9, 4.0]]), 10**9)
    assert acc[:4] == pytest.approx([2.5, 5.0, 2.5, 4.0])


def test_server_reader_matches_scrape_series(tmp_path: Path) -> None:
    lines = []
    for i in range(40):
        vals = {
            "kv_cache_usage": {'engine="0"': i / 40, 'engine="1"': 0.5},
            "num_running": {'engine="0"': float(i % 7), 'engine="1"': 2.0},
            "num_waiting": {'engine="0"': float(i % 3)},
            "preemptions": {'engine="0"': float(i if i < 20 else i - 20), 'engine="1"': float(i // 4)},
            "generation_tokens": {'engine="0"': float(100 * i)},
            "ttft": {'engine="0"': {"le": [0.1, 1.0], "cum": [1.0, 2.0], "sum": 0.5, "count": 2.0}},
        }
        lines.append(
            {"t_ns": i * 10**8, "t_start_ns": i * 10**8, "url": "u", "dialect": "vllm", "values": vals}
        )
        if i == 7:
            lines.append(
                {"t_ns": 7 * 10**8 + 1, "t_start_ns": 0, "url": "u", "error": "timeout", "message": "x"}
            )
    p = tmp_path / "server_metrics.jsonl"
    p.write_bytes(b"\n".join(orjson.dumps(x) for x in lines) + b"\n")
    got = RD.read_server(p)
    samples = load_samples(p)
    assert got.samples == 40
    assert np.array_equal(got.kv, KvCacheSeries.from_samples(samples).values)
    assert np.array_equal(got.running, GaugeSeries.from_samples(samples, "num_running", "sum").values)
    assert np.array_equal(got.waiting, GaugeSeries.from_samples(samples, "num_waiting", "sum").values)
    pre = CounterSeries.from_samples(samples, "preemptions")
    assert pre.resets == 1 and np.array_equal(got.preempt, pre.values)
    assert np.array_equal(got.gen, CounterSeries.from_samples(samples, "generation_tokens").values)


def test_cli_report_and_missing_summary(
    small_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (small_run / "report.html").unlink(missing_ok=True)
    assert cli_main(["report", str(small_run)]) == 0
    assert capsys.readouterr().out.strip() == str(small_run / "report.html")
    assert (small_run / "report.html").stat().st_size > 10_000
    assert cli_main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "summary.json" in err[0]


def test_run_without_scrapes_or_records_still_reports(tmp_path: Path, small_run: Path) -> None:
    d = tmp_path / "bare"
    d.mkdir()
    (d / "summary.json").write_bytes((small_run / "summary.json").read_bytes())
    html = write_run_report(d).read_text()
    assert "No requests.jsonl" in html and 'data-key="metrics.latency_ms.ttft.p50"' in html
    (d / "requests.jsonl").write_bytes((small_run / "requests.jsonl").read_bytes())
    html = write_run_report(d).read_text()
    assert "No server metrics were scraped" in html and 'id="timeline"' in html


def _cmp_fixture(dirs: list[Path]) -> dict:
    return {
        "baseline": "a",
        "configs": [
            {"name": "a", "dirs": [str(dirs[0])], "seeds": [0], "metrics": {"ttft_p50": 20.0, "throughput_rps": 5.0}},
            {"name": "b", "dirs": [str(dirs[1])], "seeds": [1], "metrics": {"ttft_p50": 12.0, "throughput_rps": 6.0}},
        ],
        "differences": [
            {"config": "b", "metric": "ttft_p50", "value": 12.0, "baseline_value": 20.0, "diff": -8.0,
             "rel_diff": -0.4, "ci_low": -10.0, "ci_high": -6.0, "significant": True},
            {"config": "b", "metric": "throughput_rps", "value": 6.0, "baseline_value": 5.0, "diff": 1.0,
             "rel_diff": 0.2, "ci_low": -0.5, "ci_high": 2.5, "significant": False},
        ],
    }  # fmt: skip


def test_compare_report(tmp_path: Path, small_run: Path) -> None:
    other = write_folder(tmp_path / "b", 200, hours=0.03, interval_s=0.5, seed=9)
    out = write_compare_report(_cmp_fixture([small_run, other]), tmp_path / "cmp" / "compare.html")
    html = out.read_text()
    cells = _parse(out)
    assert cells.values["configs.b.metrics.ttft_p50"] == "12.0"
    for name in ("compare_bars", "compare_cdf_ttft", "compare_cdf_e2e", "compare_kv"):
        svg = (tmp_path / "cmp" / "figures" / f"{name}.svg").read_text()
        assert "<path" in svg or "<rect" in svg
    # overlaid CDFs: one line per configuration
    ttft = (tmp_path / "cmp" / "figures" / "compare_cdf_ttft.svg").read_text()
    assert ttft.count('class="series"') == 2
    # whisker = baseline + CI of the difference: 20-10=10 .. 20-6=14 for b's TTFT
    bars = (tmp_path / "cmp" / "figures" / "compare_bars.svg").read_text()
    assert "95 % CI -10 … -6" in bars and "significant" in html


def test_sweep_report(tmp_path: Path) -> None:
    cells = []
    for cv in (1.0, 4.0):
        for rate in (1, 2, 4, 8):
            sat = cv == 4.0 and rate == 8
            cells.append({
                "rate": rate, "cv": cv, "dir": str(tmp_path / f"rate-{rate}_cv-{cv:g}"),
                "status": "saturated" if sat else "ok", "offered_rate": rate * 1.01,
                "throughput": min(rate, 5.0), "goodput_rps": min(rate, 5.0 if cv == 1 else 3.0),
                "p99_ttft_ms": 20.0 * rate * cv, "p99_ttfvt_ms": 400.0 * rate * cv, "p50_e2e_ms": 900.0,
                "error_share": 0.0, "saturated": sat, "reason": "queue grew 3.1x" if sat else None,
            })  # fmt: skip
    cells.append({"rate": 16, "cv": 4.0, "dir": None, "status": "skipped", "offered_rate": None, "throughput": None,
                  "goodput_rps": None, "p99_ttft_ms": None, "p99_ttfvt_ms": None, "p50_e2e_ms": None,
                  "error_share": None, "saturated": None, "reason": "a lower rate saturated"})  # fmt: skip
    (tmp_path / "sweep.json").write_bytes(
        orjson.dumps({"config": {"rates": [1, 2, 4, 8, 16]}, "cells": cells})
    )
    out = write_sweep_report(tmp_path)
    assert out == tmp_path / "sweep.html"
    for key in ("goodput_rps", "p99_ttft_ms", "p99_ttfvt_ms"):
        svg = (tmp_path / "figures" / f"sweep_{key}.svg").read_text()
        assert svg.count('class="series"') >= 2  # one line per cv
        assert svg.count('fill="white" stroke="#D55E00"') == 2  # the saturated cell's ring + its legend entry
    assert "queue grew 3.1x" in out.read_text()
    # the report subcommand recognises a sweep folder
    assert cli_main(["report", str(tmp_path)]) == 0


def test_records_roundtrip_helper_is_real() -> None:
    # the chunk cutter keeps every other field intact
    r = RequestRecord(index=3, chunk_ns=[1, 2, 3], chunk_tokens=[1, 1, 1], chunk_kind="rrc", prompt_tokens=7)
    line = r.to_json()
    cut = orjson.loads(R.without_chunks(line))
    full = orjson.loads(line)
    assert "chunk_ns" not in cut and "chunk_kind" not in cut
    assert {k: v for k, v in full.items() if not k.startswith("chunk_")} == cut


def test_server_quantiles_are_shown_as_their_buckets(small_run: Path, tmp_path: Path) -> None:
    """Issue 11 item 6: the server table shows a histogram quantile as its bucket, and says why."""
    d = tmp_path / "buckets"
    d.mkdir()
    summary = orjson.loads((small_run / "summary.json").read_bytes())
    lat = {
        "queue_time": {"count": 100, "mean": 0.0015, "p50": {"gt": 0.0, "le": 0.3},
                       "p90": {"gt": 0.0, "le": 0.3}, "p99": {"gt": 0.3, "le": 0.5}},
        "e2e": {"count": 100, "mean": 5.0, "p50": {"gt": 1.0, "le": 2.5},
                "p90": {"gt": 5.0, "le": 10.0}, "p99": {"gt": 10.0, "le": None}},
    }  # fmt: skip
    summary["server"]["latency_s"] = lat
    (d / "summary.json").write_bytes(orjson.dumps(summary))
    path = write_run_report(d)
    html = path.read_text(encoding="utf-8")
    cells = _parse(path)
    assert orjson.loads(cells.values["server.latency_s.e2e.p99"]) == {"gt": 10.0, "le": None}
    assert float(cells.values["server.latency_s.queue_time.mean"]) == pytest.approx(1.5)
    row = re.search(r"<td>e2e</td>(.*?)</tr>", html).group(1)
    assert "&gt; 10,000" in row and "1,000–2,500" in row
    row = re.search(r"<td>queue_time</td>(.*?)</tr>", html).group(1)
    assert "≤ 300" in row and ">150<" not in row
    assert "server-buckets" in cells.ids and "never as an interpolated point" in html
