#!/usr/bin/env bash
# GPU check of the compiled deformable-attention op, for one GPU machine (target: < 8 min on one H100).
#   1. builds the op with the CUDA kernels (JIT, ninja) for the visible card's architecture;
#   2. runs the gpu-marked tests and the CPU op tests;
#   3. runs scripts/bench_ops.py --device cuda (fp32 + bf16, fallback vs compiled, bandwidth) with the
#      training-step comparison of the paper config;
#   4. (unless GPU_CHECK_INFERENCE=0) runs scripts/bench_inference.py --device cuda (THUMOS14 and ActivityNet models, fp32 + bf16,
#      fallback + compiled op, batch 1/16/64, the whole THUMOS14 test set).
# Writes everything under $OUT when set (the device tool's convention), else under ./gpu_check_out.
# Usage: bash scripts/gpu_check.sh        (PYTHON=... to pick the interpreter; default: python3)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT_DIR"
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
export TP2DETR_OPS_CACHE="${TP2DETR_OPS_CACHE:-/tmp/tp2detr-ops-cache}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0
step() { echo "== $1 ($(date +%T))" | tee -a "$OUT_DIR/summary.txt"; }

step "environment"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  nvcc --version | tail -1; } 2>&1 | tee "$OUT_DIR/environment.txt"

step "build (cpu + cuda kernels)"
if ! timeout 240 "$PY" -m tp2detr.ops build > "$OUT_DIR/build.log" 2>&1; then
  echo "BUILD FAILED, see build.log" | tee -a "$OUT_DIR/summary.txt"; tail -40 "$OUT_DIR/build.log"; exit 1
fi
tail -1 "$OUT_DIR/build.log" | tee -a "$OUT_DIR/summary.txt"

step "gpu tests + cpu op tests"
timeout 120 "$PY" -m pytest -q -p no:cacheprovider -m "gpu or not slow" tests/ops/test_ops_gpu.py tests/ops/test_ops.py \
  > "$OUT_DIR/tests.log" 2>&1 || status=1
tail -3 "$OUT_DIR/tests.log" | tee -a "$OUT_DIR/summary.txt"

step "benchmark (cuda) + training step"
timeout 150 "$PY" scripts/bench_ops.py --device cuda --repeats 50 --train-steps 5 --profile \
  --out "$OUT_DIR/ops_gpu.json" > "$OUT_DIR/bench.log" 2>&1 || status=1
cat "$OUT_DIR/bench.log" | tee -a "$OUT_DIR/summary.txt"
step "benchmark (cuda), sampling locations uniform over the levels"
timeout 100 "$PY" scripts/bench_ops.py --device cuda --repeats 50 --train-steps 0 --locations uniform \
  --out "$OUT_DIR/ops_gpu_uniform.json" > "$OUT_DIR/bench_uniform.log" 2>&1 || status=1
tail -14 "$OUT_DIR/bench_uniform.log" | tee -a "$OUT_DIR/summary.txt"

if [ "${GPU_CHECK_INFERENCE:-1}" = "1" ]; then
step "inference speed (cuda, fp32 + bf16, fallback + compiled op)"
timeout 180 "$PY" scripts/bench_inference.py --device cuda --precisions fp32 bf16 --backends pytorch cuda \
  --repeats 20 --out "$OUT_DIR/inference_gpu.json" > "$OUT_DIR/inference.log" 2>&1 || status=1
tail -12 "$OUT_DIR/inference.log" | tee -a "$OUT_DIR/summary.txt"
fi

step "done (status $status)"
exit $status
