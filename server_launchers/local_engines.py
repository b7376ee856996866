"""The real CPU engines a launch spec's ``local`` mode starts, by engine: a plain table, read by whoever makes a
``lifecycle.Server`` (``python -m server_launchers``, loadgen's experiments).

``lifecycle`` knows a local server only through what ``local_server.LocalServer`` offers (start, pgid, command,
root_url, log_path, stop); the engines' modules build on ``lifecycle``'s helpers, so the imports run one way:
``local_engines`` -> ``local_llamacpp`` / ``local_vllm`` -> ``local_server`` -> ``lifecycle``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from server_launchers.engines import local_llamacpp_args, local_vllm_args
from server_launchers.local_llamacpp import LocalLlamaCppServer, local_model
from server_launchers.local_server import LocalServer
from server_launchers.local_vllm import LocalVllmServer

__all__ = ["LOCAL_ENGINES", "local_args", "local_server"]

# engine -> (the server class, the engine's command-line arguments from a spec)
LOCAL_ENGINES: dict[str, tuple[type[LocalServer], Any]] = {
    "llamacpp": (LocalLlamaCppServer, local_llamacpp_args),
    "vllm": (LocalVllmServer, local_vllm_args),
}


def local_args(spec: Any) -> list[str]:
    """The arguments the local engine of ``spec`` starts with (vLLM's for every engine but llama.cpp)."""
    return LOCAL_ENGINES.get(spec.engine, LOCAL_ENGINES["vllm"])[1](spec)


def local_server(
    spec: Any, *, port: int | None, log_path: Path | None, startup_timeout_s: float
) -> LocalServer:
    """The local server of ``spec``, not started: llama.cpp with its model (the CUDA build on the spec's gpus),
    else vLLM on CPU."""
    cls, args = LOCAL_ENGINES.get(spec.engine, LOCAL_ENGINES["vllm"])
    env: dict[str, str | None] = dict(spec.env_dict)
    own: dict[str, Any] = {}
    if spec.engine == "llamacpp":
        own = local_model(spec)
        if spec.gpus:  # the CUDA build on these GPUs
            own["gpu"] = True
            env.setdefault("CUDA_VISIBLE_DEVICES", ",".join(map(str, spec.gpus)))
    return cls(args(spec), port=port, env=env, log_path=log_path, startup_timeout_s=startup_timeout_s, **own)
