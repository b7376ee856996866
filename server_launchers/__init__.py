"""Start and stop inference engines for loadgen to measure.

``local_vllm`` runs a real CPU vLLM (its own virtualenv, a tiny random-weight model) on loopback and
``local_llamacpp`` llama.cpp's llama-server (built from source, a tiny GGUF model); both are a
``local_server.LocalServer`` and need only the standard library on loadgen's side. ``lifecycle`` starts any
launch spec (docker, host, local) and stops it. Public names are listed here once and imported lazily, so
``python -m server_launchers.local_vllm`` does not import its own module twice.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "EngineUnavailable": "server_launchers.lifecycle",
    "LauncherError": "server_launchers.lifecycle",
    "LocalLlamaCppServer": "server_launchers.local_llamacpp",
    "LocalServer": "server_launchers.local_server",
    "Server": "server_launchers.lifecycle",
    "LocalVllmError": "server_launchers.local_vllm",
    "LocalVllmServer": "server_launchers.local_vllm",
    "LocalVllmUnavailable": "server_launchers.local_vllm",
    "ServerStartError": "server_launchers.lifecycle",
    "ensure_tiny_model": "server_launchers.local_vllm",
    "ensure_venv": "server_launchers.local_vllm",
    "read_model_info": "server_launchers.local_vllm",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'server_launchers' has no attribute {name!r}")
