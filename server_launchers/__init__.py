"""Start and stop inference engines for loadgen to measure.

``local_vllm`` runs a real CPU vLLM (its own virtualenv, a tiny random-weight model) on loopback; it
needs only the standard library on loadgen's side. Public names are listed here once and imported
lazily, so ``python -m server_launchers.local_vllm`` does not import its own module twice.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "LocalVllmError": "server_launchers.local_vllm",
    "LocalVllmServer": "server_launchers.local_vllm",
    "LocalVllmUnavailable": "server_launchers.local_vllm",
    "ServerStartError": "server_launchers.local_vllm",
    "ensure_tiny_model": "server_launchers.local_vllm",
    "ensure_venv": "server_launchers.local_vllm",
    "read_model_info": "server_launchers.local_vllm",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'server_launchers' has no attribute {name!r}")
