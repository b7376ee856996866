"""python -m server_launchers render|start|stop|status SPEC.toml [--name N] [--engine E] [--docker|--host|--local]

render  print the command (docker run by default; --host: bare command; --local: the local CPU launcher's args:
        LocalVllmServer for engine vllm, LocalLlamaCppServer for engine llamacpp)
start   start it, wait until GET /health answers 200, print the endpoint (detached; state kept on disk)
stop    stop what ``start`` started (docker rm -f / SIGTERM the process group)
status  health and served models of the endpoint

GPU selection: --gpus 0,1 > LOADGEN_GPUS > CUDA_VISIBLE_DEVICES > the spec's ``gpus``.
Setup problems print one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from server_launchers.engines import (
    HEALTH_PATH,
    MODELS_PATH,
    container_name,
    docker_command,
    endpoint,
    engine_args,
    host_command,
    local_llamacpp_args,
    local_vllm_args,
)
from server_launchers.lifecycle import Server, cache_dir, http, http_json
from server_launchers.local_server import plain
from server_launchers.spec import ENGINES, LaunchSpec, LaunchSpecError, load_spec


def state_dir() -> Path:
    """Where ``start`` leaves what ``stop`` needs: ``$LOADGEN_CACHE_DIR/launchers`` (default ~/.cache/loadgen)."""
    return cache_dir() / "launchers"


def resolve_spec(ns: argparse.Namespace, environ: dict[str, str] | None = None) -> LaunchSpec:
    """The spec from the file with CLI and environment overrides applied (CLI > LOADGEN_* env > file)."""
    environ = dict(os.environ if environ is None else environ)
    overrides: dict = {}
    gpus = ns.gpus or environ.get("LOADGEN_GPUS") or environ.get("CUDA_VISIBLE_DEVICES")
    if gpus:
        overrides["gpus"] = gpus
    if ns.port is not None:
        overrides["port"] = ns.port
    spec = load_spec(ns.spec, ns.name, overrides=overrides)
    engine = ns.engine or environ.get("LOADGEN_ENGINE")
    if engine:
        spec = spec.with_engine(engine)  # resets image/tag to that engine's: tag overrides come after
    tag = ns.image_tag or environ.get(f"LOADGEN_{spec.engine.upper()}_IMAGE_TAG")
    if tag:
        spec = replace(spec, image_tag=tag)
        spec.validate()
    return spec


def _state_path(spec: LaunchSpec) -> Path:
    return state_dir() / f"{container_name(spec)}.json"


def cmd_render(spec: LaunchSpec, mode: str, args_only: bool = False) -> int:
    if args_only:  # the engine flags alone, e.g. for docker/compose.*.yaml's ENGINE_ARGS
        print(shlex.join(engine_args(spec)))
    elif mode == "local":
        print(shlex.join(_local_args(spec)))
    elif mode == "host":
        print(host_command(spec).shell())
    else:
        print(docker_command(spec).shell())
    return 0


def _local_args(spec: LaunchSpec) -> list[str]:
    return local_llamacpp_args(spec) if spec.engine == "llamacpp" else local_vllm_args(spec)


def cmd_start(spec: LaunchSpec, mode: str, timeout_s: float) -> int:
    log_path = state_dir() / f"{container_name(spec)}.log" if mode == "host" else None
    server = Server(
        spec, mode, log_path=log_path, timeout_s=timeout_s, port=spec.port if mode == "local" else None
    )
    try:
        server.start(detach=True)
    finally:
        # written even when it never became healthy, so that `stop` still finds it
        state = server.state()
        if "pgid" in state or "container" in state:
            _state_path(spec).parent.mkdir(parents=True, exist_ok=True)
            _state_path(spec).write_text(json.dumps(state))
    print(state["endpoint"])
    return 0


def cmd_stop(spec: LaunchSpec) -> int:
    path = _state_path(spec)
    if not path.exists():
        print(f"nothing started for {container_name(spec)}", file=sys.stderr)
        return 0
    Server.from_state(spec, json.loads(path.read_text())).stop()
    path.unlink()
    return 0


def cmd_status(spec: LaunchSpec) -> int:
    path = _state_path(spec)
    url = json.loads(path.read_text())["endpoint"] if path.exists() else endpoint(spec)
    try:
        health = http(url + HEALTH_PATH)[0]
        _, models = http_json(url + MODELS_PATH)
    except OSError as exc:
        print(f"{url}: down ({type(exc).__name__})")
        return 1
    data = models.get("data", []) if isinstance(models, dict) else []
    ids = [m["id"] for m in data if isinstance(m, dict) and "id" in m]
    print(f"{url}: health {health}; models {', '.join(ids) or '-'}")
    return 0 if health == 200 else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        allow_abbrev=False, prog="python -m server_launchers", description=plain(__doc__.split("\n\n")[0])
    )
    p.add_argument(
        "command",
        choices=("render", "start", "stop", "status"),
        help="render the command, start and wait for /health, stop what start started, or check status",
    )
    p.add_argument("spec", help="launch spec TOML (one spec, or a preset file with [specs.<name>])")
    p.add_argument("--name", help="which spec of a preset file")
    p.add_argument("--engine", choices=ENGINES, help="render/run the spec on another engine")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--docker", dest="mode", action="store_const", const="docker", help="official image (default)"
    )
    mode.add_argument(
        "--host", dest="mode", action="store_const", const="host", help="engine installed on this host"
    )
    mode.add_argument(
        "--local",
        dest="mode",
        action="store_const",
        const="local",
        help="local CPU engine with a tiny model (vLLM, or llama.cpp with --engine llamacpp)",
    )
    p.add_argument("--gpus", help="device ids, e.g. 0,1 (else LOADGEN_GPUS, CUDA_VISIBLE_DEVICES, the spec)")
    p.add_argument("--port", type=int, help="host port")
    p.add_argument("--image-tag", help="override the pinned image tag")
    p.add_argument("--args-only", action="store_true", help="render: only the engine flags (for ENGINE_ARGS)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for /health (default 1800)")
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    mode = ns.mode or os.environ.get("LOADGEN_LAUNCH_MODE", "docker")
    try:
        spec = resolve_spec(ns)
        if ns.command == "render":
            return cmd_render(spec, mode, ns.args_only)
        if ns.command == "start":
            return cmd_start(spec, mode, ns.timeout)
        if ns.command == "stop":
            return cmd_stop(spec)
        return cmd_status(spec)
    except (LaunchSpecError, TimeoutError, RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        print(f"server_launchers: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
