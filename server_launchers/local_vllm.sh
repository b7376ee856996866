#!/usr/bin/env bash
# Start/stop a local CPU vLLM serving the tiny test model on 127.0.0.1.
#
#   server_launchers/local_vllm.sh setup                       # create venv + tiny model (idempotent)
#   server_launchers/local_vllm.sh start [--name N] [--port P] -- --reasoning-parser deepseek_r1
#                                                              # waits until healthy, prints http://127.0.0.1:P/v1
#   server_launchers/local_vllm.sh status [--name N]
#   server_launchers/local_vllm.sh stop [--name N]
#
# PYTHON picks loadgen's interpreter (default python3); LOADGEN_CACHE_DIR moves the cache.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
exec "${PYTHON:-python3}" -m server_launchers.local_vllm "$@"
