#!/usr/bin/env bash
# Build llama.cpp's llama-server and write the tiny GGUF model before the e2e tier (idempotent, cached under
# $LOADGEN_CACHE_DIR, default ~/.cache/loadgen). Runs on any x86-64 or ARM CPU.
# From an empty cache: ~25 CPU-minutes of C++ build (13 min on an idle 2-core machine, 20-30 min on a busy one);
# with a warm cache: a second. Installs cmake/g++/make from Debian first if they are missing.
# Exits non-zero with the reason when it fails: the llama.cpp tier can run anywhere, so a failure is a real one.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
missing=()
for tool in cmake c++ make; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup_llamacpp: installing Debian's cmake g++ make (missing: ${missing[*]})"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake g++ make >/dev/null
fi
echo "setup_llamacpp: cache ${LOADGEN_CACHE_DIR:-$HOME/.cache/loadgen}"
start=$SECONDS
if ! "$py" -m server_launchers.local_llamacpp setup; then
    echo "setup_llamacpp: FAILED: llama-server or its model could not be set up (reason above)" >&2
    exit 1
fi
echo "setup_llamacpp: ready in $((SECONDS - start)) s"
