"""An experiment file read into its matrix: launch specs × workloads × (rate, cv) × seeds, one cell per run.

Every cell's ``RunConfig`` is built here, before any server starts, so a bad option fails at once: a workload's
options (its table over ``[run]``, with the experiment's bounds) are resolved as the CLI resolves flags
(``loadgen.options``), and the cells of that workload are variants of that one config
(``dataclasses.replace``: rate, cv, seed). Where the server is is known only when it runs
(``RunConfig.at``); ``Cell.argv`` is the cell written as a command line, for the manifest and ``--dry-run``.
The file's format is in ``loadgen.commands.experiment``.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loadgen.config import RunConfig
from loadgen.errors import ConfigError
from loadgen.options import (
    bounded,
    build_config,
    merge_options,
    resolve_options,
    table_options,
)

__all__ = [
    "Cell",
    "ExperimentPlan",
    "LAUNCHER_MODE",
    "REPO_ROOT",
    "SpecPlan",
    "cell_options",
    "fmt_num",
    "load_plan",
    "option_argv",
    "render",
    "safe_name",
]

LAUNCHERS = ("local", "local-cpu", "docker", "host", "endpoint")
# the project's own launchers (server_launchers.local_*): "local-cpu" is the older name of "local", which runs a
# llama.cpp spec that names gpus on them with the CUDA build
LOCAL_LAUNCHERS = ("local", "local-cpu")
# each launcher's mode of server_launchers.lifecycle.Server
LAUNCHER_MODE = {
    "local": "local",
    "local-cpu": "local",
    "docker": "docker",
    "host": "host",
    "endpoint": "endpoint",
}
TOP_KEYS = {
    "name", "description", "launcher", "seeds", "num_requests", "duration", "warmup", "reset_prefix_cache",
    "vllm_dev_mode", "base_url", "startup_timeout_s", "output_dir", "launch", "arrivals", "run", "workloads",
}  # fmt: skip
LAUNCH_KEYS = {"presets", "names", "overrides", "specs", "defaults"}
# options the experiment sets per cell; a workload or [run] table must not
CELL_OPTIONS = {"rate", "cv", "seed", "output_dir", "label", "base_url", "warmup", "config"}
REPO_ROOT = Path(__file__).resolve().parent.parent
DEV_MODE_ENV = "VLLM_SERVER_DEV_MODE"


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
    config: str  # the configuration's name in comparisons: spec[/workload][/rate][/cv]
    argv: list[
        str
    ]  # the cell as run options on a command line (manifest, --dry-run); the run uses run_config
    run_config: RunConfig  # everything but where the server is and where results go (set when it runs)


@dataclass
class ExperimentPlan:
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


def cell_options(table: dict[str, Any], where: str) -> dict[str, Any]:
    """A ``[run]`` or workload table as options (CLI long names, ``_`` or ``-``), checked."""
    opts = table_options(table, where)
    for key in table:
        if key.replace("-", "_") in CELL_OPTIONS:
            raise ConfigError(f"{where}: {key!r} is set by the experiment per cell (arrivals, seeds, warmup)")
    return opts


def option_argv(table: dict[str, Any]) -> list[str]:
    """A (checked) table of run options as command-line arguments: how the manifest shows a cell."""
    argv: list[str] = []
    for key, value in table.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            if value:
                argv.append(flag)
        elif isinstance(value, list):
            for item in value:
                argv += [flag, str(item)]
        elif isinstance(value, dict):
            argv += [flag, json.dumps(value)]
        else:
            argv += [flag, str(value)]
    return argv


def fmt_num(x: float) -> str:
    """Short (4, not 4.0) but never rounded: 6 significant digits would merge nearby rates into one cell."""
    g = f"{x:g}"
    return g if float(g) == x else repr(x)


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def _workload_configs(
    where: str,
    workloads: dict[str, Any],
    run_table: dict[str, Any],
    run_opts: dict[str, Any],
    bound: dict[str, Any],
) -> dict[str, tuple[RunConfig, list[str]]]:
    """One RunConfig per workload, checked now (its cells vary rate, cv and seed), with the options as argv."""
    configs: dict[str, tuple[RunConfig, list[str]]] = {}
    for wname, wtable in workloads.items():
        if not isinstance(wtable, dict):
            raise ConfigError(f"{where}: [workloads.{wname}] must be a table of run options")
        opts = resolve_options(
            merge_options(run_opts, cell_options(wtable, f"{where} [workloads.{wname}]"), bound)
        )
        cfg = build_config(opts)
        # the size of every cell is chosen, not left to the CLI's default
        if not bounded(opts) and cfg.workload.kind != "dataset":
            raise ConfigError(
                f"{where}: cells must be bounded: set num_requests or duration (top level or [run])"
            )
        bound_argv = [a for k, v in bound.items() for a in ("--" + k.replace("_", "-"), str(v))]
        configs[wname] = (cfg, [*option_argv(run_table), *option_argv(wtable), *bound_argv])

    return configs


def _cells(
    specs: list[SpecPlan],
    configs: dict[str, tuple[RunConfig, list[str]]],
    rates: list[float],
    cvs: list[float],
    seeds: list[Any],
) -> list[Cell]:
    """Every cell: spec x workload x rate x cv x seed; a configuration's name says only what varies."""
    vary = [len(configs) > 1, len(rates) > 1, len(cvs) > 1]
    cells: list[Cell] = []
    for sp in specs:
        for wname, (cfg, wargv) in configs.items():
            for rate in rates:
                for cv in cvs:
                    parts = [sp.name]
                    if vary[0]:
                        parts.append(wname)
                    if vary[1]:
                        parts.append(f"rate{fmt_num(rate)}")
                    if vary[2]:
                        parts.append(f"cv{fmt_num(cv)}")
                    config = "/".join(parts)
                    arrivals_cfg = replace(
                        cfg, schedule=replace(cfg.schedule, rate=float(rate), cv=float(cv))
                    )
                    for seed in seeds:
                        cid = safe_name(
                            f"{sp.name}__{wname}__rate{fmt_num(rate)}_cv{fmt_num(cv)}__seed{seed}"
                        )
                        argv = [*wargv, "--rate", fmt_num(rate), "--cv", fmt_num(cv), "--seed", str(seed)]
                        cells.append(
                            Cell(
                                cid,
                                sp.name,
                                wname,
                                float(rate),
                                float(cv),
                                int(seed),
                                config,
                                argv,
                                arrivals_cfg.with_seed(int(seed)),
                            )  # fmt: skip
                        )
    return cells


def load_plan(path: str | Path) -> ExperimentPlan:
    """Read and validate an experiment file; every cell's RunConfig is built once here, so a bad option fails
    before any server starts."""
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
    dev_mode = bool(doc.get("vllm_dev_mode", launcher in LOCAL_LAUNCHERS))
    specs = _load_specs(doc, path, launcher, dev_mode)

    workloads = doc.get("workloads")
    if not workloads or not isinstance(workloads, dict):
        raise ConfigError(f"{where}: at least one [workloads.<name>] table is needed")
    arrivals = doc.get("arrivals", {})
    rates = _num_list(arrivals, "rates", where + " [arrivals]", [4.0])
    cvs = _num_list(arrivals, "cvs", where + " [arrivals]", [1.0])
    seeds = _num_list(doc, "seeds", where, [0])
    if any(not isinstance(s, int) for s in seeds):
        raise ConfigError(f"{where}: seeds must be integers")
    run_table = doc.get("run", {})
    run_opts = cell_options(run_table, where + " [run]")
    bound: dict[str, Any] = {}
    if "num_requests" in doc:
        bound["num_requests"] = int(doc["num_requests"])
    if "duration" in doc:
        bound["duration"] = float(doc["duration"])
    warmup = int(doc.get("warmup", 0))
    if warmup < 0:
        raise ConfigError(f"{where}: warmup must be >= 0")

    configs = _workload_configs(where, workloads, run_table, run_opts, bound)

    cells = _cells(specs, configs, rates, cvs, seeds)
    return ExperimentPlan(
        path=path,
        name=str(doc.get("name", path.stem)),
        launcher=launcher,
        specs=specs,
        workloads=workloads,
        cells=cells,
        warmup=warmup,
        reset_prefix_cache=bool(doc.get("reset_prefix_cache", True)),
        vllm_dev_mode=dev_mode,
        startup_timeout_s=float(
            doc.get("startup_timeout_s", 300.0 if launcher in LOCAL_LAUNCHERS else 1800.0)
        ),
        output_dir=doc.get("output_dir"),
        doc=doc,
    )


def _load_specs(doc: dict[str, Any], path: Path, launcher: str, dev_mode: bool) -> list[SpecPlan]:
    """The ``[launch]`` table: preset specs, inline specs, or endpoint labels; each rendered for ``launcher``."""
    from server_launchers.spec import LaunchSpec, LaunchSpecError, load_specs

    where = str(path)
    launch = doc.get("launch", {})
    unknown = sorted(set(launch) - LAUNCH_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown [launch] key(s) {', '.join(unknown)}")
    overrides = dict(launch.get("overrides", {}))
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
    return specs


def render(sp: SpecPlan, launcher: str) -> dict[str, Any]:
    """The command lines a spec runs as under ``launcher`` (what the manifest and ``--dry-run`` show)."""
    from server_launchers.engines import docker_command, endpoint, host_command, local_vllm_args

    if launcher == "endpoint" or sp.spec is None:
        return {"endpoint": sp.base_url}
    spec = sp.spec
    if launcher in LOCAL_LAUNCHERS and spec.engine == "llamacpp":
        from server_launchers.engines import local_llamacpp_args
        from server_launchers.local_llamacpp import shown_command

        return {
            "local_llamacpp_args": local_llamacpp_args(spec),
            "env": spec.env_dict,
            "command": shown_command(spec),  # the CUDA build when the spec names gpus
        }
    if launcher in LOCAL_LAUNCHERS:
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
