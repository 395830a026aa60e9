#!/usr/bin/env bash
# GPU training throughput check (issue 15), one run of ~8 minutes on the device machine.
#
#   bash benchmarks/gpu_check.sh                 # GPU machine: KERAS_BACKEND=jax, 60 steps, batch 256
#   GPU_CHECK_CPU=1 bash benchmarks/gpu_check.sh # CPU smoke test: 3 steps, batch 4, 32x32, eager (tested here)
#
# 1. installs what the machine lacks from wheels carried along (benchmarks/wheels/*.whl or
#    $WHEELS, pip --no-index: the device machine has no network), then this repository (-e, no deps);
# 2. runs benchmarks/gpu_check.py: DenseNet121, MobileNetV2 (224x224x3) and the cnn1d spike
#    model trained for a fixed number of steps on a consolidated float16 synthetic dataset,
#    mixed precision + XLA only where a GPU is visible;
# 3. writes the JSON to $OUT/gpu.json when $OUT is set (the device tool's output folder), else
#    benchmarks/results/gpu.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python
WHEELS=${WHEELS:-benchmarks/wheels}
if [ -d "$WHEELS" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" "$WHEELS"/*.whl
fi
"$PY" -c "import ephys" 2>/dev/null || "$PY" -m pip install --quiet --no-deps --no-build-isolation -e .
OUTFILE=${OUT:+$OUT/gpu.json}
OUTFILE=${OUTFILE:-benchmarks/results/gpu.json}
if [ "${GPU_CHECK_CPU:-0}" = "1" ]; then
  export CUDA_VISIBLE_DEVICES="" EPHYS_MIXED_PRECISION=0
  ARGS=(--steps 3 --warmup 1 --batch-size 4 --size 32 --eager)
else
  export KERAS_BACKEND=${KERAS_BACKEND:-jax}
  export XLA_PYTHON_CLIENT_PREALLOCATE=false
  ARGS=(--steps "${STEPS:-60}" --warmup "${WARMUP:-10}" --batch-size "${BATCH:-256}" --size 224)
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
timeout "${GPU_CHECK_TIMEOUT:-480}" "$PY" benchmarks/gpu_check.py "${ARGS[@]}" --out "$OUTFILE"
echo "wrote $OUTFILE"
