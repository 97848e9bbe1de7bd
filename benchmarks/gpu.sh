#!/usr/bin/env bash
# One prepared GPU run, a few minutes: install the carried wheels (gymnax and what it needs, which the
# GPU image lacks), then every GPU measurement. Results: benchmarks/results/gpu-*.json.
#   bash benchmarks/gpu.sh                 # full sizes, on the GPU machine
#   SMALL=1 bash benchmarks/gpu.sh         # tiny sizes, to test the script on a CPU
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -d .whl ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
if [[ "${SMALL:-0}" == 1 ]]; then
  python3 -m benchmarks.gpu_suite --envs 8 64 --population 2 4 --population-steps 2000 --torch-envs 8 64 \
    --minatar-seeds 2 --minatar-steps 640 --seconds 0.5 --name "${NAME:-gpu-smoke}"
else
  python3 -m benchmarks.gpu_suite --name "${NAME:-gpu}"
fi
# RLHF: generated tokens/s and A2C-RLHF updates/s against the same loop in PyTorch on the GPU.
if [[ "${SMALL:-0}" == 1 ]]; then
  python3 -m benchmarks.rlhf_throughput --batches 16 --seconds 0.5 --no-compile --name "${NAME:-gpu}-rlhf-throughput-smoke"
else
  torch_device=$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
  python3 -m benchmarks.rlhf_throughput --batches 16 64 256 1024 --torch-device "$torch_device" --name "${NAME:-gpu}-rlhf-throughput"
fi
# Many devices: throughput against the device count, when the machine has more than one GPU.
gpus=$(python3 -c "import jax; print(jax.device_count())" 2>/dev/null || echo 1)
if [[ "$gpus" -gt 1 ]]; then
  counts=""
  for d in 1 2 4 8 16; do [[ "$d" -le "$gpus" ]] && counts="$counts $d"; done
  if [[ "${SMALL:-0}" == 1 ]]; then
    python3 -m benchmarks.scaling --real --devices $counts --envs 64 --population 8 --seconds 0.5 --name "${NAME:-gpu}-scaling-smoke"
  else
    python3 -m benchmarks.scaling --real --devices $counts --envs 65536 --population 512 --pop-envs 64 --name "${NAME:-gpu}-scaling"
  fi
fi
