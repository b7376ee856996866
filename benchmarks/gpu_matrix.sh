#!/usr/bin/env bash
# The study's matrix on a local NVIDIA GPU with llama.cpp built for it by the project's launcher.
#   bash benchmarks/gpu_matrix.sh OUT_DIR [EXPERIMENT.toml ...]   (default: both workloads/experiments/gpu-*.toml)
# Needs: CUDA's toolkit (nvcc with cuBLAS), cmake (+ ninja), a C++ compiler, python3 with loadgen's dependencies and
# `gguf` (pip install gguf==0.19.0; without it the launcher makes a small virtualenv with it, which needs network).
# Offline: LOADGEN_LLAMACPP_SOURCE=<llama.cpp tree or archive> (python -m server_launchers.llamacpp_cuda pack ...).
# Writes OUT_DIR/machine.txt, OUT_DIR/setup.log, OUT_DIR/results/<experiment folders>. Bounded: each cell has its
# request count and timeout; the servers listen on 127.0.0.1 only.
set -uo pipefail
out=${1:?usage: gpu_matrix.sh OUT_DIR [EXPERIMENT.toml ...]}
shift
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
exps=("$@")
[ ${#exps[@]} -gt 0 ] || exps=("$here/workloads/experiments/gpu-workloads.toml" "$here/workloads/experiments/gpu-optimisations.toml")
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$out/results"
{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(cat "$here/COMMIT" 2>/dev/null || git -C "$here" rev-parse HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap,clocks.max.sm,power.limit --format=csv
  nvcc --version | tail -2
  python3 --version
  echo "cpus: $(nproc)"
} > "$out/machine.txt" 2>&1
cat "$out/machine.txt"
t0=$SECONDS
python3 -m server_launchers.local_llamacpp setup --cuda --model llama-1b 2>&1 | tee "$out/setup.log" || exit 1
echo "setup (build + model) took $((SECONDS - t0)) s"
cat "${LOADGEN_CACHE_DIR:-$HOME/.cache/loadgen}"/llama.cpp-*-cuda-sm*/build.json 2>/dev/null | tee -a "$out/setup.log"
for e in "${exps[@]}"; do
  echo "== experiment $e"
  python3 -m loadgen experiment "$e" --output-dir "$out/results/$(basename "$e" .toml)" || echo "experiment $e exited $?"
done
