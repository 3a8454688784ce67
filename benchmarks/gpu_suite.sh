#!/usr/bin/env bash
# Every GPU check and benchmark in one prepared script (issue 8: one run, under 10 minutes).
#
#   bash benchmarks/gpu_suite.sh [DATA_DIR] [OUT]
#
# DATA_DIR holds medmnist/{breastmnist,pneumoniamnist}.npz (default ../shared/data); OUT gets
# docs/benchmarks.md with the new sections, the logs and the fraction study's report. Each step
# has its own time limit, so one failure or overrun does not lose the others.
set -u
DATA=${1:-../shared/data}
OUT=${2:-${OUT:-/tmp/medgan-gpu}}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MEDGAN_DATA_DIR=$DATA MEDGAN_CACHE_DIR=${MEDGAN_CACHE_DIR:-/tmp/medgan-cache}
START=$(date +%s)
step() {  # step NAME SECONDS CMD...
  local name=$1 limit=$2; shift 2
  echo "=== $name ($(($(date +%s) - START)) s in, limit $limit s)"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "rc=$? $(tail -n 3 "$OUT/$name.log" | tr '\n' ' ' | cut -c1-300)"
}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"
python3 -c "import torch, monai; print('torch', torch.__version__, 'monai', monai.__version__, torch.cuda.get_device_name(0))"
cp docs/benchmarks.md /tmp/benchmarks.before.md
# first: the CUDA test set (tests/test_gpu.py, marker gpu: bf16, channels-last, fused Adam, CPU vs CUDA
# noise and generation); -rs lists any skip, e.g. when torch sees no CUDA device
step pytest_gpu 120 python3 -m pytest -q -p no:cacheprovider -rs -m gpu tests/test_gpu.py
step pytest_cuda 90 python3 -m pytest -q -p no:cacheprovider -m "not integration and not slow" tests/synthesis tests/training tests/test_generate.py
step cgan_vs_gantrainer 100 python3 -m benchmarks.cgan_vs_gantrainer --data-dir "$DATA" --size 28 64 --repeats 5 --steps 50
step gpu_cgan 150 python3 -m benchmarks.gpu_cgan --data-dir "$DATA" --steps 300 --n-gen 100000 --repeats 5
step train_cyclegan 100 python3 -m benchmarks.train_cyclegan --repeats 5 --sizes 64 256
step diffusion_speed 120 python3 -m benchmarks.diffusion_speed --data-dir "$DATA" --device cuda --n 4096 --repeats 3
step inception 90 python3 -m benchmarks.inception_features --data-dir "$DATA" --n 2048 --repeats 5 --batch 64
cp docs/benchmarks.md "$OUT/benchmarks.md"
LEFT=$((560 - ($(date +%s) - START)))
if [ "$LEFT" -gt 120 ]; then
  step study_fractions "$LEFT" python3 -m medgan run configs/study_breastmnist_fractions.yaml \
    --out /tmp/runs/fractions --data-dir "$DATA"
  tar czf "$OUT/study_fractions.tar.gz" -C /tmp/runs/fractions \
    --exclude='*.safetensors' --exclude='samples' --exclude='checkpoints' . 2>/dev/null
fi
echo "done in $(($(date +%s) - START)) s"
