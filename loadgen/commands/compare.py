"""``python -m loadgen compare RESULT_DIR...``: configurations side by side, differences with bootstrap intervals.

Inputs are run folders (``summary.json`` + ``requests.jsonl``), experiment folders (``manifest.json``: expanded to
their cells, the cells of one configuration grouped across seeds) or folders of run folders (a sweep). A
configuration is named by the experiment cell's ``config``, else the run's ``label``, else the folder name; runs
with the same name are the seeds of one configuration.

Statistics
----------
*Request-level metrics* (TTFT, TTFVT, TPOT, E2E percentiles) pool every measured, successful request of a
configuration's runs. Their uncertainty comes from a two-level (hierarchical) bootstrap: each replicate draws the
configuration's runs (seeds) with replacement, then draws requests with replacement from the drawn runs. Both
levels matter: requests within one run are not independent of the run's server state, so resampling requests alone
would sell run-to-run noise as a finding.

The second level is computed without materialising resamples, so 100,000 requests cost milliseconds: drawing N
requests from the (multiplicity-weighted) pooled empirical distribution ``F`` and taking the k-th smallest is the
same as taking ``F⁻¹`` of the k-th smallest of N uniforms, which is ``Beta(k, N + 1 - k)``; the next order
statistic follows as ``U(k) + (1 - U(k)) · Beta(1, N - k)``, so the replicate uses numpy's linear-interpolation
percentile exactly like the point estimate. (The requests are drawn from the pooled drawn runs rather than run by
run; this adds the variation of the runs' shares, which widens the interval slightly.)

*Run-level metrics* (throughput, goodput, KV-cache usage, preemptions, prefix-cache hit rate, speculative
acceptance, stragglers, accuracy) are one number per run: a configuration's value is the mean over its runs and the
bootstrap resamples runs only. With fewer than two runs on either side there is nothing to resample and the
difference is shown without a verdict.

Every difference is ``config − baseline``; the interval is the percentile interval of ``n_boot`` differences of
independent replicates (seeded: the same inputs give the same intervals). A difference is *significant* when its
95% interval excludes 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loadgen.analysis.catalogue import METRICS, REQUEST_LATENCIES, REQUEST_METRICS, Metric
from loadgen.analysis.metrics import as_columns, interval_ms
from loadgen.errors import ConfigError
from loadgen.records.columns import RequestColumns, read_requests
from loadgen.records.files import REQUESTS, SUMMARY, get, read_summary

__all__ = [
    "ConfigData",
    "RunData",
    "compare_configs",
    "compare_runs",
    "expand_paths",
    "hierarchical_percentile_boot",
    "json_default",
    "load_configs",
    "load_run",
    "main",
    "percentile_linear",
    "request_latency_arrays",
    "run_level_metrics",
    "run_mean_boot",
    "write_html",
]

log = logging.getLogger(__name__)

CI_LEVEL = 0.95


# --------------------------------------------------------------------------------------------- loading
@dataclass
class RunData:
    """One run folder, reduced to what the comparison needs."""

    dir: Path
    name: str
    seed: int | None
    latencies_ms: dict[str, np.ndarray]  # ttft/ttfvt/tpot/e2e of measured, successful requests
    run_metrics: dict[str, float | None]
    n_requests: int
    turns: dict[str, Any] | None = None  # a conversations run's summary.turns (loadgen.results.summary_turns)


@dataclass
class ConfigData:
    name: str
    runs: list[RunData] = field(default_factory=list)
    spec: str | None = None  # an experiment's launch spec
    context: str = ""  # an experiment's workload/rate/cv: configurations are compared within one context


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def request_latency_arrays(records: Sequence[Any] | RequestColumns) -> dict[str, np.ndarray]:
    """ttft/ttfvt/tpot/e2e (ms, as ``loadgen.analysis.metrics`` defines them) of the measured, successful requests."""
    cols = as_columns(records)
    ok = cols.measured_ok
    out = {key: interval_ms(cols, key)[ok] for key in REQUEST_LATENCIES}
    return {k: v[np.isfinite(v)] for k, v in out.items()}


def run_level_metrics(summary: dict[str, Any]) -> dict[str, float | None]:
    """The run-level numbers of one ``summary.json``; None where the run did not measure it."""
    m = summary.get("metrics", {})
    server = summary.get("server") or {}
    req = m.get("requests", {})
    measured = req.get("measured") or 0
    acc = get(summary, "accuracy", "overall", "accuracy")
    return {
        "throughput_rps": _num(get(m, "throughput", "requests_per_s")),
        "output_tok_s": _num(get(m, "throughput", "output_tokens_per_s")),
        "goodput_rps": _num(get(m, "goodput", "requests_per_s")),
        "error_share": (req.get("failed", 0) / measured) if measured else None,
        "straggler_share": _num(get(m, "stragglers", "share_of_requests")),
        "accuracy": _num(acc),
        "client_trustworthy": None
        if "client_check" not in summary
        else float(bool(summary["client_check"].get("trustworthy"))),
        "kv_usage_mean": _num(get(server, "kv_cache_usage", "mean")),
        "kv_usage_max": _num(get(server, "kv_cache_usage", "max")),
        "kv_capacity_tokens": _num(get(server, "engine", "kv_capacity_tokens")),
        "preemptions": _num(server.get("preemptions")),
        "prefix_hit_rate": _num(get(server, "prefix_cache", "hit_rate"))
        if get(server, "prefix_cache") is not None
        else None,
        "spec_acceptance": _num(get(server, "spec_decode", "acceptance_rate")),
        "spec_accepted_length": _num(get(server, "spec_decode", "mean_accepted_length")),
    }


def load_run(path: Path, name: str | None = None, seed: int | None = None) -> RunData:
    summary = read_summary(path)
    req_path = path / REQUESTS
    # per-request latencies need no chunk arrays: they are cut out before parsing
    records = read_requests(req_path, chunks=False) if req_path.exists() else []
    if seed is None:
        seed = get(summary, "config", "schedule", "seed")
    prefix_section = get(summary, "server", "prefix_cache")
    metrics = run_level_metrics(summary)
    if prefix_section is not None and metrics["prefix_hit_rate"] is None:
        # vLLM exposes the counters even with prefix caching off: no queries or no hits is a hit rate of 0
        metrics["prefix_hit_rate"] = 0.0
    return RunData(
        dir=path,
        name=name or summary.get("label") or path.name,
        seed=seed,
        latencies_ms=request_latency_arrays(records),
        run_metrics=metrics,
        n_requests=int(get(summary, "metrics", "requests", "measured") or 0),
        turns=summary.get("turns"),
    )


def expand_paths(paths: Sequence[Path]) -> list[tuple[str | None, Path, int | None, str | None, str]]:
    """(config name or None, run folder, seed or None, spec or None, context) for every run behind ``paths``."""
    out: list[tuple[str | None, Path, int | None, str | None, str]] = []
    for p in map(Path, paths):
        manifest = p / "manifest.json"
        if manifest.is_file():
            doc = json.loads(manifest.read_text())
            cells = [c for c in doc.get("cells", []) if c.get("status") == "ok"]
            if not cells:
                log.warning("%s: no finished cells", p)
            for c in cells:
                name = c.get("config") or c.get("spec")
                spec = c.get("spec")
                context = name[len(spec) + 1 :] if spec and name and name.startswith(spec + "/") else ""
                out.append((name, p / c["dir"], c.get("seed"), spec, context))
        elif (p / SUMMARY).is_file():
            out.append((None, p, None, None, ""))
        elif p.is_dir():
            subs = sorted(d for d in p.iterdir() if (d / SUMMARY).is_file())
            if not subs:
                raise ConfigError(
                    f"{p}: neither a run folder (summary.json) nor an experiment (manifest.json)"
                )
            out += [(d.name, d, None, None, "") for d in subs]
        else:
            raise ConfigError(f"{p}: no such folder")
    return out


def load_configs(paths: Sequence[Path]) -> list[ConfigData]:
    configs: dict[str, ConfigData] = {}
    for name, path, seed, spec, context in expand_paths(paths):
        run = load_run(path, name, seed)
        configs.setdefault(run.name, ConfigData(run.name, spec=spec, context=context)).runs.append(run)
    if not configs:
        raise ConfigError("nothing to compare")
    return list(configs.values())


# --------------------------------------------------------------------------------------------- bootstrap
def percentile_linear(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if values.size else math.nan


def hierarchical_percentile_boot(
    runs: Sequence[np.ndarray], q: float, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """``n_boot`` bootstrap replicates of the q-th percentile (numpy's linear method) of the pooled requests of
    ``runs``: runs drawn with replacement, then requests drawn with replacement from the drawn runs (see the
    module docstring for why no resample is ever materialised)."""
    runs = [np.sort(np.asarray(r, dtype=float)) for r in runs if len(r)]
    k = len(runs)
    if k == 0:
        return np.full(n_boot, np.nan)
    sizes = np.array([r.size for r in runs], dtype=np.int64)
    pooled = np.sort(np.concatenate(runs))
    # cnt[s, i]: requests of run s at or below pooled[i]
    cnt = np.stack([np.searchsorted(r, pooled, side="right") for r in runs]).astype(np.float64)
    pick = rng.integers(0, k, size=(n_boot, k))
    mult = np.zeros((n_boot, k), dtype=np.int64)
    np.add.at(mult, (np.repeat(np.arange(n_boot), k), pick.ravel()), 1)
    n_tot = mult @ sizes
    # linear interpolation between order statistics j and j+1 (1-based) with weight frac
    h = (n_tot - 1) * (q / 100.0)
    j = np.floor(h).astype(np.int64) + 1
    frac = h - (j - 1)
    u1 = rng.beta(j.astype(float), (n_tot - j + 1).astype(float))
    nxt = n_tot - j
    u2 = np.where(nxt > 0, u1 + (1.0 - u1) * rng.beta(1.0, np.maximum(nxt, 1).astype(float)), u1)
    out = np.empty(n_boot)
    uniq, inverse = np.unique(mult, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    for g, row in enumerate(uniq):
        members = np.nonzero(inverse == g)[0]
        cum = row.astype(np.float64) @ cnt  # the drawn runs' pooled counts at each distinct value
        total = cum[-1]
        i1 = np.minimum(np.searchsorted(cum, u1[members] * total, side="left"), pooled.size - 1)
        i2 = np.minimum(np.searchsorted(cum, u2[members] * total, side="left"), pooled.size - 1)
        x1, x2 = pooled[i1], pooled[i2]
        out[members] = x1 + frac[members] * (x2 - x1)
    return out


def run_mean_boot(values: Sequence[float], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Replicates of the mean of per-run values, runs drawn with replacement."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    if x.size == 0:
        return np.full(n_boot, np.nan)
    return x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)


# --------------------------------------------------------------------------------------------- comparison
def _config_value(cfg: ConfigData, metric: Metric) -> float | None:
    if metric.level == "request":
        lat, q = REQUEST_METRICS[metric.key]
        pooled = np.concatenate([r.latencies_ms[lat] for r in cfg.runs])
        return percentile_linear(pooled, q) if pooled.size else None
    vals = [r.run_metrics[metric.key] for r in cfg.runs if r.run_metrics.get(metric.key) is not None]
    return float(np.mean(vals)) if vals else None


def _replicates(cfg: ConfigData, metric: Metric, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    if metric.level == "request":
        lat, q = REQUEST_METRICS[metric.key]
        return hierarchical_percentile_boot([r.latencies_ms[lat] for r in cfg.runs], q, n_boot, rng)
    return run_mean_boot(
        [r.run_metrics[metric.key] for r in cfg.runs if r.run_metrics.get(metric.key) is not None],
        n_boot,
        rng,
    )


def _n_units(cfg: ConfigData, metric: Metric) -> int:
    """How many independent runs back this metric (what the outer bootstrap level resamples)."""
    if metric.level == "request":
        lat, _ = REQUEST_METRICS[metric.key]
        return sum(1 for r in cfg.runs if r.latencies_ms[lat].size)
    return sum(1 for r in cfg.runs if r.run_metrics.get(metric.key) is not None)


def _difference(
    c: ConfigData, base: ConfigData, metric: Metric, value: float, bval: float, diffs: np.ndarray
) -> dict[str, Any]:
    """One configuration against its baseline on one metric: the difference and its percentile interval from the
    bootstrap replicates' differences (``diffs``); significant only where the interval excludes 0 (and, for a
    run-level metric, each side has 2 runs or more)."""
    alpha = (1 - CI_LEVEL) / 2
    diffs = diffs[np.isfinite(diffs)]
    lo, hi = (
        (float(np.quantile(diffs, alpha)), float(np.quantile(diffs, 1 - alpha)))
        if diffs.size
        else (None, None)
    )
    enough = metric.level == "request" or (_n_units(c, metric) >= 2 and _n_units(base, metric) >= 2)
    significant: bool | None = (lo > 0 or hi < 0) if enough and lo is not None and hi is not None else None
    diff = value - bval
    return {
        "config": c.name,
        "baseline": base.name,
        "metric": metric.key,
        "value": value,
        "baseline_value": bval,
        "diff": diff,
        "rel_diff": diff / bval if bval else None,
        "ci_low": lo,
        "ci_high": hi,
        "significant": significant,
        "runs": [_n_units(c, metric), _n_units(base, metric)],
    }


def compare_configs(
    configs: list[ConfigData], baseline: str | None = None, n_boot: int = 2000, seed: int = 0
) -> dict[str, Any]:
    if n_boot < 100:
        raise ConfigError(f"--n-boot must be >= 100, got {n_boot}")
    bases = _pick_baselines(configs, baseline)
    out_configs = []
    for c in configs:
        out_configs.append(
            {
                "name": c.name,
                "dirs": [str(r.dir) for r in c.runs],
                "seeds": [r.seed for r in c.runs],
                "requests": sum(r.n_requests for r in c.runs),
                "metrics": {m.key: _config_value(c, m) for m in METRICS},
            }
        )
    values = {oc["name"]: oc["metrics"] for oc in out_configs}
    for c, oc in zip(configs, out_configs, strict=True):
        oc["baseline"] = bases[c.context].name
        if c.context:
            oc["context"] = c.context
    differences = []
    for m_i, metric in enumerate(METRICS):
        # one generator per (metric, config): adding a config never changes another's interval
        base_reps = {
            ctx: _replicates(b, metric, n_boot, np.random.default_rng([seed, m_i, 0, configs.index(b)]))
            for ctx, b in bases.items()
            if values[b.name][metric.key] is not None
        }
        for c_i, (c, oc) in enumerate(zip(configs, out_configs, strict=True)):
            base = bases[c.context]
            base_values = values[base.name]
            if c is base or oc["metrics"][metric.key] is None or base_values[metric.key] is None:
                continue
            base_rep = base_reps[c.context]
            rep = _replicates(c, metric, n_boot, np.random.default_rng([seed, m_i, c_i + 1]))
            value, bval = oc["metrics"][metric.key], base_values[metric.key]
            differences.append(_difference(c, base, metric, value, bval, rep - base_rep))
    baselines = sorted({b.name for b in bases.values()})
    turns = {c.name: c.runs[0].turns for c in configs if c.runs and c.runs[0].turns}
    return {
        **({"turns": turns} if turns else {}),  # conversations: each configuration's first run, turn by turn
        "baseline": baselines[0] if len(baselines) == 1 else baselines,
        "configs": out_configs,
        "differences": differences,
        "metrics": {
            m.key: {"label": m.label, "unit": m.unit, "level": m.level, "better": m.better, "group": m.group}
            for m in METRICS
        },
        "method": {
            "n_boot": n_boot,
            "seed": seed,
            "ci_level": CI_LEVEL,
            "interval": "percentile",
            "request_metrics": "hierarchical bootstrap: runs with replacement, then requests with replacement",
            "run_metrics": "bootstrap of the mean over runs; no verdict with fewer than 2 runs per side",
        },
    }


def _pick_baselines(configs: list[ConfigData], baseline: str | None) -> dict[str, ConfigData]:
    """The baseline of every context (an experiment's workload/rate/cv; "" for plain run folders): the
    configuration named ``baseline`` (or whose launch spec is), or holding that run folder; by default the one
    named/spec'd "baseline", else the context's first."""
    by_ctx: dict[str, list[ConfigData]] = {}
    for c in configs:
        by_ctx.setdefault(c.context, []).append(c)
    want = Path(baseline).resolve() if baseline else None
    out: dict[str, ConfigData] = {}
    for ctx, group in by_ctx.items():
        key = baseline or "baseline"
        hit = [c for c in group if c.name == key or c.spec == key]
        if not hit and want is not None:
            hit = [c for c in group if any(r.dir.resolve() == want for r in c.runs)]
        if hit:
            out[ctx] = hit[0]
        elif baseline is None:
            out[ctx] = group[0]
    if baseline is not None and not out:
        raise ConfigError(
            f"--baseline {baseline!r}: no configuration, spec or run folder of that name; "
            f"have {', '.join(c.name for c in configs)}"
        )
    for ctx in by_ctx:
        if ctx not in out:
            raise ConfigError(f"--baseline {baseline!r}: no such configuration for {ctx or 'the plain runs'}")
    return out


def compare_runs(
    paths: list[Path], baseline: str | None = None, n_boot: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Compare result folders (runs, experiments or folders of runs): see the module docstring."""
    return compare_configs(load_configs([Path(p) for p in paths]), baseline, n_boot, seed)


def write_html(result: dict[str, Any], out_path: Path) -> Path | None:
    """compare.html through the report module, when it is installed; None (and a log line) otherwise."""
    try:
        from loadgen.report.html import write_compare_report
    except ImportError as exc:
        log.warning("no HTML comparison written: the report module is unavailable (%s)", exc)
        return None
    return write_compare_report(result, Path(out_path))


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="python -m loadgen compare",
        description="Compare configurations: percentiles, throughput, server state; differences against a "
        "baseline with hierarchical bootstrap confidence intervals.",
    )
    p.add_argument("paths", nargs="+", type=Path, help="run folders, experiment folders or folders of runs")
    p.add_argument(
        "--baseline", help="configuration name or run folder (default: 'baseline', else the first)"
    )
    p.add_argument("--json", action="store_true", help="print the comparison as JSON (nothing else)")
    p.add_argument("--html", type=Path, metavar="FILE", help="also write an HTML comparison")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default %(default)s)")
    ns = p.parse_args(list(argv))
    result = compare_runs(ns.paths, ns.baseline, ns.n_boot, ns.seed)
    if ns.html:
        written = write_html(result, ns.html)
        if written is None and not ns.json:
            print("loadgen: no HTML written: loadgen.report.html is not available", file=sys.stderr)
    if ns.json:
        sys.stdout.write(json.dumps(result, indent=2, default=json_default) + "\n")
        return 0
    from rich.console import Console

    from loadgen.report.compare_console import format_compare, format_compare_text

    console = Console()
    if not console.is_terminal:  # piped or redirected: plain text, as wide as its content
        sys.stdout.write(format_compare_text(result))
        return 0
    format_compare(result, console)
    return 0


def json_default(o: Any) -> Any:
    """``json.dumps``' default for a comparison's numpy numbers and paths."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)
