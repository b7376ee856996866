#!/usr/bin/env bash
# Start/stop sglang for loadgen from a launch spec: ./server_launchers/sglang.sh start SPEC.toml [--name N] [--host]
#   commands: render | start (waits until healthy, prints the endpoint) | stop | status
#   GPUs: LOADGEN_GPUS=0,1 (or CUDA_VISIBLE_DEVICES); mode: --docker (default) | --host, or LOADGEN_LAUNCH_MODE
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 render|start|stop|status SPEC.toml [--name N] [--docker|--host] [--gpus 0,1] [--port P]" >&2
  exit 2
fi
cmd=$1; spec=$2; shift 2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
exec env PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" "${PYTHON:-python3}" -m server_launchers "$cmd" "$spec" --engine sglang "$@"
