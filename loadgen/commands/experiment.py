"""``python -m loadgen experiment FILE.toml [--output-dir D] [--dry-run]``: launch specs × workloads × arrivals × seeds.

An experiment file::

    name = "cpu-optimisations"
    launcher = "local"              # local (the project's local engines; alias local-cpu) | docker | host | endpoint
    seeds = [1, 2]
    num_requests = 24               # every cell is bounded: num_requests and/or duration (s)
    warmup = 4                      # warm-up requests before each cell (a separate, unmeasured run)
    reset_prefix_cache = true       # after the warm-up, where the engine allows it
    vllm_dev_mode = true            # vLLM serves POST /reset_prefix_cache only with VLLM_SERVER_DEV_MODE=1
    # base_url = "http://127.0.0.1:8000"   # launcher = "endpoint": where the server is

    [launch]
    presets = "workloads/presets/tiny-cpu.toml"   # relative to the file, the working directory or the checkout
    names = ["baseline", "prefix-off"]            # which of its specs (default: all)
    overrides = { host = "127.0.0.1" }            # applied to every spec
    [launch.specs.my-variant]                     # inline specs (over the presets' [defaults] when given)
    kv_cache_dtype = "fp8"

    [arrivals]
    rates = [4.0]
    cvs = [1.0]

    [run]                           # options for every cell, named like the CLI flags (timeout, slo, ...)
    scrape_interval = 0.25

    [workloads.shared-prefix]       # one table per workload, same keys as the CLI flags
    input_len = 512
    prefix_len = 448
    max_tokens = 32

The file is read into its matrix of cells by ``loadgen.commands.experiment_plan`` (every cell's RunConfig built there, as
the CLI builds one, before anything starts); servers start and stop through ``server_launchers.lifecycle.Server``.
For each launch spec the server is started once (or the endpoint is used), then for each of its cells: warm up,
reset the prefix cache, run (a normal loadgen run), and the server is stopped after its last cell. A failed cell
(or a server that does not start) is recorded with its reason and the experiment goes on. Everything lands in one folder: one run folder per cell, ``warmup/`` and ``logs/``,
``manifest.json`` (cells, rendered commands, status, errors, timings, versions; rewritten after every step, so a
killed experiment still describes what it did) and ``compare.json`` (see ``loadgen.commands.compare``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from loadgen.commands.experiment_plan import (
    LAUNCHER_MODE,
    LOCAL_LAUNCHERS,
    REPO_ROOT,
    Cell,
    ExperimentPlan,
    SpecPlan,
    fmt_num,
    load_plan,
    safe_name,
)
from loadgen.errors import ConfigError
from loadgen.options import mask_secrets
from loadgen.records.files import COMPARE_HTML

log = logging.getLogger(__name__)

__all__ = ["load_plan", "main", "run_experiment", "write_comparison"]


# ------------------------------------------------------------------------------------------------ running
def _versions(plan: ExperimentPlan) -> dict[str, Any]:
    from loadgen.version import __version__

    out: dict[str, Any] = {
        "loadgen": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        rev = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if rev.returncode == 0:
            out["git_commit"] = rev.stdout.strip()
    if plan.launcher in LOCAL_LAUNCHERS:  # what the specs' engines run on, as the local launchers pin them
        from server_launchers.engines import LLAMACPP_VERSION
        from server_launchers.local_vllm import VLLM_PACKAGE, VLLM_VERSION

        pinned = {
            "vllm": f"{VLLM_PACKAGE} {VLLM_VERSION}",
            "llamacpp": f"llama.cpp of llama-cpp-python {LLAMACPP_VERSION}",
        }
        engines = sorted({sp.spec.engine for sp in plan.specs if sp.spec is not None})
        out["engine"] = ", ".join(pinned.get(e, e) for e in engines)
    elif plan.launcher == "docker":
        out["images"] = {sp.name: sp.spec.image_ref for sp in plan.specs if sp.spec is not None}
    return out


class Manifest:
    def __init__(self, path: Path, doc: dict[str, Any]) -> None:
        self.path, self.doc = path, doc

    def write(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.doc, indent=2, default=str) + "\n")
        os.replace(tmp, self.path)


def _spec_dict(sp: SpecPlan) -> dict[str, Any] | None:
    if sp.spec is None:
        return None
    d = asdict(sp.spec)
    d["env"] = dict(sp.spec.env)
    return d


def _brief(summary: dict[str, Any]) -> dict[str, Any]:
    m = summary.get("metrics", {})
    lat = m.get("latency_ms", {})
    server = summary.get("server") or {}
    return {
        "requests_ok": m.get("requests", {}).get("ok"),
        "requests_failed": m.get("requests", {}).get("failed"),
        "ttft_p50_ms": lat.get("ttft", {}).get("p50"),
        "e2e_p50_ms": lat.get("e2e", {}).get("p50"),
        "throughput_rps": m.get("throughput", {}).get("requests_per_s"),
        "prefix_cache_hit_rate": (server.get("prefix_cache") or {}).get("hit_rate"),
        "trustworthy": summary.get("client_check", {}).get("trustworthy"),
    }


def _manifest_doc(plan: ExperimentPlan, t_start: float) -> dict[str, Any]:
    """manifest.json before the first server starts: the experiment (secrets masked), every cell planned."""
    return {
        "loadgen_experiment_version": 1,
        "name": plan.name,
        "file": str(plan.path),
        "file_sha256": hashlib.sha256(plan.path.read_bytes()).hexdigest(),
        "experiment": mask_secrets(plan.doc),
        "launcher": plan.launcher,
        "status": "running",
        "started_unix": t_start,
        "versions": _versions(plan),
        "prefix_cache_reset": plan.reset_prefix_cache,
        "vllm_dev_mode": plan.vllm_dev_mode,
        "specs": {
            sp.name: {"spec": _spec_dict(sp), "rendered": sp.rendered, "server": {"status": "pending"}}
            for sp in plan.specs
        },
        "cells": [
            {
                "id": c.id,
                "dir": c.id,
                "config": c.config,
                "spec": c.spec,
                "workload": c.workload,
                "rate": c.rate,
                "cv": c.cv,
                "seed": c.seed,
                "run_args": mask_secrets(c.argv),
                "status": "planned",
            }
            for c in plan.cells
        ],
    }


def _one_cell(
    plan: ExperimentPlan,
    c: Any,
    root: str,
    out_dir: Path,
    cdoc: dict[str, Any],
    manifest: Manifest,
    say: Any,
    install_signal_handlers: bool,
) -> bool:
    """Run one cell against its server; its outcome into its manifest entry. True when interrupted."""
    from loadgen.run.runner import run as run_once

    interrupted = False
    cdoc.update(status="running", started_unix=time.time())
    manifest.write()
    t0 = time.monotonic()
    try:
        res = _run_cell(plan, c, root, out_dir, cdoc, run_once, install_signal_handlers)
        cdoc["summary"] = _brief(res.summary)
        if res.interrupted:
            cdoc["status"] = "interrupted"
            interrupted = True
        else:
            cdoc["status"] = "ok"
    except KeyboardInterrupt:
        cdoc.update(status="interrupted")
        interrupted = True
    except Exception as exc:
        cdoc.update(status="failed", error=f"{type(exc).__name__}: {_first_lines(str(exc))}")
        log.debug("cell %s failed", c.id, exc_info=True)
    cdoc["seconds"] = round(time.monotonic() - t0, 2)
    manifest.write()
    color = {"ok": "green", "failed": "red"}.get(cdoc["status"], "yellow")
    say(f"  [{color}]{cdoc['status']}[/] {c.id} ({cdoc['seconds']} s){_err_tail(cdoc)}")
    return interrupted


def run_experiment(
    plan: ExperimentPlan, out_dir: Path, *, console: Any = None, install_signal_handlers: bool = True
) -> dict[str, Any]:
    """Run every cell of ``plan`` into ``out_dir``; returns the manifest (also written to manifest.json)."""
    from server_launchers.lifecycle import Server
    from server_launchers.local_engines import local_server

    def say(msg: str) -> None:
        if console is not None:
            console.print(msg)
        log.info(re.sub(r"\[/?[a-z ]*\]", "", msg))

    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    manifest = Manifest(out_dir / "manifest.json", _manifest_doc(plan, t_start))
    manifest.write()
    cell_docs = {c["id"]: c for c in manifest.doc["cells"]}
    interrupted = False
    try:
        for sp in plan.specs:
            if interrupted:
                break
            cells = [c for c in plan.cells if c.spec == sp.name]
            sdoc = manifest.doc["specs"][sp.name]["server"]
            server = Server(
                sp.spec,
                LAUNCHER_MODE[plan.launcher],
                log_path=out_dir / "logs" / f"{safe_name(sp.name)}.log",
                timeout_s=plan.startup_timeout_s,
                base_url=sp.base_url,
                local_server=local_server,
            )
            say(f"[bold]{sp.name}[/]: starting ({plan.launcher})")
            sdoc.update(status="starting", started_unix=time.time())
            manifest.write()
            try:
                try:
                    root = server.start()
                except Exception as exc:  # a server that does not start fails its cells, not the experiment
                    reason = f"server did not start: {type(exc).__name__}: {_first_lines(str(exc))}"
                    sdoc.update(status="failed", error=reason, **server.info)
                    for c in cells:
                        cell_docs[c.id].update(status="failed", error=reason)
                    manifest.write()
                    say(f"[red]{sp.name}: {reason}[/]")
                    continue
                sdoc.update(status="up", **server.info)
                manifest.write()
                say(f"{sp.name}: healthy at {root} after {server.info.get('startup_s')} s")
                for c in cells:
                    if _one_cell(
                        plan, c, root, out_dir, cell_docs[c.id], manifest, say, install_signal_handlers
                    ):
                        interrupted = True
                        break
            finally:
                server.stop()
                if sdoc.get("status") == "up":
                    sdoc.update(status="stopped", stopped_unix=time.time())
                manifest.write()
    except KeyboardInterrupt:
        interrupted = True
    for cdoc in manifest.doc["cells"]:
        if cdoc["status"] in ("planned", "running"):
            cdoc["status"] = "skipped" if interrupted else cdoc["status"]
            if interrupted:
                cdoc["error"] = "experiment interrupted"
    manifest.doc["status"] = "interrupted" if interrupted else "done"
    manifest.doc["finished_unix"] = time.time()
    manifest.doc["seconds"] = round(time.time() - t_start, 1)
    counts: dict[str, int] = {}
    for cdoc in manifest.doc["cells"]:
        counts[cdoc["status"]] = counts.get(cdoc["status"], 0) + 1
    manifest.doc["counts"] = counts
    manifest.write()
    return manifest.doc


def _err_tail(cdoc: dict[str, Any]) -> str:
    return f": {cdoc['error']}" if cdoc.get("error") else ""


def _first_lines(text: str, n: int = 3) -> str:
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return " | ".join(lines[:n])[:500]


def _run_cell(
    plan: ExperimentPlan,
    c: Cell,
    root: str,
    out_dir: Path,
    cdoc: dict[str, Any],
    run_once: Any,
    signals: bool,
) -> Any:
    from server_launchers.lifecycle import reset_prefix_cache

    cfg = c.run_config.at(root)
    if plan.warmup:
        # its own seed: the measured run's prompts (and shared prefix) stay unseen by the server
        w = cfg.with_seed(c.seed + 1_000_003)
        w = replace(
            w,
            schedule=replace(w.schedule, num_requests=plan.warmup),
            scrape=replace(w.scrape, enabled=False),
            output=replace(w.output, report=False),
        )
        t0 = time.monotonic()
        wres = run_once(
            w.unattended(out_dir / "warmup" / c.id, f"warmup-{c.config}"),
            console=None,
            install_signal_handlers=signals,
        )
        ok = wres.summary["metrics"]["requests"]["ok"]
        cdoc["warmup"] = {"requests": plan.warmup, "ok": ok, "seconds": round(time.monotonic() - t0, 2)}
        if wres.interrupted:
            raise KeyboardInterrupt
    cdoc["prefix_cache_reset"] = reset_prefix_cache(root) if plan.reset_prefix_cache else "not asked"
    return run_once(cfg.unattended(out_dir / c.id, c.config), console=None, install_signal_handlers=signals)


# ------------------------------------------------------------------------------------------------ CLI
def print_plan(plan: ExperimentPlan, console: Any) -> None:
    from rich.table import Table

    console.print(
        f"[bold]experiment {plan.name}[/] ({plan.path}): launcher {plan.launcher}, {len(plan.specs)} spec(s), "
        f"{len(plan.workloads)} workload(s), {len(plan.cells)} cell(s); warm-up {plan.warmup} requests per cell; "
        f"prefix-cache reset {'on' if plan.reset_prefix_cache else 'off'}"
    )
    for sp in plan.specs:
        console.print(f"[bold]{sp.name}[/]")
        cmd = sp.rendered.get("command") or f"(running endpoint) {sp.rendered.get('endpoint')}"
        console.print("  " + cmd, markup=False, soft_wrap=True)
    t = Table(header_style="bold")
    for col in ("cell", "config", "workload", "rate", "cv", "seed", "run options"):
        t.add_column(col)
    for c in plan.cells:
        t.add_row(
            c.id,
            c.config,
            c.workload,
            fmt_num(c.rate),
            fmt_num(c.cv),
            str(c.seed),
            shlex.join(mask_secrets(c.argv)),
        )
    console.print(t)


def default_out_dir(plan: ExperimentPlan) -> Path:
    if plan.output_dir:
        return Path(plan.output_dir)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return Path("results") / f"{stamp}-experiment-{safe_name(plan.name)}"


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m loadgen experiment",
        allow_abbrev=False,
        description="Run an experiment: launch specs x workloads x (rate, cv) x seeds, one folder with a manifest.",
    )
    p.add_argument("file", type=Path, help="experiment TOML (see workloads/experiments/)")
    p.add_argument(
        "--output-dir", type=Path, help="results folder (default results/<UTC time>-experiment-<name>/)"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the matrix and the rendered commands; run nothing"
    )
    p.add_argument("--specs", help="only these launch specs (comma-separated)")
    p.add_argument("--no-compare", action="store_true", help="don't print/write the comparison at the end")
    ns = p.parse_args(list(argv))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    plan = load_plan(ns.file)
    if ns.specs:
        keep = [s.strip() for s in ns.specs.split(",") if s.strip()]
        missing = sorted(set(keep) - {s.name for s in plan.specs})
        if missing:
            raise ConfigError(f"--specs: no spec(s) {', '.join(missing)} in {ns.file}")
        plan.specs = [s for s in plan.specs if s.name in keep]
        plan.cells = [c for c in plan.cells if c.spec in keep]

    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    if ns.dry_run:
        print_plan(plan, console)
        return 0
    out_dir = ns.output_dir or default_out_dir(plan)
    from loadgen.config import check_output_dir

    check_output_dir(out_dir)
    if (out_dir / "manifest.json").exists():
        raise ConfigError(f"{out_dir} already holds an experiment (manifest.json); pick another --output-dir")
    print_plan(plan, console)
    doc = run_experiment(plan, out_dir, console=console)
    console.print(f"results: {out_dir} ({doc['counts']}) in {doc['seconds']} s")
    if not ns.no_compare and doc["counts"].get("ok"):
        write_comparison(out_dir, console)
    if doc["status"] == "interrupted":
        return 130
    return 0 if not doc["counts"].get("failed") else 1


def write_comparison(out_dir: Path, console: Any = None) -> dict[str, Any] | None:
    """compare.json (and compare.html when the report module exists) for a finished experiment."""
    from loadgen.commands.compare import compare_runs, json_default, write_html
    from loadgen.report.compare_console import format_compare

    try:
        result = compare_runs([out_dir])
    except ConfigError as exc:
        if console is not None:
            console.print(f"[yellow]no comparison: {exc}[/]")
        return None
    (out_dir / "compare.json").write_text(json.dumps(result, indent=2, default=json_default) + "\n")
    try:
        write_html(result, out_dir / COMPARE_HTML)
    except Exception as exc:  # the HTML is a view; never lose the experiment over it
        log.warning("compare.html not written: %s", exc)
    if console is not None:
        format_compare(result, console)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
