#!/usr/bin/env bash
# Start/stop an engine for loadgen from a launch spec:
#   ./server_launchers/launch.sh ENGINE render|start|stop|status SPEC.toml [--name N] [--docker|--host|--local]
#   ENGINE: vllm | sglang | tgi | llamacpp; start waits until healthy and prints the endpoint
#   GPUs: --gpus 0,1 > LOADGEN_GPUS > CUDA_VISIBLE_DEVICES; mode: --docker (default) | --host, or LOADGEN_LAUNCH_MODE
#   PYTHON picks the interpreter (default python3). Everything after SPEC goes to python -m server_launchers.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 vllm|sglang|tgi|llamacpp render|start|stop|status SPEC.toml [--name N] [--docker|--host] [--gpus 0,1] [--port P]" >&2
  exit 2
fi
engine=$1; cmd=$2; spec=$3; shift 3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
exec env PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" "${PYTHON:-python3}" -m server_launchers "$cmd" "$spec" --engine "$engine" "$@"
