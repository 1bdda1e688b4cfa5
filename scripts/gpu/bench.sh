#!/usr/bin/env bash
# GPU benchmark of the training engine (issue 2): DP and plain step times on
# the Llama-3.2-1B shape and on the smaller h1024 shape, via GoMLX's XLA
# backend. Build the binary where it will run (x86-64) with cgo:
#
#   go build -tags xla -o tensafe-xla ./cmd/tensafe
#
# and run this script on a machine with an NVIDIA GPU whose python has JAX's
# CUDA plugin (see docs/ARCHITECTURE.md and the GoMLX notes). Output: JSON
# reports in ${OUT:-./reports/gpu}.
set -euo pipefail
bin="${TENSAFE_BIN:-./tensafe-xla}"
out="${OUT:-./reports/gpu}"
mkdir -p "$out"

# PJRT CUDA plugin from JAX, linked under the name GoMLX looks for, next to
# the real file (its $ORIGIN RPATH resolves from the link's folder).
plugin=$(python3 -c 'import jax_plugins.xla_cuda12 as p, os; print(os.path.dirname(p.__file__))' 2>/dev/null || true)
if [ -z "$plugin" ]; then echo "bench.sh: JAX's CUDA plugin not found" >&2; exit 1; fi
ln -sf "$plugin/xla_cuda_plugin.so" "$plugin/pjrt_c_api_cuda_plugin.so"
export PJRT_PLUGIN_LIBRARY_PATH="$plugin"
export GOMLX_NO_AUTO_INSTALL=1
export XLA_FLAGS="--xla_gpu_cuda_data_dir=/usr/local/cuda"
export GOMLX_BACKEND="xla:cuda"

nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
# Llama-3.2-1B shape: hidden 2048, 16 layers, 32 heads, 8 KV heads, FFN 8192,
# vocab 128256; B=8, T=512; LoRA r=16 on q,k,v,o. (Weights are f32 in
# compute; the reference figures used a bf16 base.)
"$bin" bench engine --shape llama-1b --batch 8 --seq 512 --lora-rank 16 --steps 10 --json | tee "$out/llama-1b.json"
# Smaller shape: hidden 1024, 8 layers, 16 heads, FFN 2816, vocab 32000,
# untied; B=16, T=256; r=16 on q,k,v,o.
"$bin" bench engine --shape small --batch 16 --seq 256 --lora-rank 16 --steps 10 --json | tee "$out/small.json"
