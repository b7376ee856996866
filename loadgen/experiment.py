"""``python -m loadgen experiment FILE.toml [--output-dir D] [--dry-run]``: launch specs × workloads × arrivals × seeds.

An experiment file::

    name = "cpu-optimisations"
    launcher = "local-cpu"          # local-cpu | docker | host | endpoint (an already-running server)
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

For each launch spec the server is started once (or the endpoint is used), then for each of its cells: warm up,
reset the prefix cache, run (a normal loadgen run: the RunConfig is built exactly as the CLI builds it), and the
server is stopped after its last cell. A failed cell (or a server that does not start) is recorded with its reason
and the experiment goes on. Everything lands in one folder: one run folder per cell, ``warmup/`` and ``logs/``,
``manifest.json`` (cells, rendered commands, status, errors, timings, versions; rewritten after every step, so a
killed experiment still describes what it did) and ``compare.json`` (see ``loadgen.compare``).
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
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from loadgen.errors import ConfigError

log = logging.getLogger(__name__)

LAUNCHERS = ("local-cpu", "docker", "host", "endpoint")
TOP_KEYS = {
    "name", "description", "launcher", "seeds", "num_requests", "duration", "warmup", "reset_prefix_cache",
    "vllm_dev_mode", "base_url", "startup_timeout_s", "output_dir", "launch", "arrivals", "run", "workloads",
}  # fmt: skip
LAUNCH_KEYS = {"presets", "names", "overrides", "specs", "defaults"}
# options the experiment sets per cell; a workload or [run] table must not
CELL_OPTIONS = {"rate", "cv", "seed", "output_dir", "label", "base_url", "warmup", "config"}
REPO_ROOT = Path(__file__).resolve().parent.parent
DEV_MODE_ENV = "VLLM_SERVER_DEV_MODE"


# ------------------------------------------------------------------------------------------------ the plan
@dataclass
class SpecPlan:
    name: str
    spec: Any | None  # server_launchers.spec.LaunchSpec, or None for an endpoint label without a spec
    base_url: str | None = None  # endpoint launcher
    rendered: dict[str, Any] = field(default_factory=dict)


@dataclass
class Cell:
    id: str
    spec: str
    workload: str
    rate: float
    cv: float
    seed: int
    config: str
    argv: list[str]  # run options besides base_url/output_dir/label (those are added when it runs)


@dataclass
class Plan:
    path: Path
    name: str
    launcher: str
    specs: list[SpecPlan]
    workloads: dict[str, dict[str, Any]]
    cells: list[Cell]
    warmup: int
    reset_prefix_cache: bool
    vllm_dev_mode: bool
    startup_timeout_s: float
    output_dir: str | None
    doc: dict[str, Any]


def _resolve_file(text: str, exp_path: Path) -> Path:
    p = Path(text).expanduser()
    if p.is_absolute():
        return p
    for base in (exp_path.parent, Path.cwd(), REPO_ROOT):
        if (base / p).is_file():
            return (base / p).resolve()
    raise ConfigError(
        f"{exp_path}: presets file {text!r} not found (relative to the file, the cwd or {REPO_ROOT})"
    )


def _num_list(doc: dict[str, Any], key: str, where: str, default: list[Any]) -> list[Any]:
    v = doc.get(key, default)
    if not isinstance(v, list):
        v = [v]
    if not v:
        raise ConfigError(f"{where}: {key} must not be empty")
    for x in v:
        if isinstance(x, bool) or not isinstance(x, int | float):
            raise ConfigError(f"{where}: {key} must be numbers, got {x!r}")
    return v


def option_argv(table: dict[str, Any], where: str) -> list[str]:
    """A table of run options (CLI flag names, ``_`` or ``-``) as command-line arguments."""
    from loadgen.options import DEFAULTS

    argv: list[str] = []
    for key, value in table.items():
        k = key.replace("-", "_")
        if k not in DEFAULTS:
            raise ConfigError(f"{where}: unknown run option {key!r} (use the CLI's long flag names)")
        if k in CELL_OPTIONS:
            raise ConfigError(f"{where}: {key!r} is set by the experiment per cell (arrivals, seeds, warmup)")
        flag = "--" + k.replace("_", "-")
        if isinstance(value, bool):
            if value:
                argv.append(flag)
            elif DEFAULTS[k] is True:
                raise ConfigError(f"{where}: {key} = false is the default")
        elif isinstance(value, list):
            for item in value:
                argv += [flag, str(item)]
        elif isinstance(value, dict):
            argv += [flag, json.dumps(value)]
        else:
            argv += [flag, str(value)]
    return argv


def build_run_config(argv: Sequence[str]) -> Any:
    """A RunConfig from command-line arguments, exactly as ``python -m loadgen`` builds it."""
    from loadgen.options import build_config, build_parser, resolve_options

    parser = build_parser()
    try:
        ns = parser.parse_args(list(argv))
    except SystemExit:
        raise ConfigError(f"invalid run options: {shlex.join(argv)}") from None
    return build_config(resolve_options(ns))


def _fmt_num(x: float) -> str:
    """Short (4, not 4.0) but never rounded: 6 significant digits would merge nearby rates into one cell."""
    g = f"{x:g}"
    return g if float(g) == x else repr(x)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def load_plan(path: str | Path) -> Plan:
    """Read and validate an experiment file; every cell's RunConfig is built once here, so a bad option fails
    before any server starts."""
    from server_launchers.spec import LaunchSpec, LaunchSpecError, load_specs

    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"experiment file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"experiment file {path}: invalid TOML: {exc}") from None
    where = str(path)
    unknown = sorted(set(doc) - TOP_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(TOP_KEYS))}"
        )
    launcher = doc.get("launcher", "local-cpu")
    if launcher not in LAUNCHERS:
        raise ConfigError(f"{where}: launcher must be one of {', '.join(LAUNCHERS)}, not {launcher!r}")

    launch = doc.get("launch", {})
    unknown = sorted(set(launch) - LAUNCH_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown [launch] key(s) {', '.join(unknown)}")
    overrides = dict(launch.get("overrides", {}))
    dev_mode = bool(doc.get("vllm_dev_mode", launcher == "local-cpu"))
    specs: list[SpecPlan] = []
    try:
        if "presets" in launch:
            preset_path = _resolve_file(launch["presets"], path)
            loaded = load_specs(preset_path, overrides=overrides)
            names = launch.get("names", list(loaded))
            for n in names:
                if n not in loaded:
                    raise ConfigError(
                        f"{where}: {preset_path.name} has no spec {n!r}; it has {', '.join(loaded)}"
                    )
                specs.append(SpecPlan(n, loaded[n]))
            defaults = tomllib.loads(preset_path.read_text()).get("defaults", {})
        else:
            defaults = {}
            for n in launch.get("names", []):
                if launcher != "endpoint":
                    raise ConfigError(f"{where}: [launch] names without presets only label endpoint runs")
                specs.append(SpecPlan(n, None))
        defaults = {**defaults, **launch.get("defaults", {})}
        for n, table in launch.get("specs", {}).items():
            table = dict(table)
            base_url = table.pop("base_url", None)
            if launcher == "endpoint" and "model" not in table and "model" not in defaults:
                specs.append(SpecPlan(n, None, base_url))
                continue
            merged = {**defaults, **table, **overrides}
            merged.pop("name", None)
            specs.append(SpecPlan(n, LaunchSpec.from_dict(merged, name=n), base_url))
    except LaunchSpecError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if not specs:
        raise ConfigError(f"{where}: no launch specs ([launch] presets/names or [launch.specs.<name>])")
    if len({s.name for s in specs}) != len(specs):
        raise ConfigError(f"{where}: launch spec names must be unique")

    for sp in specs:
        if dev_mode and sp.spec is not None and sp.spec.engine == "vllm" and launcher != "endpoint":
            env = {**sp.spec.env_dict, DEV_MODE_ENV: "1"}
            sp.spec = replace(sp.spec, env=tuple(sorted(env.items())))
        if launcher == "endpoint":
            sp.base_url = sp.base_url or doc.get("base_url")
            if not sp.base_url:
                raise ConfigError(f"{where}: launcher 'endpoint' needs base_url (top level or per spec)")
        sp.rendered = render(sp, launcher)

    workloads = doc.get("workloads")
    if not workloads or not isinstance(workloads, dict):
        raise ConfigError(f"{where}: at least one [workloads.<name>] table is needed")
    arrivals = doc.get("arrivals", {})
    rates = _num_list(arrivals, "rates", where + " [arrivals]", [4.0])
    cvs = _num_list(arrivals, "cvs", where + " [arrivals]", [1.0])
    seeds = _num_list(doc, "seeds", where, [0])
    if any(not isinstance(s, int) for s in seeds):
        raise ConfigError(f"{where}: seeds must be integers")
    base_argv = option_argv(doc.get("run", {}), where + " [run]")
    bound: list[str] = []
    if "num_requests" in doc:
        bound += ["--num-requests", str(int(doc["num_requests"]))]
    if "duration" in doc:
        bound += ["--duration", str(float(doc["duration"]))]
    warmup = int(doc.get("warmup", 0))
    if warmup < 0:
        raise ConfigError(f"{where}: warmup must be >= 0")

    vary = [len(workloads) > 1, len(rates) > 1, len(cvs) > 1]
    cells: list[Cell] = []
    for sp in specs:
        for wname, wtable in workloads.items():
            if not isinstance(wtable, dict):
                raise ConfigError(f"{where}: [workloads.{wname}] must be a table of run options")
            wargv = option_argv(wtable, f"{where} [workloads.{wname}]")
            for rate in rates:
                for cv in cvs:
                    parts = [sp.name]
                    if vary[0]:
                        parts.append(wname)
                    if vary[1]:
                        parts.append(f"rate{_fmt_num(rate)}")
                    if vary[2]:
                        parts.append(f"cv{_fmt_num(cv)}")
                    config = "/".join(parts)
                    for seed in seeds:
                        cid = _safe(f"{sp.name}__{wname}__rate{_fmt_num(rate)}_cv{_fmt_num(cv)}__seed{seed}")
                        argv = [*base_argv, *wargv, *bound]
                        argv += ["--rate", _fmt_num(rate), "--cv", _fmt_num(cv), "--seed", str(seed)]
                        cells.append(
                            Cell(cid, sp.name, wname, float(rate), float(cv), int(seed), config, argv)
                        )
    for c in cells:
        cfg = build_run_config([*c.argv, "--base-url", "http://127.0.0.1:1"])
        # the size of every cell is chosen, not left to the CLI's default
        explicit = any(a.split("=", 1)[0] in ("-n", "--num-requests", "--duration") for a in c.argv)
        if not explicit and cfg.workload.kind != "dataset":
            raise ConfigError(
                f"{where}: cells must be bounded: set num_requests or duration (top level or [run])"
            )
    return Plan(
        path=path,
        name=str(doc.get("name", path.stem)),
        launcher=launcher,
        specs=specs,
        workloads=workloads,
        cells=cells,
        warmup=warmup,
        reset_prefix_cache=bool(doc.get("reset_prefix_cache", True)),
        vllm_dev_mode=dev_mode,
        startup_timeout_s=float(doc.get("startup_timeout_s", 300.0 if launcher == "local-cpu" else 1800.0)),
        output_dir=doc.get("output_dir"),
        doc=doc,
    )


def render(sp: SpecPlan, launcher: str) -> dict[str, Any]:
    """The command lines a spec runs as under ``launcher`` (what the manifest and ``--dry-run`` show)."""
    from server_launchers.engines import docker_command, endpoint, host_command, local_vllm_args

    if launcher == "endpoint" or sp.spec is None:
        return {"endpoint": sp.base_url}
    spec = sp.spec
    if launcher == "local-cpu":
        args = local_vllm_args(spec)
        env = " ".join(f"{k}={v}" for k, v in spec.env) + " " if spec.env else ""
        return {
            "local_vllm_args": args,
            "env": spec.env_dict,
            "command": env
            + "python -m vllm.entrypoints.openai.api_server --host 127.0.0.1 --port <free port> "
            "--model <tiny model dir> --served-model-name tiny-llama --enforce-eager " + shlex.join(args),
        }
    if launcher == "docker":
        r = docker_command(spec)
        return {"argv": r.argv, "command": r.shell(), "endpoint": endpoint(spec)}
    r = host_command(spec)
    return {
        "argv": r.argv,
        "env": r.env,
        "pass_env": list(r.pass_env),
        "command": r.shell(),
        "endpoint": endpoint(spec),
    }


# ------------------------------------------------------------------------------------------------ servers
def root_url(base_url: str) -> str:
    m = re.match(r"^(https?://[^/]+)", base_url)
    if not m:
        raise ConfigError(f"not an http URL: {base_url!r}")
    return m.group(1)


def wait_healthy(root: str, timeout_s: float, alive: Any = lambda: True) -> float:
    import httpx

    t0 = time.monotonic()
    with httpx.Client(timeout=5.0) as client:
        while True:
            for path in ("/health", "/v1/models"):
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(root + path).status_code == 200:
                        return time.monotonic() - t0
            if not alive():
                raise RuntimeError("the server exited before it became healthy")
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"{root} not healthy after {timeout_s:.0f} s")
            time.sleep(0.5)


class Server:
    """One launched (or adopted) server: ``start() -> root URL``, ``stop()``, ``info`` for the manifest."""

    def __init__(self, plan: Plan, sp: SpecPlan, log_dir: Path) -> None:
        self.plan, self.sp, self.log_dir = plan, sp, log_dir
        self.info: dict[str, Any] = {}
        self._local: Any = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._container: str | None = None

    def start(self) -> str:
        launcher, spec = self.plan.launcher, self.sp.spec
        timeout = self.plan.startup_timeout_s
        t0 = time.monotonic()
        if launcher == "endpoint":
            assert self.sp.base_url
            root = root_url(self.sp.base_url)
            wait_healthy(root, min(timeout, 30.0))
        elif launcher == "local-cpu":
            from server_launchers.engines import local_vllm_args
            from server_launchers.local_vllm import LocalVllmServer

            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._local = LocalVllmServer(
                local_vllm_args(spec),
                env=spec.env_dict,
                log_path=self.log_dir / f"{_safe(self.sp.name)}.log",
                startup_timeout_s=timeout,
            )
            try:
                self._local.start()
            finally:
                self.info["log"] = str(self._local.log_path)
            self.info["command"] = shlex.join(self._local.command())
            root = self._local.root_url
        elif launcher == "docker":
            from server_launchers.engines import container_name, docker_command, endpoint

            if shutil.which("docker") is None:
                raise RuntimeError("docker is not installed (launcher = 'docker')")
            rendered = docker_command(spec)
            self._container = container_name(spec)
            subprocess.run(["docker", "rm", "-f", self._container], capture_output=True, check=False)
            subprocess.run(rendered.argv, check=True, capture_output=True)
            self.info["container"] = self._container
            root = endpoint(spec)
            wait_healthy(root, timeout, self._container_alive)
        else:  # host
            from server_launchers.engines import endpoint, host_command

            rendered = host_command(spec)
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{_safe(self.sp.name)}.log"
            self.info["log"] = str(log_path)
            with open(log_path, "ab") as logf:
                self._proc = subprocess.Popen(
                    rendered.argv, env={**os.environ, **rendered.env}, stdin=subprocess.DEVNULL,
                    stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            root = endpoint(spec)
            proc = self._proc
            wait_healthy(root, timeout, lambda: proc.poll() is None)
        self.info["startup_s"] = round(time.monotonic() - t0, 2)
        self.info["root_url"] = root
        self.info["server_version"] = _server_version(root)
        return root

    def _container_alive(self) -> bool:
        out = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Running}}", str(self._container)],
            capture_output=True,
            text=True,
            check=False,
        )
        return out.stdout.strip() == "true"

    def stop(self) -> None:
        if self._local is not None:
            self._local.stop()
            self._local = None
        if self._proc is not None:
            from server_launchers.local_vllm import stop_process_group

            stop_process_group(self._proc.pid, 15.0, self._proc)
            self._proc = None
        if self._container is not None:
            subprocess.run(["docker", "rm", "-f", self._container], capture_output=True, check=False)
            self._container = None


def _server_version(root: str) -> str | None:
    import httpx

    with contextlib.suppress(httpx.HTTPError, ValueError):
        r = httpx.get(root + "/version", timeout=3.0)
        if r.status_code == 200:
            return str(r.json().get("version"))
    return None


def reset_prefix_cache(root: str, attempts: int = 5) -> str:
    """Empty the server's prefix cache; returns what happened, for the manifest.

    vLLM (0.32): ``POST /reset_prefix_cache`` (only served with VLLM_SERVER_DEV_MODE=1; answers
    ``{"success": false}`` while blocks are held, so it is retried). SGLang: ``POST /flush_cache``. TGI: none.
    """
    import httpx

    tried = []
    with httpx.Client(timeout=10.0) as client:
        for path in ("/reset_prefix_cache", "/flush_cache"):
            for i in range(attempts):
                try:
                    r = client.post(root + path)
                except httpx.HTTPError as exc:
                    return f"failed: POST {path}: {type(exc).__name__}"
                if r.status_code in (404, 405):
                    tried.append(path)
                    break
                if r.status_code != 200:
                    return f"failed: POST {path} answered {r.status_code}"
                ok = True
                with contextlib.suppress(ValueError):
                    body = r.json()
                    ok = not isinstance(body, dict) or bool(body.get("success", True))
                if ok:
                    return f"done (POST {path})"
                time.sleep(0.5 * (i + 1))
            else:
                return f"failed: POST {path} kept answering success=false (blocks still held)"
    return (
        f"unavailable: the server does not serve {' or '.join(tried)} (vLLM serves /reset_prefix_cache only "
        f"with {DEV_MODE_ENV}=1; TGI has no reset)"
    )


# ------------------------------------------------------------------------------------------------ running
def _versions(plan: Plan) -> dict[str, Any]:
    from loadgen import __version__

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
    if plan.launcher == "local-cpu":
        from server_launchers.local_vllm import VLLM_PACKAGE, VLLM_VERSION

        out["engine"] = f"{VLLM_PACKAGE} {VLLM_VERSION}"
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


def _mask_doc(doc: Any, secret_keys: frozenset[str]) -> Any:
    """The experiment file's tables with the values of secret options (api_key, header) masked."""
    if isinstance(doc, dict):
        return {
            k: "***" if str(k).replace("-", "_") in secret_keys else _mask_doc(v, secret_keys)
            for k, v in doc.items()
        }
    if isinstance(doc, list):
        return [_mask_doc(v, secret_keys) for v in doc]
    return doc


def run_experiment(
    plan: Plan, out_dir: Path, *, console: Any = None, install_signal_handlers: bool = True
) -> dict[str, Any]:
    """Run every cell of ``plan`` into ``out_dir``; returns the manifest (also written to manifest.json)."""
    from loadgen.options import SECRET_DESTS, mask_secrets
    from loadgen.run import run as run_once

    def say(msg: str) -> None:
        if console is not None:
            console.print(msg)
        log.info(re.sub(r"\[/?[a-z ]*\]", "", msg))

    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    manifest = Manifest(
        out_dir / "manifest.json",
        {
            "loadgen_experiment_version": 1,
            "name": plan.name,
            "file": str(plan.path),
            "file_sha256": hashlib.sha256(plan.path.read_bytes()).hexdigest(),
            "experiment": _mask_doc(plan.doc, SECRET_DESTS),
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
        },
    )
    manifest.write()
    cell_docs = {c["id"]: c for c in manifest.doc["cells"]}
    interrupted = False
    try:
        for sp in plan.specs:
            if interrupted:
                break
            cells = [c for c in plan.cells if c.spec == sp.name]
            sdoc = manifest.doc["specs"][sp.name]["server"]
            server = Server(plan, sp, out_dir / "logs")
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
                    cdoc = cell_docs[c.id]
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
                    if interrupted:
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
    plan: Plan, c: Cell, root: str, out_dir: Path, cdoc: dict[str, Any], run_once: Any, signals: bool
) -> Any:
    common = ["--base-url", root, "--no-live", "--quiet"]
    if plan.warmup:
        # its own seed: the measured run's prompts (and shared prefix) stay unseen by the server
        wargv = [a for a in c.argv]
        wargv += ["--seed", str(c.seed + 1_000_003), "--num-requests", str(plan.warmup), "--no-report"]
        wargv += [
            "--no-scrape",
            "--output-dir",
            str(out_dir / "warmup" / c.id),
            "--label",
            f"warmup-{c.config}",
        ]
        t0 = time.monotonic()
        wres = run_once(build_run_config([*wargv, *common]), console=None, install_signal_handlers=signals)
        ok = wres.summary["metrics"]["requests"]["ok"]
        cdoc["warmup"] = {"requests": plan.warmup, "ok": ok, "seconds": round(time.monotonic() - t0, 2)}
        if wres.interrupted:
            raise KeyboardInterrupt
    cdoc["prefix_cache_reset"] = reset_prefix_cache(root) if plan.reset_prefix_cache else "not asked"
    argv = [*c.argv, *common, "--output-dir", str(out_dir / c.id), "--label", c.config]
    cfg = build_run_config(argv)
    return run_once(cfg, console=None, install_signal_handlers=signals)


# ------------------------------------------------------------------------------------------------ CLI
def print_plan(plan: Plan, console: Any) -> None:
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
    from loadgen.options import mask_secrets

    for c in plan.cells:
        t.add_row(
            c.id,
            c.config,
            c.workload,
            _fmt_num(c.rate),
            _fmt_num(c.cv),
            str(c.seed),
            shlex.join(mask_secrets(c.argv)),
        )
    console.print(t)


def default_out_dir(plan: Plan) -> Path:
    if plan.output_dir:
        return Path(plan.output_dir)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return Path("results") / f"{stamp}-experiment-{_safe(plan.name)}"


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
    from loadgen.compare import _json_default, compare_runs, format_compare, write_html

    try:
        result = compare_runs([out_dir])
    except ConfigError as exc:
        if console is not None:
            console.print(f"[yellow]no comparison: {exc}[/]")
        return None
    (out_dir / "compare.json").write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
    try:
        write_html(result, out_dir / "compare.html")
    except Exception as exc:  # the HTML is a view; never lose the experiment over it
        log.warning("compare.html not written: %s", exc)
    if console is not None:
        format_compare(result, console)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
